#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): bench fp32 / bf16 / fp16 (channels_last, the default) and bf16 NCHW
# and bf16 + compile, a 300-step sagan-celeba64 training with amp auto, torchrun with NCCL, FID-feature speed. One
# table; sized for under 8 minutes on one GPU (not yet run on one).
# Runs from a plain checkout: this tree's src/ is put on PYTHONPATH (no install needed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
exec "$PY" benchmarks/gpu_check.py "$@"
