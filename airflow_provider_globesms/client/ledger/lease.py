"""Leases on a task instance's send ledger: one process sends at a time.

Airflow can run two copies of one task instance at once (a zombie and its replacement); both would
send every message. With a lease the second copy waits a bounded time, then fails naming the holder,
before it sends anything. ``FileLease`` (a local ledger) is a ``flock``, which the kernel drops when
its process exits however it ends. ``ObjectLease`` (a ledger in object storage) is numbered lease
objects, each created exclusively, with an expiry its holder renews from a thread. Call ``check()``
before each send or batch: it raises ``LeaseLostError`` once the lease is not certainly yours.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from airflow_provider_globesms.client.errors import LeaseHeldError, LeaseLostError
from airflow_provider_globesms.client.ledger.object_ledger import StoragePath, forget_listings

log = logging.getLogger(__name__)

_READ_TRIES, _READ_PAUSE, _SETTLE = 5, 0.02, 0.01
_LEASE_NAME = re.compile(r"lease-(\d{12})\.json")
_T = TypeVar("_T")


def _when(epoch: float) -> str:  # for messages: an epoch as ISO 8601 in UTC
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _read_retrying(read: Callable[[], _T | None]) -> _T | None:  # a lease may be read mid-write: retry
    for _ in range(_READ_TRIES):
        with contextlib.suppress(OSError, ValueError, BufferError):  # BufferError: fsspec's memory store
            if (value := read()) is not None:
                return value
        time.sleep(_READ_PAUSE)
    return None


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as written into its lock file or object; one per lease (``token`` tells it apart)."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    since: float = field(default_factory=time.time)
    description: str | None = None  # e.g. the task instance

    def to_json(self) -> str:
        """The holder as JSON text."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The holder in JSON ``text``; None when it is not one (a torn write, garbage)."""
        try:
            data = json.loads(text)
            host, pid, token, since = data["host"], data["pid"], data["token"], data["since"]
            description = data.get("description")
        except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, or not a mapping of these
            return None
        valid = isinstance(host, str) and isinstance(token, str) and type(pid) is int
        if not valid or not isinstance(since, (int, float)) or not isinstance(description, (str, type(None))):
            return None
        return cls(host=host, pid=pid, token=token, since=float(since), description=description)

    def describe(self) -> str:
        """A short text for errors: pid, host, what it runs and since when."""
        what = f" ({self.description})" if self.description else ""
        return f"pid {self.pid} on host {self.host}{what}, holding it since {_when(self.since)}"


class FileLease:
    """An exclusive ``flock`` on a local lock file of its own, e.g. the ledger's path plus ``".lease"``.

    ``flock`` belongs to an open file description, so two ``FileLease`` exclude each other even in one
    process (``lockf``/``fcntl`` locks belong to the process). Local disks only: not over NFS.
    """

    def __init__(self, path: str | os.PathLike[str], holder: Holder) -> None:
        self.path, self.holder = Path(path), holder
        self._fd: int | None = None

    def acquire(self, wait: float = 30.0, poll: float = 0.1) -> None:
        """Take the lock, waiting up to ``wait`` seconds; raise ``LeaseHeldError`` if still held then."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)  # callers create it owner-only first
        deadline = time.monotonic() + wait
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, self.path):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, self.holder.to_json().encode(), 0)
                    self._fd = fd
                    return
            except BlockingIOError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # also drops a lock taken on a file that was meanwhile deleted or replaced
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._held_error(wait)
            time.sleep(min(poll, remaining))

    def _held_error(self, wait: float) -> LeaseHeldError:
        holder = _read_retrying(lambda: Holder.from_json(self.path.read_text(errors="replace")))
        who = holder.describe() if holder else "a process that has not written its name (yet)"
        return LeaseHeldError(
            f"The send ledger lock {self.path} is held by {who}; gave up after waiting {wait:g} s. Another "
            "copy of this task instance is sending (Airflow can run a zombie and its replacement at once): wait "
            "for it to finish, then retry. A file lock is released when its process exits, however it ends.",
            where=str(self.path),
            holder=holder,
        )

    def check(self) -> None:
        """Raise ``LeaseLostError`` unless the lock is held (a held ``flock`` cannot be taken away)."""
        if self._fd is None:
            raise LeaseLostError(f"The send ledger lock {self.path} is not held (released, or never acquired).")
        if not _same_file(self._fd, self.path):
            raise LeaseLostError(f"The send ledger lock file {self.path} was deleted or replaced while held.")

    def check_held(self) -> None:
        """``check()`` (no I/O either: a held ``flock`` has no expiry)."""
        self.check()

    def release(self) -> None:
        """Unlock and close; a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a stale name would mislead whoever reads it next
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


