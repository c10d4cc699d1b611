"""Training of the bundled tiny models and of the paper's function-class models."""
