"""Models: the bundled Mamba implementation and the registry that loads any model spec."""
