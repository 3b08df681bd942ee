#!/usr/bin/env bash
# The demo on a fresh machine: install into .venv, start a local Label Studio, run the
# example app with capture on (its own output goes to .state/demo/example-app.log), send
# sample requests and print what landed.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/bootstrap.sh
exec .venv/bin/python -m example_app.demo "$@"
