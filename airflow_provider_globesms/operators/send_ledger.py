"""Opening a task instance's send ledger: one holder at a time, and never an empty one in place of a record.

Two copies of one task instance (a zombie and its replacement) would both send everything: the ledger is
held under a lease (``client.ledger.lease``) for the whole send, and a second copy waits ``lease_wait`` seconds,
then fails naming the holder, having sent nothing.

A ledger that was truncated, wiped or left on another worker's disk would make a retry send everything
again. So before sending, a try looks for evidence of an earlier one: a witness it writes into Airflow's
task state store (Airflow >= 3.3; it lives in the metadata database, apart from the ledger) before its
first send, or an earlier try's results file, or, where there is no task state store, a try number
above 1. With such evidence, a missing, empty or unreadable ledger stops the task before anything is
sent, unless ``resend_without_ledger=True`` says to send anyway.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from airflow_provider_globesms._compat import AirflowException, AirflowFailException
from airflow_provider_globesms.client.errors import LeaseHeldError
from airflow_provider_globesms.client.files.private import narrow_path, private_dirs
from airflow_provider_globesms.client.ledger.lease import FileLease, Holder, ObjectLease
from airflow_provider_globesms.client.ledger.object_ledger import SegmentLedger
from airflow_provider_globesms.client.ledger.sqlite_ledger import Cipher, SqliteLedger
from airflow_provider_globesms.operators.ledger_place import (
    WITNESS_KEY,
    claim,
    results_show_a_send,
    state_store,
)
from airflow_provider_globesms.storage import configured_fernet_keys, is_local, local_path, storage_path

LEASE_CHECK_EVERY = 1.0  # seconds between full lease checks while sending (an object lease costs a request)


class LedgerMissingError(AirflowFailException):
    """An earlier try left a record of sending, but the ledger that should hold it is missing or damaged."""


def earlier_try_evidence(context: Any, results_location: str) -> str | None:
    """What shows that an earlier try of this task instance may have sent messages, if anything does."""
    store = state_store(context)
    if store is not None:
        witness = store.get(WITNESS_KEY)
        if isinstance(witness, dict):
            return (
                f"try {witness.get('try')} started sending with a ledger at {witness.get('ledger')} "
                f"(recorded at {witness.get('since')} in Airflow's task state store)"
            )
    if results_show_a_send(results_location):
        return f"an earlier try's results file exists ({results_location}) and records messages sent"
    try_number = int(getattr(context["ti"], "try_number", 1) or 1)
    if store is None and try_number > 1:
        return f"this is try {try_number} and there is no task state store to ask whether earlier ones sent"
    return None


def _damaged_local_ledger(location: str, resend: bool) -> str | None:
    """Why the local ledger file cannot be trusted (empty or unreadable), moving it aside when ``resend``."""
    path = local_path(location) / "ledger.sqlite3"
    problem = None
    if path.exists() and path.stat().st_size == 0:
        problem = "is an empty file (0 bytes)"
    elif path.exists():
        try:
            # Not open_sqlite: a probe must not create the file or switch its journal, so read-only and bare.
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                db.execute("SELECT COUNT(*) FROM ledger").fetchone()
        except sqlite3.DatabaseError as exc:
            problem = f"cannot be read ({exc})"
    if problem and resend:
        path.rename(path.with_name(f"{path.name}.damaged-{int(time.time())}"))
    return problem and f"{path} {problem}"


def airflow_cipher() -> Cipher | None:
    """A Fernet keyed as Airflow's own (``[core] fernet_key``: comma-separated keys, the first seals, each
    opens), to seal the ledger's stored requests; ``None`` when no key is configured (the requests are then
    stored as JSON, still only while in doubt, and a warning says so). A key that is set but unusable refuses
    to send, as Airflow refuses to store a connection with it. Built here from the configuration each time,
    as Airflow builds its own: a cached reading from before the key was set never stands in for it."""
    from cryptography.fernet import Fernet, MultiFernet

    try:
        keys = configured_fernet_keys()
    except Exception:  # a failing fernet_key_cmd or _secret: its message may quote what it printed
        raise AirflowFailException("[core] fernet_key could not be read; nothing was sent") from None
    if not keys:
        logging.getLogger(__name__).warning(
            "Send ledger requests are not encrypted: no [core] fernet_key is configured. A request in doubt "
            "(its text, one-time codes, an STS token) is stored readable until it is settled"
        )
        return None
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise AirflowFailException(
            f"[core] fernet_key is set but unusable ({type(exc).__name__}: {str(exc)[:200]}); nothing was sent. "
            "The send ledger seals the requests it keeps with it, and will not store them unsealed in its place. "
            "Fix the key (a 32-byte url-safe base64 Fernet key; several comma-separated for a rotation)"
        ) from None


def _open(location: str) -> SqliteLedger:
    if is_local(location):
        return SqliteLedger(local_path(location) / "ledger.sqlite3", airflow_cipher())
    return SegmentLedger(storage_path(location) / "ledger", cipher=airflow_cipher())


def _checked_ledger(location: str, evidence: Callable[[], str | None], resend: bool) -> SqliteLedger:
    damage = _damaged_local_ledger(location, resend) if is_local(location) else None
    if damage and not resend:
        raise LedgerMissingError(
            f"The send ledger {damage}; nothing was sent. It records what earlier tries sent: without it they "
            "would be sent again. Restore it, or set resend_without_ledger=True to move it aside and send "
            "every message again (whoever got one gets a second)."
        )
    try:
        ledger = _open(location)
    except (OSError, ValueError, KeyError, sqlite3.DatabaseError) as exc:
        raise LedgerMissingError(f"The send ledger at {location} cannot be read ({exc}); nothing was sent.") from None
    found = evidence() if not resend and not ledger.counts() else None  # looked for only when it matters
    if found:
        ledger.close()
        raise LedgerMissingError(
            f"The send ledger at {location} is missing or empty, but {found}. Nothing was sent: without "
            "the ledger, every message an earlier try sent would be sent again. Restore the ledger (or point "
            "ledger_uri at storage every worker shares), or set resend_without_ledger=True to send everything "
            "again (whoever got a message gets a second)."
        )
    return ledger


def _lease(location: str, context: Any) -> FileLease | ObjectLease:
    ti = context["ti"]
    where = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{getattr(ti, 'map_index', -1)} try {ti.try_number}"
    holder = Holder(description=where)
    if is_local(location):
        folder = private_dirs(local_path(location))
        for earlier in (folder, folder / "ledger.lease"):  # left readable by a version before 0.3
            narrow_path(earlier)
        return FileLease(folder / "ledger.lease", holder)
    return ObjectLease(storage_path(location) / "lease", holder)


@contextlib.contextmanager
def open_send_ledger(
    location: str,
    context: Any,
    *,
    results_location: str,
    lease_wait: float,
    resend_without_ledger: bool = False,
) -> Iterator[tuple[SqliteLedger, LedgerGuard]]:
    """The task instance's ledger, held under its lease, checked against evidence of earlier tries.

    Yields the ledger and the bulk sender's guard (``LedgerGuard``): the lease is checked before and after
    every durable write, and the task-state-store witness is written before the first.
    """
    lease = _lease(location, context)
    try:
        lease.acquire(wait=lease_wait)
    except LeaseHeldError as exc:
        raise AirflowException(f"Another copy of this task instance is sending; nothing was sent. {exc}") from None
    try:
        claim(location, context["ti"])
        evidence = functools.partial(earlier_try_evidence, context, results_location)
        ledger = _checked_ledger(location, evidence, resend_without_ledger)
        try:
            yield ledger, LedgerGuard(lease, location, context)
        finally:
            ledger.close()
    finally:
        lease.release()


class LedgerGuard:
    """The bulk sender's ``SendGuard`` for one task instance: the lease before and after every ledger
    write, and the task-state-store witness before the first."""

    def __init__(self, lease: FileLease | ObjectLease, location: str, context: Any) -> None:
        self.lease = lease
        self.location = location
        self.context = context
        self._checked = 0.0
        self._witnessed = False

    def before_write(self) -> None:
        """Check the lease (at most every ``LEASE_CHECK_EVERY`` seconds) and record the witness once."""
        now = time.monotonic()
        if now - self._checked >= LEASE_CHECK_EVERY:  # an object lease's full check costs a request
            self.lease.check()
            self._checked = now
        if not self._witnessed:
            store = state_store(self.context)
            if store is not None and store.get(WITNESS_KEY) is None:
                since = datetime.now(timezone.utc).isoformat(timespec="seconds")
                store.set(WITNESS_KEY, {"ledger": self.location, "since": since, "try": self.context["ti"].try_number})
            self._witnessed = True

    def after_write(self) -> None:
        """Check, without I/O, that the lease is still held."""
        self.lease.check_held()
