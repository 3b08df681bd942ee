#!/usr/bin/env bash
# The tests on a fresh machine: install into .venv (and Debian's chromium for the browser
# test), lint, and run pytest. The tests start their own local Label Studio (installed
# once into ~/.cache) on port 18089; screenshots go to test-artifacts/.
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
exec pytest "$@"
