#!/usr/bin/env bash
# Make this checkout runnable: a virtualenv with greenq and its test tools (pytest, ruff, mypy), and redis-server.
# Idempotent and quick when nothing changed. Never needs a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=${GREENQ_VENV:-.venv}
STAMP="$VENV/.greenq-setup"
want=$(cat pyproject.toml ops/dev/setup.sh | sha256sum | cut -d' ' -f1)

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  pip() { "$VENV/bin/python" -m pip "$@"; }
  pip install -q --upgrade pip
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
      pip install -q "torch>=2.4"                      # CUDA build for a GPU machine
    else
      # No GPU: take the CPU build. 2.13.0+cpu lies on this project's build machines;
      # elsewhere set GREENQ_TORCH_INDEX_URL to PyTorch's CPU wheel index.
      pip install -q torch==2.13.0 2>/dev/null \
        || pip install -q "torch>=2.4" ${GREENQ_TORCH_INDEX_URL:+--index-url "$GREENQ_TORCH_INDEX_URL"}
    fi
  fi
  pip install -q -e ".[test]"
  echo "$want" > "$STAMP"
fi

# mypy's view of the import root: greenq.shared, .producers and .workers are these three folders, as
# pyproject's package-dir maps them for the installed package (mypy cannot follow the editable finder).
mkdir -p build/import-root/greenq
for folder in shared producers workers; do ln -sfn "../../../$folder" "build/import-root/greenq/$folder"; done

# Debian packages the tests need: redis-server (broker) and prometheus (scrapes a live worker).
missing=()
for pair in redis-server:redis-server prometheus:prometheus promtool:prometheus; do
  binary=${pair%%:*} package=${pair##*:}
  command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/bin/$binary" ] || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $packages…"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  else
    echo "missing: $packages — install them (e.g. apt-get install $packages) and run again" >&2
    exit 1
  fi
fi
