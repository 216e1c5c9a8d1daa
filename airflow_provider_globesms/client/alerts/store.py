"""Where alert storm control keeps its claims: a local folder, or object storage shared by every worker.

Everything the storm logic decides rests on two things a store gives: **exclusive creation** (of two
processes creating one name, exactly one succeeds) and **the store's own clock** (the modification time of
an object just created), so that workers whose clocks disagree still agree on when a window closes.
Records are small JSON objects, written once and never changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from airflow_provider_globesms.client.files.private import FILE_MODE, private_dirs
from airflow_provider_globesms.client.ledger.object_ledger import forget_listings

log = logging.getLogger(__name__)

Record = dict[str, Any]
_READ_TRIES, _READ_PAUSE, _SETTLE = 5, 0.02, 0.01


class AlertStore(Protocol):
    """What the storm logic needs of a store: names are ``/``-separated paths below the store's root."""

    def create(self, name: str, record: Record) -> float | None:
        """Create ``name`` holding ``record``, exclusively: its store time if this call created it, else None."""

    def read(self, name: str) -> Record | None:
        """The record at ``name``; None if it is missing (or unreadable after a few tries)."""

    def children(self, folder: str) -> list[str]:
        """The names directly in ``folder`` (files and folders), sorted; [] if it is missing."""

    def delete(self, name: str) -> None:
        """Remove ``name`` (a file, or a folder with everything in it); missing is not an error."""

    def now(self) -> float:
        """The store's clock: the modification time of an object written for the purpose."""


def _parse(text: str) -> Record | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class LocalAlertStore:
    """A local folder (one machine, or a disk every worker mounts): files and folders owner-only."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def create(self, name: str, record: Record) -> float | None:
        """Write a temporary file, then ``link`` it to ``name``: a reader never sees it half written."""
        target = self.root / name
        private_dirs(target.parent)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(record))
            os.link(partial, target)  # fails if target exists: the exclusive step
            os.utime(target)  # stamped when it became visible, not when the partial was written
        except FileExistsError:
            return None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        return os.stat(target).st_mtime

    def read(self, name: str) -> Record | None:
        """The record, or None when missing."""
        try:
            return _parse((self.root / name).read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def children(self, folder: str) -> list[str]:
        """Names in ``folder`` without our temporary files."""
        try:
            return sorted(p.name for p in (self.root / folder).iterdir() if not p.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, name: str) -> None:
        """Remove a file, or a folder and all in it."""
        path = self.root / name
        if path.is_dir():
            for child in path.iterdir():
                self.delete(f"{name}/{child.name}")
            with contextlib.suppress(FileNotFoundError, OSError):
                path.rmdir()
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def now(self) -> float:
        """The local clock as the file system stamps it (one machine: one clock)."""
        return _probe_time(self)


class ObjectPath(Protocol):
    """What ``ObjectAlertStore`` needs of a path: ``ObjectStoragePath`` (and ``pathlib.Path``) fit."""

    @property
    def name(self) -> str:
        """The last path segment."""

    @property
    def parent(self) -> ObjectPath:
        """The folder holding the path."""

    def __truediv__(self, other: str) -> ObjectPath: ...

    def open(self, mode: str) -> IO[Any]:
        """Open the object."""

    def read_text(self) -> str:
        """The object's content."""

    def iterdir(self) -> Iterator[ObjectPath]:
        """The folder's children."""

    def is_dir(self) -> bool:
        """Whether the path is a folder (a prefix, in object storage)."""

    def unlink(self, missing_ok: bool = ...) -> None:
        """Delete the object."""

    def stat(self) -> Any:
        """The object's status (``st_mtime``)."""

    def mkdir(self, mode: int = ..., parents: bool = ..., exist_ok: bool = ...) -> None:
        """Create the folder."""


class ObjectAlertStore:
    """Object storage (``s3://...`` through Airflow's ``ObjectStoragePath``), shared by every worker.

    Creation is ``open("x")`` (a conditional PUT on S3); a store that checks ``x`` loosely is caught by
    reading the object back and comparing the token written into it, as the ledger's lease does.
    """

    def __init__(self, root: ObjectPath) -> None:
        self.root = root

    def _path(self, name: str) -> ObjectPath:
        path = self.root
        for part in name.split("/"):
            path = path / part
        return path

    def create(self, name: str, record: Record) -> float | None:
        """Exclusive create, then read back: None unless the object is the one this call wrote."""
        path = self._path(name)
        token = uuid.uuid4().hex
        with contextlib.suppress(FileExistsError, OSError):
            path.parent.mkdir(parents=True, exist_ok=True)  # a no-op on S3
        try:
            with path.open("x") as handle:
                handle.write(json.dumps({**record, "_token": token}))
        except FileExistsError:
            return None
        time.sleep(_SETTLE)  # a loose store lets a racer overwrite us within moments: let it, then look
        stored = self.read(name)
        if stored is None:  # written, but whose it is cannot be told: never guess "someone else's"
            raise OSError(f"alert claim {name} was written but cannot be read back")
        if stored.get("_token") != token:
            return None
        return _stamp(path.stat())

    def read(self, name: str) -> Record | None:
        """The record, retried a few times (an object being written reads as missing or torn)."""
        path = self._path(name)
        for _ in range(_READ_TRIES):
            forget_listings(path)
            try:
                record = _parse(path.read_text())
            except (FileNotFoundError, NotADirectoryError):
                return None
            except (OSError, BufferError):  # BufferError: fsspec's memory store mid-write
                record = None
            if record is not None:
                return record
            time.sleep(_READ_PAUSE)
        return None

    def children(self, folder: str) -> list[str]:
        """Names under the prefix, from a fresh listing."""
        path = self._path(folder)
        forget_listings(path)
        try:
            return sorted(child.name for child in path.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, name: str) -> None:
        """Remove the object, or everything under the prefix."""
        path = self._path(name)
        forget_listings(path)
        if path.is_dir():
            for child in self.children(name):
                self.delete(f"{name}/{child}")
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink(missing_ok=True)

    def now(self) -> float:
        """The store's clock (S3 stamps objects to the second)."""
        return _probe_time(self)


_STAMP_KEYS = ("mtime", "LastModified", "last_modified", "created", "timeCreated")


def _stamp(status: Any) -> float:
    """An object's modification time in epoch seconds, from whichever field its store fills (S3's
    ``LastModified``, fsspec memory's ``created``...); the local clock, and a warning, if none."""
    for key in _STAMP_KEYS:
        value = status.get(key) if hasattr(status, "get") else None
        if value is None:
            continue
        stamp = value.timestamp() if hasattr(value, "timestamp") else float(value)
        if stamp > 0:
            return float(stamp)
    stamp = float(getattr(status, "st_mtime", 0) or 0)
    if stamp > 0:
        return stamp
    log.warning("The alerts store gives no modification time: deciding windows by this machine's clock")
    return time.time()


def _probe_time(store: LocalAlertStore | ObjectAlertStore) -> float:
    name = f"clock/{uuid.uuid4().hex}.json"
    stamped = store.create(name, {"probe": True})
    store.delete(name)
    if stamped is None:  # a uuid taken: cannot happen; never decide on this machine's clock instead
        raise OSError("the alerts store's clock could not be read")
    return stamped
