"""Selective-scan kernels: torch reference, CPU fast path, Triton GPU."""
