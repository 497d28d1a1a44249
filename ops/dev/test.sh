#!/usr/bin/env bash
# The test command: set up, check lint, format and types, then run the whole suite (tests start
# their own redis-server). Arguments go to pytest, e.g. -m "not chaos and not slow" for the fast suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash ops/dev/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy -p greenq.shared -p greenq.producers -p greenq.workers
exec .venv/bin/python -m pytest "$@"
