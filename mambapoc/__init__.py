"""mambapoc: find out whether a Mamba model can replace a Transformer on your own long logs."""

__version__ = "0.1.0"
