"""The installable artifact: ``python -m build`` makes a wheel and an sdist of the package
only; the wheel, installed into a fresh virtualenv (not editable), runs its command line and
captures a request of the README's Quick start app into the test Label Studio."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, tasks_where
from faults import free_port
from test_readme import block, served

from langchain_label_studio import local
from langchain_label_studio.client import LabelStudioClient

PACKAGE = "langchain_label_studio"
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
CONSTRAINTS = ROOT / "tests" / "constraints.txt"


@dataclass
class Built:
    source: Path
    wheel: Path
    sdist: Path


def checkout_copy(dest: Path) -> Path:
    """The checkout's files as a user has them (tracked and new, not ignored), without build
    leftovers in the real checkout."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``python -m build`` (an sdist, then the wheel built from it) on a copy of the checkout."""
    source = checkout_copy(tmp_path_factory.mktemp("checkout"))
    out = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", "dist", "."], cwd=source, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [wheel] = (source / "dist").glob("*.whl")
    [sdist] = (source / "dist").glob("*.tar.gz")
    return Built(source, wheel, sdist)


def test_the_wheel_holds_the_package_only(built: Built):
    assert built.wheel.name == f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    names = zipfile.ZipFile(built.wheel).namelist()
    dist_info = f"{PACKAGE}-{VERSION}.dist-info"
    assert {n.split("/")[0] for n in names} == {PACKAGE, dist_info}
    sources = {
        p.relative_to(built.source / "plugin").as_posix() for p in (built.source / "plugin" / PACKAGE).rglob("*.py")
    }
    assert sources <= set(names), f"modules missing from the wheel: {sorted(sources - set(names))}"
    assert not [n for n in names if n.endswith((".pyc", ".sqlite3", ".db", ".log"))]
    if (ROOT / "plugin" / PACKAGE / "py.typed").exists():
        assert f"{PACKAGE}/py.typed" in names
    wheel = zipfile.ZipFile(built.wheel)
    entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert f"langchain-label-studio = {PACKAGE}.cli:main" in entry_points
    metadata = wheel.read(f"{dist_info}/METADATA").decode()
    assert f"Version: {VERSION}\n" in metadata and "Requires-Python: >=3.11" in metadata
    for extra in ("langserve", "langgraph", "all", "postgres"):
        assert f"Provides-Extra: {extra}\n" in metadata


def test_the_sdist_holds_what_builds_the_package(built: Built):
    assert built.sdist.name == f"{PACKAGE}-{VERSION}.tar.gz"
    names = {n.split("/", 1)[1] for n in tarfile.open(built.sdist).getnames() if "/" in n}
    assert {
        "pyproject.toml",
        "README.md",
        "LICENSE",
        f"plugin/{PACKAGE}/__init__.py",
        f"plugin/{PACKAGE}/py.typed",
    } <= names
    assert not {n.split("/")[0] for n in names} & {"tests", "bench", "example_app", ".state", ".venv", "dist"}


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its ``all`` extra (as the README installs it),
    at the versions of tests/constraints.txt."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), f"{built.wheel}[all]"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on any path and without plugin settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT)))
    return {**env, **extra}


def test_the_installed_package_and_its_command(venv: Path, tmp_path: Path):
    code = f"import {PACKAGE}, importlib.metadata as m; print({PACKAGE}.__file__, m.version('langchain-label-studio'))"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True, env=clean_env()
    )
    assert out.returncode == 0, out.stderr
    location, version = out.stdout.split()
    assert Path(location).is_relative_to(venv) and version == VERSION
    helped = subprocess.run(
        [str(venv / "bin" / "langchain-label-studio"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert helped.returncode == 0, helped.stderr
    for command in ("local", "status", "dead-letters", "deliver", "check", "export"):
        assert command in helped.stdout


@pytest.fixture
def quick_start_app(venv: Path, label_studio: local.LocalServer, tmp_path: Path) -> Iterator[str]:
    """The README's Quick start ``app.py``, served by the virtualenv's uvicorn; yields its URL."""
    (tmp_path / "app.py").write_text(block("import uuid").text)
    port = free_port()
    env = clean_env(**label_studio.env(), LABEL_STUDIO_STATE_DIR=str(tmp_path / "state"))
    with served(tmp_path, f"{venv / 'bin' / 'uvicorn'} app:app --port {port}", env, port) as base:
        yield base


def test_the_installed_wheel_captures_into_label_studio(quick_start_app: str, admin: LabelStudioClient):
    user = f"wheel-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(
        f"{quick_start_app}/joke/invoke", json={"input": {"topic": "wheels"}}, headers={"X-User-ID": user}
    )
    assert resp.status_code == 200, resp.text
    request_id = resp.headers["X-Request-ID"]
    deadline = time.monotonic() + 60
    while not (found := tasks_where(admin, "Jokes", user_id=user)):
        assert time.monotonic() < deadline, "the capture did not land in Label Studio"
        time.sleep(0.5)
    [task] = found
    assert task["data"]["request_id"] == request_id and task["data"]["route"] == "/joke"
    assert "wheels" in str(task["data"]["prompt"])
