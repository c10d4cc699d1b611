#!/usr/bin/env bash
# Installs PyTorch into the given Python's environment before the package itself, so that the
# package's "torch" requirement is already met and pip never picks a multi-GB CUDA build for a
# machine that has no NVIDIA GPU.
set -euo pipefail
PY=${1:?usage: install_torch.sh PYTHON}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if "$PY" -c "import torch" 2>/dev/null; then
    echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing the CUDA build of torch $TORCH_VERSION"
    "$PY" -m pip install "torch==$TORCH_VERSION"
    exit 0
fi
echo "no NVIDIA GPU: installing the CPU build of torch $TORCH_VERSION"
# A wheel already available to pip without an index (its find-links) is preferred: offline and fast.
if "$PY" -m pip install --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
    "$PY" -m pip install "torch==$TORCH_VERSION"   # its small pure-Python dependencies
else
    "$PY" -m pip install "torch==$TORCH_VERSION" --extra-index-url https://download.pytorch.org/whl/cpu
fi
