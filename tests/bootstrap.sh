# Sourced by example_app/run.sh and tests/run.sh: a virtualenv in .venv with the
# package (editable, with every extra) and the development tools of pyproject.toml's
# [dependency-groups] (pytest, ruff, mypy, build...), at the versions in
# tests/constraints.txt (known to work together; pip resolves them without searching).
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml tests/constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    # `pip install --group` (PEP 735 dependency groups) needs pip 25.1 or newer.
    .venv/bin/python -m pip install -q --upgrade "pip>=25.1"
    .venv/bin/python -m pip install -q -c tests/constraints.txt \
        -e ".[all,example,postgres,prometheus]" --group dev
    touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
