"""The Triton kernels' checks in test_kernels.py, run by Triton's CPU interpreter in a subprocess.

TRITON_INTERPRET must be set before triton is first imported (triton's own library functions are
decorated at import), so it cannot be switched on inside this already running session.
"""

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch


@pytest.mark.skipif(find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, test_kernels.py runs them natively")
def test_triton_kernels_under_the_interpreter():
    here = Path(__file__).parent
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "triton",
           str(here / "test_kernels.py")]
    run = subprocess.run(cmd, env=env, cwd=here.parent, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]
