"""Where pushed receipts are kept: a local folder, or object storage every component shares.

The receiver writes each push as immutable objects, one per campaign (``TaskId``) the push touched,
before it answers ``200``: a push answered is durable, a push that failed to store is answered 5xx and
Alibaba pushes it again. Readers (the delivery sensor and trigger, the operator settling sends in doubt)
list their campaign's folder and read the objects they have not read yet. Nothing is ever rewritten, so
concurrent receivers (several api-server workers, replicas) need no lock, and a receiver killed
mid-write leaves at most a partial file that no reader takes (local) or no object at all (S3: an object
appears whole on its PUT). Duplicates are stored as pushed; readers count a MessageId once.

Layout below the root::

    receipts/<campaign>/<store time in ns>-<random>.json   the receipts of one push for one campaign
    dead-letter/<store time in ns>-<random>.json           records that could not be read, with reasons

``<campaign>`` is a digest of the TaskId (ids are free text; a digest is a safe, fixed-length name).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from airflow_provider_globesms.client.files.private import FILE_MODE, private_dirs
from airflow_provider_globesms.client.ledger.object_ledger import StoragePath, forget_listings
from airflow_provider_globesms.client.receipts.pushed import DeadLetter, PushedReceipt

log = logging.getLogger(__name__)

RECEIPTS, DEAD_LETTERS = "receipts", "dead-letter"
_NAME = re.compile(r"\d{20}-[0-9a-f]{32}\.json")
_encode = msgspec.json.Encoder().encode
_decode_receipts = msgspec.json.Decoder(list[PushedReceipt]).decode


def campaign_folder(task_id: str) -> str:
    """The folder name of a campaign's receipts: ``t-`` and a digest of its TaskId (``none`` without one)."""
    if not task_id:
        return "none"
    return "t-" + hashlib.sha256(task_id.encode()).hexdigest()[:32]


def object_name() -> str:
    """A new object's name: the writer's clock (for people reading a listing) and a random part (unique)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex}.json"


class PushStore:
    """Pushed receipts below ``root``: a local folder (a path) or any path-like object store location
    (Airflow's ``ObjectStoragePath``, a ``UPath``)."""

    def __init__(self, root: str | os.PathLike[str] | StoragePath) -> None:
        self.local = isinstance(root, str | os.PathLike) and not hasattr(root, "fs")
        self.root: Any = Path(root) if self.local else root  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # --- writing (the receiver) -------------------------------------------------------------------

    def write(self, receipts: Sequence[PushedReceipt], dead: Sequence[DeadLetter] = (), source: str = "") -> int:
        """Store one push durably: its receipts grouped by campaign, then its dead letters; returns the
        number of objects written. Raises ``OSError`` (or the store's error) when anything was not stored."""
        by_campaign: dict[str, list[PushedReceipt]] = defaultdict(list)
        for receipt in receipts:
            by_campaign[campaign_folder(receipt.task_id)].append(receipt)
        written = 0
        for folder, group in by_campaign.items():
            self._put(f"{RECEIPTS}/{folder}", _encode(group))
            written += 1
        if dead:
            letter = {
                "received_at": time.time(),
                "source": source,
                "records": [{"index": d.index, "reason": d.reason, "record": d.record} for d in dead],
            }
            self._put(DEAD_LETTERS, _encode(letter))
            written += 1
        return written

    def _put(self, folder: str, data: bytes) -> None:
        name = object_name()
        if not self.local:
            target = self.root / folder / name
            with target.open("wb") as handle:  # an object store's PUT: the object appears whole, or not at all
                handle.write(data)
            return
        directory = private_dirs(self.root / folder)
        partial = directory / f".{name}.partial"
        fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # durable before it is visible, and before the receiver answers 200
        finally:
            os.close(fd)
        try:
            os.rename(partial, directory / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        _fsync_folder(directory)

    # --- reading (sensor, trigger, operator) ------------------------------------------------------

    def names(self, task_id: str) -> list[str]:
        """The objects of a campaign's receipts, oldest name first (read fresh, never from a cache)."""
        folder = self.root / RECEIPTS / campaign_folder(task_id)
        forget_listings(folder)
        try:
            return sorted(p.name for p in folder.iterdir() if _NAME.fullmatch(p.name))
        except (FileNotFoundError, NotADirectoryError):  # nothing pushed yet (S3 has no empty folders)
            return []

    def read(self, task_id: str, name: str) -> list[PushedReceipt]:
        """The receipts in one object of a campaign."""
        with (self.root / RECEIPTS / campaign_folder(task_id) / name).open("rb") as handle:
            return _decode_receipts(handle.read())

    def receipts(self, task_id: str, skip: Container[str] = ()) -> Iterator[tuple[str, list[PushedReceipt]]]:
        """Each object of a campaign not in ``skip`` (names already read), with its receipts. An object that
        cannot be read (written by something else, or damaged) is logged and passed over, never fatal: the
        messages it would have settled are polled after the grace, like those of a push that never came."""
        for name in self.names(task_id):
            if name in skip:
                continue
            try:
                batch = self.read(task_id, name)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                log.warning("Pushed receipts object %s of %r cannot be read (%s); passed over", name, self, exc)
                continue
            yield name, batch

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter kept (for people, and tests): when, from where, and each record's reason."""
        folder = self.root / DEAD_LETTERS
        forget_listings(folder)
        try:
            names = sorted(p.name for p in folder.iterdir() if _NAME.fullmatch(p.name))
        except (FileNotFoundError, NotADirectoryError):
            return []
        letters = []
        for name in names:
            with (folder / name).open("rb") as handle:
                letters.append(msgspec.json.decode(handle.read()))
        return letters


def _fsync_folder(directory: Path) -> None:
    """Make a rename durable: the folder's entry, not only the file's bytes."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
