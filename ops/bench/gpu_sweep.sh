#!/usr/bin/env bash
# The bench on one NVIDIA GPU, with NVML energy and a real-size model built locally
# (GPT-2 large's shape, 774M parameters, random weights). About 5 minutes on an H100/H200, then
# the load mode (fixed vs adaptive batching under Poisson load at ¼, ½ and 1 × the ceiling, 60 s
# of arrivals each, mixed job types) into OUT_DIR-load: about 10 minutes more; then static vs continuous
# batching on replies arriving while description bursts decode into OUT_DIR-interactive (about 5 minutes).
# Usage: bash ops/bench/gpu_sweep.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/bench-gpu}
bash ops/dev/setup.sh
.venv/bin/python -m pip install -q "nvidia-ml-py>=12"
export GREENQ_ENERGY_METER=nvml
timeout 300 .venv/bin/greenq bench --device cuda:0 --dtype bfloat16 --model local:gpt2-large \
  --jobs 256 --batch-size 64 --sweep 1,4,16,64 --new-tokens 32 --out "$out"
timeout 900 .venv/bin/greenq bench --load --device cuda:0 --dtype bfloat16 --model local:gpt2-large \
  --jobs 256 --batch-size 64 --new-tokens 32 --fractions 0.25,0.5,1.0 --duration-s 60 \
  --policies fixed,adaptive --out "$out-load"
timeout 600 .venv/bin/greenq bench --interactive --device cuda:0 --dtype bfloat16 --model local:gpt2-large \
  --duration-s 60 --reply-rate-per-s 4 --out "$out-interactive"
