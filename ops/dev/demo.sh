#!/usr/bin/env bash
# The demo command: set up, then `greenq demo` (starts Redis and a CPU worker if needed).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash ops/dev/setup.sh
exec .venv/bin/greenq demo "$@"
