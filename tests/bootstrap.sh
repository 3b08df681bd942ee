# Sourced by example_app/run.sh and tests/run.sh: a virtualenv in .venv with the
# package (editable) and everything the example app and the tests need, at the versions
# in tests/constraints.txt (known to work together; pip resolves them without searching).
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml tests/constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c tests/constraints.txt -e ".[all,example,test]"
    touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