class LeasePath(StoragePath, Protocol):
    """What ``ObjectLease`` needs of a directory: ``pathlib.Path`` and ``ObjectStoragePath`` both fit."""

    def __truediv__(self, other: str) -> LeasePath: ...

    def iterdir(self) -> Iterator[LeasePath]:
        """The directory's children."""

    def exists(self) -> bool:
        """Whether the path exists."""

    def read_text(self) -> str:
        """The file's content as text."""


@dataclass(frozen=True)
class _Record:
    holder: Holder
    expires_at: float
    released: bool

    @classmethod
    def parse(cls, text: str) -> _Record | None:
        """A lease record from its stored JSON, or ``None`` when it holds no holder or expiry."""
        holder = Holder.from_json(text)
        data: dict[str, Any] = json.loads(text) if holder else {}  # from_json parsed it: a mapping
        expires_at = data.get("expires_at")
        if holder is None or not isinstance(expires_at, (int, float)):
            return None
        return cls(holder, float(expires_at), data.get("released") is True)


class ObjectLease:
    """A lease kept as objects ``lease-<generation>.json`` in a directory of its own (every look lists it).

    Taking it is creating the next generation exclusively: of two racers, one wins. The holder rewrites
    its object every ``ttl / 3`` with a new ``expires_at``; a taker steps in after ``expires_at + skew``,
    the holder stops (``check``) at ``expires_at``: safe while clocks differ by less than ``skew``.
    ``renew=False`` starts no renewal thread: the lease lasts one ``ttl`` unless ``renew()`` is called.
    """

    def __init__(
        self, remote: LeasePath, holder: Holder, *, ttl: float = 30.0, skew: float = 5.0, renew: bool = True
    ) -> None:
        if ttl <= 0 or skew < 0:
            raise ValueError("ttl must be positive and skew not negative")
        self.remote, self.holder, self.ttl, self.skew, self._renews = remote, holder, ttl, skew, renew
        self._generation: int | None = None
        self._valid_until = 0.0  # the expires_at of our last write that certainly landed
        self._lost: str | None = None
        self._io_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def generation(self) -> int | None:
        """The generation held (or last held, if lost); None when not held."""
        return self._generation

    def acquire(self, wait: float = 30.0, poll: float = 0.5) -> None:
        """Take the lease, waiting up to ``wait`` seconds; raise ``LeaseHeldError`` if still held then."""
        if self._generation is not None and self._lost is None:
            return
        self._stop_renewing()
        self._generation, self._lost = None, None
        self.remote.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        unreadable: dict[int, float] = {}
        while True:
            generation, record = self._look()
            if self._free(generation, record, unreadable) and self._create(generation + 1):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._held_error(*self._look(), wait=wait)
            time.sleep(min(poll, remaining))
        if self._renews:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self._generation}", daemon=True)
            self._thread.start()

    def _look(self) -> tuple[int, _Record | None]:
        """The highest generation (0 when there is none) and its record (None if unreadable)."""
        forget_listings(self.remote)
        try:
            names = [entry.name for entry in self.remote.iterdir()]
        except (FileNotFoundError, NotADirectoryError):  # an object store has no empty "folders" (S3)
            names = []
        generation = max((int(m.group(1)) for m in map(_LEASE_NAME.fullmatch, names) if m), default=0)
        return generation, self._read(generation) if generation else None

    def _object(self, generation: int) -> LeasePath:
        return self.remote / f"lease-{generation:012d}.json"

    def _read(self, generation: int) -> _Record | None:
        def read() -> _Record | None:
            # s3fs answers a read of an object that a cached listing lacks with "not found": drop listings.
            forget_listings(self.remote)
            return _Record.parse(self._object(generation).read_text())

        return _read_retrying(read)

    def _free(self, generation: int, record: _Record | None, unreadable: dict[int, float]) -> bool:
        now = time.time()
        if record is None and generation:
            # Unreadable still: its writer is slow, or died mid-write. Held for a TTL from when first seen.
            return now > unreadable.setdefault(generation, now) + self.ttl + self.skew
        mine = record is not None and record.holder.token == self.holder.token  # our read-back had failed
        return record is None or record.released or mine or now > record.expires_at + self.skew

    def _create(self, generation: int) -> bool:
        """Create ``generation`` exclusively; False if another copy got there first."""
        expires_at = time.time() + self.ttl
        try:
            self._write(generation, expires_at, mode="x")
        except FileExistsError:  # s3fs raises it on close, when the conditional PUT is refused
            return False
        # Some stores check "x" loosely (fsspec's memory store tests, then sets): a racer that tested with
        # us overwrites our object within moments. Let it, then see whose object it is.
        time.sleep(_SETTLE)
        record = self._read(generation)
        if record is None or record.holder.token != self.holder.token:
            return False
        self._generation, self._valid_until = generation, expires_at
        return True

    def _write(self, generation: int, expires_at: float, *, mode: str = "w", released: bool = False) -> None:
        fields = {"generation": generation, "expires_at": expires_at, "released": released}
        with self._object(generation).open(mode) as handle:
            handle.write(json.dumps({**asdict(self.holder), **fields}))

    def _held_error(self, generation: int, record: _Record | None, *, wait: float) -> LeaseHeldError:
        name = str(self._object(generation))
        if record is None:
            who = f"a copy whose lease object {name} cannot be read (being written, or its writer died)"
            advice = f"if no other copy is running, delete {name}"
        else:
            who = f"{record.holder.describe()}, until {_when(record.expires_at)} unless renewed ({name})"
            advice = f"the lease expires after its TTL: retry after {_when(record.expires_at + self.skew)}"
        return LeaseHeldError(
            f"The send ledger lease is held by {who}; gave up after waiting {wait:g} s. Another copy of "
            "this task instance is sending (Airflow can run a zombie and its replacement at once): wait "
            f"for it to finish, then retry. If it is certainly dead, {advice}.",
            where=str(self.remote),
            holder=record.holder if record else None,
            expires_at=record.expires_at if record else None,
        )

    def _taken(self, generation: int) -> bool:
        forget_listings(self.remote)
        return self._object(generation + 1).exists()

    def _lose(self, reason: str) -> LeaseLostError:
        self._lost = self._lost or f"The send ledger lease in {self.remote} was lost: {reason}. Stop sending."
        return LeaseLostError(self._lost)

    def check(self) -> None:
        """Raise ``LeaseLostError`` unless the lease is still certainly ours."""
        if self._lost is not None:
            raise LeaseLostError(self._lost)
        generation = self._generation
        if generation is None:
            raise LeaseLostError(f"The send ledger lease in {self.remote} is not held (released, or never acquired).")
        if time.time() >= self._valid_until:
            raise self._lose(f"it expired at {_when(self._valid_until)} without a renewal (store unreachable?)")
        try:
            taken = self._taken(generation)
        except OSError:
            return  # the store is unreachable, but before our expiry no one else can take the lease
        if taken:
            raise self._lose(f"another copy took generation {generation + 1}")

    def check_held(self) -> None:
        """``check()`` without I/O, between a (possibly slow) ledger write and the send it releases: the
        lease must be ours for ``skew`` more seconds (a taker waits ``skew`` past the expiry)."""
        if self._lost is None and self._generation is not None and time.time() >= self._valid_until - self.skew:
            raise self._lose(f"less than {self.skew:g} s of it were left after a ledger write (store slow?)")
        if self._lost is not None or self._generation is None:
            self.check()

    def renew(self) -> None:
        """Extend the lease by one TTL from now (the renewal thread does this every ``ttl / 3``)."""
        with self._io_lock:
            self.check()
            generation, before = self._generation, self._valid_until
            assert generation is not None  # check() passed
            expires_at = time.time() + self.ttl
            self._write(generation, expires_at)
            # A write that landed after our previous expiry may have raced a taker: do not count it.
            if time.time() >= before:
                raise self._lose("a renewal finished only after the lease had expired")
            self._valid_until = expires_at

    def _renew_loop(self) -> None:
        pause = self.ttl / 3
        while not self._stop.wait(pause):
            try:
                self.renew()
                pause = self.ttl / 3
            except LeaseLostError:
                return
            except Exception:  # the store may come back before our expiry: keep trying, sooner
                log.warning("Renewing the send ledger lease in %s failed; retrying", self.remote, exc_info=True)
                pause = self.ttl / 10

    def _stop_renewing(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def release(self) -> None:
        """Stop renewing and mark our lease object released, if it is still ours; a no-op when not held."""
        self._stop_renewing()
        generation, self._generation = self._generation, None
        if generation is None or self._lost is not None:
            return
        try:
            with self._io_lock:
                if time.time() < self._valid_until and not self._taken(generation):  # still ours
                    self._write(generation, self._valid_until, released=True)
        except Exception:  # not fatal: the lease then ends at its expiry instead of now
            log.warning("Releasing the send ledger lease in %s failed", self.remote, exc_info=True)

    def __enter__(self) -> ObjectLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
