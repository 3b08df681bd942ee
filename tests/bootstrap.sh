# Sourced by example_app/run.sh and tests/run.sh: a virtualenv in .venv with the
# package (editable) and everything the example app and the tests need.
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[all,example,test]"
    touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
