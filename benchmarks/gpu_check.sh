#!/usr/bin/env bash
# GPU check of the bundled Mamba in one command; writes JSON (default: gpu_check.json).
#   bash benchmarks/gpu_check.sh [OUT.json]
# Needs an NVIDIA GPU and the project installed (make test sets up .venv); takes about 5 minutes on an H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
HF_HUB_OFFLINE=1 exec "$PY" benchmarks/gpu_check.py --out "${1:-gpu_check.json}"
