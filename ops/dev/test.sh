#!/usr/bin/env bash
# The test command: set up, then run the whole suite (tests start their own redis-server).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash ops/dev/setup.sh
exec .venv/bin/python -m pytest "$@"
