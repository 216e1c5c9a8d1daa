"""Group commit of the ledger's durable records: every send waits for its ``pending`` record to be durable,
and all records queued while one write is in flight go out in the next single write (one transaction
locally, one segment object remotely), so durability costs a write per batch, not per message."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from airflow_provider_globesms.client.errors import LedgerError
from airflow_provider_globesms.client.ledger.sqlite_ledger import LedgerEntry, SqliteLedger


class SendGuard(Protocol):
    """Checks around every durable write, so around every send; each raises to stop sending."""

    def before_write(self) -> None:
        """Before records are written (may do I/O: e.g. ask whether the ledger's lease is still ours)."""

    def after_write(self) -> None:
        """After they are durable, before the sends they release leave (no I/O)."""


class GroupCommit:
    """``await commit.write(entry)`` returns once ``entry`` is durable in the ledger (or raises
    ``LedgerError``); runs on the event loop, with a remote ledger's writes on ``threads``."""

    def __init__(
        self, ledger: SqliteLedger, guard: SendGuard | None, threads: ThreadPoolExecutor | None = None
    ) -> None:
        self.ledger = ledger
        self.guard = guard
        self.threads = threads
        self._queue: list[tuple[LedgerEntry, asyncio.Future[None]]] = []
        self._committing = False

    async def write(self, entry: LedgerEntry) -> None:
        """Return once ``entry`` is durable."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, done))
        if not self._committing:
            self._committing = True
            asyncio.get_running_loop().call_soon(self._commit)
        await done

    def _commit(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            self._committing = False
            return
        entries = [entry for entry, _ in batch]

        def settle(error: BaseException | None) -> None:
            if error is None and self.guard is not None:
                try:
                    self.guard.after_write()  # a write can outlast the lease: check before the sends go
                except Exception as exc:
                    error = exc
            for _, done in batch:
                if not done.done():
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(LedgerError(f"the ledger cannot be written: {error}"))
            asyncio.get_running_loop().call_soon(self._commit)  # whatever queued meanwhile

        try:
            if self.guard is not None:
                self.guard.before_write()  # on the loop's thread: it may talk to Airflow
        except Exception as exc:
            settle(exc)
            return
        if self.threads is None:
            try:
                self.ledger.write_many(entries)  # a local transaction: microseconds
            except Exception as exc:
                settle(exc)
            else:
                settle(None)
            return
        future = asyncio.get_running_loop().run_in_executor(self.threads, self.ledger.write_many, entries)
        future.add_done_callback(lambda f: settle(f.exception()))
