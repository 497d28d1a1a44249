#!/usr/bin/env bash
# The bench on one NVIDIA GPU, with NVML energy and a real-size model built locally
# (GPT-2 large's shape, 774M parameters, random weights). About 5 minutes on an H100/H200.
# Usage: bash ops/bench/gpu_sweep.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/bench-gpu}
bash ops/dev/setup.sh
.venv/bin/python -m pip install -q "nvidia-ml-py>=12"
export GREENQ_ENERGY_METER=nvml
timeout 300 .venv/bin/greenq bench --device cuda:0 --dtype bfloat16 --model local:gpt2-large \
  --jobs 256 --batch-size 64 --sweep 1,4,16,64 --new-tokens 32 --out "$out"
