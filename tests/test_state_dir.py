"""The state directory and its files stay private: new ones owner-only, unsafe ones refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from langchain_label_studio import local, state_dir
from langchain_label_studio.outbox import SQLiteOutbox, open_outbox
from langchain_label_studio.settings import Settings, default_state_dir
from langchain_label_studio.state_dir import UnsafePathError, open_private, private_dir, problem

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def no_umask():
    """Create with umask 0: new paths must still be owner-only."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_problem_is_pure():
    ok = os.stat_result((0o40700, 0, 0, 0, 1000, 0, 0, 0, 0, 0))
    assert problem(ok, 1000) is None
    assert "another user" in problem(ok, 1001)
    group = os.stat_result((0o40770, 0, 0, 0, 1000, 0, 0, 0, 0, 0))
    assert "its group (mode 0770)" in problem(group, 1000)
    world = os.stat_result((0o100666, 0, 0, 0, 1000, 0, 0, 0, 0, 0))
    assert "others (mode 0666)" in problem(world, 1000)


def test_new_state_dir_and_outbox_are_owner_only(tmp_path: Path, no_umask):
    outbox = SQLiteOutbox(tmp_path / "a" / "state")
    assert mode(tmp_path / "a" / "state") == 0o700
    assert mode(outbox.path) == 0o600
    outbox.close()


def test_an_existing_private_enough_state_dir_is_used_as_found(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    (state / "outbox.db").touch(mode=0o644)
    os.chmod(state / "outbox.db", 0o644)
    SQLiteOutbox(state).close()
    assert mode(state) == 0o755 and mode(state / "outbox.db") == 0o644


@pytest.mark.parametrize("dir_mode", [0o777, 0o770, 0o1777])
def test_a_state_dir_others_can_write_is_refused(tmp_path: Path, dir_mode: int):
    state = tmp_path / "shared"
    state.mkdir()
    os.chmod(state, dir_mode)
    with pytest.raises(UnsafePathError) as refused:
        SQLiteOutbox(state)
    assert str(state) in str(refused.value) and f"chmod 700 {state}" in str(refused.value)
    assert not (state / "outbox.db").exists()
    assert mode(state) == dir_mode  # refused, not changed


def test_an_outbox_file_others_can_write_is_refused(tmp_path: Path):
    path = tmp_path / "outbox-0123456789.db"
    path.touch()
    os.chmod(path, 0o666)
    with pytest.raises(UnsafePathError, match=f"chmod 600 {path}"):
        SQLiteOutbox(path)


def test_a_symlink_in_place_of_the_outbox_is_refused(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere.db"
    path = tmp_path / "outbox-0123456789.db"
    path.symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        SQLiteOutbox(path)
    assert not elsewhere.exists()  # nothing created through the link
    elsewhere.touch(mode=0o600)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        SQLiteOutbox(path)


def test_without_o_nofollow_the_symlink_check_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(state_dir, "NOFOLLOW", 0)
    target = tmp_path / "target.db"
    target.touch(mode=0o600)
    (tmp_path / "link.db").symlink_to(target)
    os.close(open_private(tmp_path / "link.db"))


def test_a_symlinked_state_dir_is_followed(tmp_path: Path):
    real = private_dir(tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    outbox = SQLiteOutbox(tmp_path / "link")
    assert (real / "outbox.db").exists()
    outbox.close()


def test_a_file_in_place_of_the_state_dir_is_refused(tmp_path: Path):
    (tmp_path / "state").write_text("")
    with pytest.raises((UnsafePathError, FileExistsError, NotADirectoryError)):
        SQLiteOutbox(tmp_path / "state")


@needs_root
def test_a_state_dir_or_file_of_another_user_is_refused(tmp_path: Path):
    state = tmp_path / "theirs"
    state.mkdir(mode=0o700)
    os.chown(state, 12345, -1)
    with pytest.raises(UnsafePathError, match="owned by another user"):
        SQLiteOutbox(state)
    mine = private_dir(tmp_path / "mine")
    (mine / "outbox.db").touch(mode=0o600)
    os.chown(mine / "outbox.db", 12345, -1)
    with pytest.raises(UnsafePathError, match="owned by another user"):
        SQLiteOutbox(mine)


def test_the_pipeline_outbox_in_a_pytest_tmp_path_works(tmp_path: Path):
    outbox = open_outbox(Settings(url="http://ls.example:8080", state_dir=tmp_path))
    assert Path(outbox.location).parent == tmp_path
    outbox.close()


def test_lock_files_are_private_and_never_followed(tmp_path: Path, no_umask):
    with local._file_lock(tmp_path / "locks" / "up.lock"):
        pass
    assert mode(tmp_path / "locks" / "up.lock") == 0o600
    (tmp_path / "locks" / "evil.lock").symlink_to(tmp_path / "victim")
    with pytest.raises(UnsafePathError, match="symbolic link"), local._file_lock(tmp_path / "locks" / "evil.lock"):
        pass
    assert not (tmp_path / "victim").exists()


def test_default_state_dir_ignores_a_relative_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("LABEL_STUDIO_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    assert default_state_dir() == tmp_path / ".local" / "state" / "langchain-label-studio"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "langchain-label-studio"
    monkeypatch.setenv("LABEL_STUDIO_STATE_DIR", "~/state")
    assert default_state_dir() == tmp_path / "state"
