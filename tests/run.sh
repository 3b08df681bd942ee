#!/usr/bin/env bash
# The tests on a fresh machine: install into .venv (and Debian's chromium for the browser
# test), lint, type-check (mypy --strict, configured in pyproject.toml) and run pytest. The
# tests start their own local Label Studios (installed once into ~/.cache) on ports 18089
# (SQLite) and 18090 (PostgreSQL); screenshots go to test-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/bootstrap.sh
if ! command -v chromium >/dev/null; then  # for the annotator-view browser test
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi
ruff check .
mypy
exec pytest "$@"
