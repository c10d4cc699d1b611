"""Which scan backends exist on this machine and which one serves tensors on a given device; the scan,
SSD and norm dispatchers all resolve through here."""

from __future__ import annotations

import os
from importlib.util import find_spec

import torch

BACKENDS = ("reference", "cpu", "triton")


def triton_version() -> str | None:
    if find_spec("triton") is None:
        return None
    import triton

    return triton.__version__


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")


def available_backends() -> list[str]:
    out = ["reference"]
    if find_spec("numba") is not None:
        out.append("cpu")
    if find_spec("triton") is not None and (torch.cuda.is_available() or triton_interpreting()):
        out.append("triton")
    return out


def default_backend(device: str | torch.device) -> str:
    """The fastest backend for tensors on `device` ("cpu", "cuda", "cuda:1", ...)."""
    kind = torch.device(device).type
    if kind == "cpu" and find_spec("numba") is not None:
        return "cpu"
    if kind == "cuda" and find_spec("triton") is not None:
        return "triton"
    return "reference"


def resolve(backend: str | None, device: torch.device) -> str:
    """The backend's name (None: the default for `device`), checked against the tensors' device."""
    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"scan backend 'cpu' needs CPU tensors, got {device.type}")
    if backend == "triton" and device.type != "cuda" and not triton_interpreting():
        raise ValueError("scan backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tests)")
    return backend
