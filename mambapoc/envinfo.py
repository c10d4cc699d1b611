"""Facts about the machine and software a run happens on: shown by `doctor`, saved as env.json."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from mambapoc import __version__
from mambapoc.errors import UserError


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pick_device(name: str) -> str:
    """A device setting ("auto", "cpu", "cuda", "cuda:1", ...) resolved to one torch can use here."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(name).type
    except RuntimeError:
        raise UserError(f"device {name!r}: use auto, cpu or cuda (cuda:N for one GPU of several)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name}: torch sees no CUDA GPU here (use cpu or auto)")
    return name


def accelerator_name(device: str) -> str:
    """What a run on `device` ran on, in words: the GPU's name, or the CPU model and thread count."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    threads = torch.get_num_threads()
    return f"{cpu_model()}, {threads} thread{'s' if threads != 1 else ''}"


def git_rev() -> str | None:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None  # installed, not a checkout: a repository around the environment is someone else's
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def collect() -> dict:
    """Versions, devices and threads. Imports torch, so call it from commands, not at import time."""
    import torch
    import transformers

    from mambapoc import kernels

    info: dict = {
        "mambapoc": __version__,
        "git_rev": git_rev(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "triton": kernels.triton_version(),
        "scan_backends": kernels.available_backends(),
        "scan_backend_cpu": kernels.default_backend("cpu"),
        "scan_backend_cuda": kernels.default_backend("cuda") if torch.cuda.is_available() else None,
    }
    return info
