#!/usr/bin/env bash
# GPU check of the bundled Mamba and of the Mamba-2 SSD kernels in one command; writes JSON (default:
# gpu_check.json, and the Mamba-2 figures beside it as gpu_check.mamba2.json).
#   bash benchmarks/gpu_check.sh [OUT.json]
# Needs an NVIDIA GPU and the project installed (make test sets up .venv); takes about 7 minutes on an H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
OUT="${1:-gpu_check.json}"
HF_HUB_OFFLINE=1 "$PY" benchmarks/gpu_check.py --out "$OUT"
HF_HUB_OFFLINE=1 exec "$PY" benchmarks/bench_mamba2.py --device cuda --json "${OUT%.json}.mamba2.json"
