#!/usr/bin/env bash
# The tests on a fresh machine: install into .venv, lint, and run pytest. The tests
# start their own local Label Studio (installed once into ~/.cache) on port 18089.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/bootstrap.sh
ruff check .
exec pytest "$@"
