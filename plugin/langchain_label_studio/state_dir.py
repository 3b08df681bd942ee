"""Keep the state directory and its files private to the user the app runs as.

The state directory holds captured prompts and answers (the outbox) and lock files. A directory
other users can write lets them swap the outbox for a symbolic link to a file of their choosing,
or read what was captured; so a directory or file that is group- or world-writable, or owned by
another user, is refused with an error that names the path and the fix. A directory this module
creates is ``0700`` and a file ``0600``; existing ones keep their modes when they pass the check.
A symbolic link in place of a file is refused (``O_NOFOLLOW``; where the platform has no such
flag, as on Windows, that check is skipped). A symbolic link to the directory itself is followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: ``os.O_NOFOLLOW`` where the platform has it, else 0 (no symlink check).
NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
#: Owner and mode checks need POSIX owners and modes (not Windows).
POSIX: bool = hasattr(os, "geteuid")


class UnsafePathError(PermissionError):
    """A state directory or file that others could write, or that is not what it should be."""


def _uid() -> int:
    return os.geteuid() if POSIX else -1


def problem(st: os.stat_result, uid: int) -> str | None:
    """Why a path with this ``stat`` is unsafe for user ``uid``, or None when it is safe."""
    if st.st_uid != uid:
        return f"it is owned by another user (uid {st.st_uid}, not {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "others" if st.st_mode & stat.S_IWOTH else "its group"
        return f"it is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def fix(path: Path, st: os.stat_result, uid: int, is_dir: bool) -> str:
    """The command that makes ``path`` safe."""
    if st.st_uid != uid:
        return f"chown {uid} {path} (as root), or use a directory of your own"
    return f"chmod {'700' if is_dir else '600'} {path}"


def check(path: Path, st: os.stat_result, is_dir: bool) -> None:
    """Raise :class:`UnsafePathError` when ``path`` (with this ``stat``) is unsafe."""
    if not POSIX:
        return
    uid = _uid()
    why = problem(st, uid)
    if why:
        kind = "state directory" if is_dir else "file"
        raise UnsafePathError(f"refusing {kind} {path}: {why}; fix: {fix(path, st, uid, is_dir)}")


def private_dir(path: str | os.PathLike[str]) -> Path:
    """The directory ``path``, created ``0700`` if missing, else checked; returns it.

    Raises:
        UnsafePathError: it exists but is not a directory, is group- or world-writable,
            or is owned by another user.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # exactly 0700, whatever the umask
    except FileExistsError:
        pass
    st = os.stat(path)  # a symbolic link to the directory is followed
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"refusing state directory {path}: it is not a directory")
    check(path, st, is_dir=True)
    return path


def open_private(path: str | os.PathLike[str], flags: int = os.O_RDWR) -> int:
    """Open (creating ``0600`` if missing) the file ``path`` without following a symbolic link;
    returns the file descriptor.

    Raises:
        UnsafePathError: ``path`` is a symbolic link or not a regular file, or is group- or
            world-writable, or owned by another user.
    """
    path = Path(path)
    flags = (flags | NOFOLLOW | getattr(os, "O_CLOEXEC", 0)) & ~(os.O_CREAT | os.O_EXCL)
    for _ in range(3):  # created or removed by another process in between: look again
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            if POSIX:
                os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
            return fd
        try:
            return _checked(path, os.open(path, flags))
        except FileNotFoundError:
            continue
        except OSError as exc:
            if NOFOLLOW and os.path.islink(path):
                raise UnsafePathError(f"refusing file {path}: it is a symbolic link; fix: rm {path}") from exc
            raise
    raise FileNotFoundError(f"{path} keeps disappearing")


def _checked(path: Path, fd: int) -> int:
    """``fd`` if the file it opened is a safe regular file; else it is closed and refused."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"refusing file {path}: it is not a regular file")
        check(path, st, is_dir=False)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_file(fd: int) -> None:
    """Take an exclusive lock on an open file, waiting for it; closing the file releases it.

    ``fcntl`` is imported here, not at module level, so the package imports on platforms
    without it; only a process that needs the lock there fails, with a message that says why.
    """
    try:
        import fcntl
    except ImportError:
        raise RuntimeError(
            "this needs POSIX file locks (fcntl), which this platform lacks; "
            "for captures, use a PostgreSQL outbox (LABEL_STUDIO_OUTBOX_URL) here"
        ) from None
    fcntl.flock(fd, fcntl.LOCK_EX)
