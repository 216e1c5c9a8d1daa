"""Files and folders only their owner may read or write: every one the provider creates.

Ledgers hold full numbers in their signed requests (and, without a Fernet key, the texts), results files
full numbers, the emulator's store every message. Created owner-only whatever the process's umask (which
can only narrow a mode); an existing file of ours from before is narrowed when it is opened. SQLite
creates a database's ``-wal`` and ``-shm`` files with the database file's mode, so creating that file
owner-only first covers them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dirs(path: str | os.PathLike[str]) -> Path:
    """``path`` and its missing parents, each created owner-only; folders that exist are left as they are."""
    folder = Path(path)
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for step in reversed(missing):
        try:
            os.mkdir(step, DIR_MODE)
        except FileExistsError:
            continue  # another process made it meanwhile
    return Path(path)


def private_file(path: str | os.PathLike[str]) -> Path:
    """``path`` created empty and owner-only if missing (its folder too), or narrowed to owner-only if it
    exists and is ours; never truncated."""
    target = Path(path)
    private_dirs(target.parent)
    fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    try:
        narrow(fd)
    finally:
        os.close(fd)
    return target


def narrow(fd: int) -> None:
    """Make an open file of ours owner-only (one created before this rule, or by a wider umask's tool)."""
    status = os.fstat(fd)
    if status.st_uid == os.getuid() and status.st_mode & 0o077:
        os.fchmod(fd, stat.S_IMODE(status.st_mode) & 0o700)


def narrow_path(path: str | os.PathLike[str]) -> None:
    """``narrow`` for a path that may not exist (a SQLite ``-wal`` or ``-shm`` file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        narrow(fd)
    finally:
        os.close(fd)


def private_temp_root(name: str = "globesms") -> Path:
    """This user's folder for working files under the system's temp dir (``/tmp/globesms-<uid>``), owner-only.
    A shared temp dir lets anyone create a predictable path first: a folder there that is not ours, or that
    others may write, is never used (a fresh one is made instead)."""
    root = Path(tempfile.gettempdir()) / f"{name}-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, DIR_MODE)
    status = os.lstat(root)
    if stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid() and not status.st_mode & 0o077:
        return root
    return Path(tempfile.mkdtemp(prefix=f"{name}-"))  # someone else's, or readable: not ours to trust
