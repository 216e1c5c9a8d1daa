"""``BulkSender``: prepared messages sent concurrently on one event loop, paced by the client's rate limiter,
exactly once per ledger key across retries, killed workers and cleared tasks (see ``ledger``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from airflow_provider_globesms.client import aio
from airflow_provider_globesms.client.aio import AsyncGlobeSmsClient
from airflow_provider_globesms.client.bulk.commit import GroupCommit, SendGuard
from airflow_provider_globesms.client.bulk.prepare import (
    Campaign,
    Held,
    PreparedMessage,
    PreparedRow,
    RowError,
    Suppressed,
)
from airflow_provider_globesms.client.bulk.send_gate import (
    WindowClosedError,
    held_from_now,
    replay_blocked,
    vouchers,
    window_closed,
)
from airflow_provider_globesms.client.errors import (
    ApiError,
    LedgerError,
    OutcomeUnknownError,
    ReceivedWithoutAnswerError,
    RequestNotSentError,
)
from airflow_provider_globesms.client.ledger.object_ledger import SegmentLedger
from airflow_provider_globesms.client.ledger.sqlite_ledger import (
    SENT_STATES,
    UNCONFIRMED_STATES,
    LedgerEntry,
    SqliteLedger,
    Status,
)
from airflow_provider_globesms.client.results.report import LineLogger, Progress, ResultsWriter, SendSummary
from airflow_provider_globesms.client.wire.signing import SignedRequest

log = logging.getLogger(__name__)

REPLAY_WINDOW = 14 * 60  # the gateway accepts a timestamp for 15 minutes; keep a margin
ARRIVED_NOTE = (
    "the request arrived at the API (a replay was refused as already seen) but its answer was lost: whether "
    "it was accepted is unknown (a throttled or refused request is refused as seen too); no MessageId"
)


class BulkSender:
    """Sends prepared messages concurrently on one event loop, exactly once per ledger key."""

    def __init__(
        self,
        campaign: Campaign,
        ledger: SqliteLedger,
        results: ResultsWriter,
        *,
        concurrency: int = 64,
        resend_unknown: bool = False,
        confirm_unknown: bool = True,
        progress_interval: float = 10.0,
        logger: LineLogger = log,
        guard: SendGuard | None = None,
    ) -> None:
        self.campaign = campaign
        self.guard = guard
        self.client = campaign.client
        self.ledger = ledger
        self.results = results
        self.concurrency = max(1, concurrency)
        self.resend_unknown = resend_unknown
        self.confirm_unknown = confirm_unknown
        self.progress_interval = progress_interval
        self.logger = logger
        self.summary = SendSummary()
        self._progress: Progress | None = None
        self._fatal: BaseException | None = None
        self._aclient: AsyncGlobeSmsClient | None = None
        # A remote ledger's writes are slow I/O: keep them off the event loop.
        self._ledger_threads = (
            ThreadPoolExecutor(2, thread_name_prefix="globesms-ledger") if isinstance(ledger, SegmentLedger) else None
        )
        self._commit = GroupCommit(ledger, guard, self._ledger_threads)

    def run(self, items: Iterable[PreparedRow], total: int) -> SendSummary:
        """Send every validated message that must be sent (``items`` usually a ``Spill``); blocks until done."""
        try:
            return aio.run(self.run_async(items, total))
        finally:
            if self._ledger_threads is not None:
                self._ledger_threads.shutdown()

    async def run_async(self, items: Iterable[PreparedRow], total: int) -> SendSummary:
        """Like ``run``, on the running event loop."""
        started = time.monotonic()
        if iter(items) is items:
            raise TypeError("items must be re-iterable (a Spill or a sequence): recovery looks at them first")
        retry = replace(self.client.retry, confirm_by_replay=self.confirm_unknown)
        self._aclient = AsyncGlobeSmsClient(self.client, max_connections=self.concurrency, retry=retry)
        flusher = asyncio.create_task(self._flush_outcomes()) if self._ledger_threads is not None else None
        try:
            await self.recover(items)
            slots = asyncio.Semaphore(self.concurrency)
            tasks: set[asyncio.Task[None]] = set()

            def finished(task: asyncio.Task[None]) -> None:
                tasks.discard(task)
                slots.release()
                if not task.cancelled() and task.exception() is not None and self._fatal is None:
                    self._fatal = task.exception()  # e.g. the ledger cannot be written: stop sending

            async with Progress(self.summary, total, self.progress_interval, self.logger) as progress:
                self._progress = progress
                for message in self._plan(items):
                    await slots.acquire()
                    if self._fatal is not None:
                        slots.release()
                        break
                    task = asyncio.create_task(self._send_one(message))
                    tasks.add(task)
                    task.add_done_callback(finished)
                if tasks:
                    await asyncio.wait(set(tasks))
        finally:
            if flusher is not None:
                flusher.cancel()
            await self._aclient.aclose()
        if self._fatal is not None:
            raise self._fatal
        await self._off_loop(self.ledger.flush)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    async def _off_loop(self, call: Callable[..., None], *args: Any) -> None:
        """Run a ledger call; off the event loop when the ledger is remote (slow I/O)."""
        if self._ledger_threads is None:
            call(*args)
        else:
            await asyncio.get_running_loop().run_in_executor(self._ledger_threads, call, *args)

    async def _flush_outcomes(self) -> None:
        """A remote ledger gets the outcomes about every second, so a killed worker loses little."""
        while True:
            await asyncio.sleep(1.0)
            await self._off_loop(self.ledger.flush)

    # --- what a crashed or timed-out attempt left open ------------------------------------------

    async def recover(self, items: Iterable[PreparedRow] = ()) -> int:
        """Settle what earlier tries left in doubt (pending after a kill, or unknown with its signed
        request) by replaying the exact requests, before anything new is sent. A replay may be a send: only
        one this try's ``items`` still vouch for (the same number and text, neither suppressed nor in quiet
        hours as it goes) is replayed; the others stay unknown, and are reported so."""
        doubtful = self.ledger.in_doubt() if self.confirm_unknown else self.ledger.pending()
        unsettled = self.ledger.unsettled()  # the doubtful, and unknowns no replay can settle any more
        vouched = vouchers(items, {entry.key for entry in unsettled}) if unsettled else {}
        replayed = {entry.key for entry in doubtful}
        for entry in unsettled:
            if entry.key not in vouched and entry.key not in replayed:
                self._orphan_unknown(entry, replay_blocked(None) or "")
        settled: Counter[str] = Counter()
        slots = asyncio.Semaphore(self.concurrency)

        async def settle(entry: LedgerEntry) -> None:
            async with slots:  # concurrently, paced by the limiter: they must beat the 15-minute window
                extra: dict[str, Any]
                blocked = replay_blocked(vouched.get(entry.key))
                if blocked:
                    error = f"outcome unknown; not confirmed by replay: {blocked}"
                    status, extra = Status.UNKNOWN, {"error": error, "request": entry.request}
                else:
                    status, extra = await self._settle(entry, vouched.get(entry.key))
            settled[status.value] += 1
            await self._store(LedgerEntry(entry.key, status, entry.row, entry.to, updated_at=time.time(), **extra))
            if entry.key not in vouched:
                self._orphan_unknown(entry, blocked or "")

        await asyncio.gather(*(settle(entry) for entry in doubtful))
        if doubtful:
            self.logger.warning(
                "%d messages were left in doubt by an earlier attempt (in flight when it stopped, or "
                "unanswered); settled by replay: %s",
                len(doubtful),
                ", ".join(f"{k} {v}" for k, v in sorted(settled.items())),
            )
        self.summary.recovered = len(doubtful)
        return len(doubtful)

    def _orphan_unknown(self, entry: LedgerEntry, why: str) -> None:
        """An earlier try's message in doubt that no row of this try sends: reported here (``_plan`` never
        sees it), as unknown (or arrived), with its row and masked number as the ledger keeps them."""
        status = Status.ARRIVED if entry.status is Status.ARRIVED else Status.UNKNOWN
        self.summary.total += 1
        self.summary.unknown_previous += 1
        self.summary.tally(status, entry.segments or 1)
        self.results.write(entry.row, entry.to, status, error=entry.error, note=f"earlier attempt; {why}")

    async def _settle(self, entry: LedgerEntry, voucher: PreparedRow | None = None) -> tuple[Status, dict[str, Any]]:
        """Replay a signed request whose answer was lost; return what that proves."""
        request = entry.request
        if request is None:
            return Status.UNKNOWN, {"error": entry.error or "outcome unknown"}
        if not self.confirm_unknown:
            return Status.UNKNOWN, {"error": entry.error or "outcome unknown", "request": request}
        signed_at = request.signed_at() or entry.updated_at
        if time.time() - signed_at > REPLAY_WINDOW:
            return Status.UNKNOWN, {"error": "outcome unknown; too old to confirm by replay (15 minutes)"}
        assert self._aclient is not None
        try:
            gate = (lambda: _gate(voucher)) if isinstance(voucher, PreparedMessage) else None
            result = await self._aclient.replay_send(request, gate)
        except WindowClosedError:
            return Status.UNKNOWN, {"error": "outcome unknown; not replayed: quiet hours began", "request": request}
        except ReceivedWithoutAnswerError:
            # Kept (sealed) so that a pushed receipt can confirm it later: its number and signing time.
            # ``in_doubt`` never returns an arrived entry: its replay is refused as seen anyway.
            return Status.ARRIVED, {"error": ARRIVED_NOTE, "request": request}
        except OutcomeUnknownError as exc:
            return Status.UNKNOWN, {"error_code": exc.code, "error": str(exc), "request": exc.request}
        except ApiError as exc:
            # Refused with a business code: the nonce was fresh, so no earlier copy had arrived.
            return Status.FAILED, {"error_code": exc.code, "error": str(exc)}
        return Status.ACCEPTED, {"message_id": result.message_id, "segments": result.segments}

    # --- planning and sending -------------------------------------------------------------------

    def _not_sent_now(self, item: Suppressed | Held, look_up: bool) -> None:
        """Suppressed, or in quiet hours: not sent now. One an earlier try (or this task before a deferral)
        already sent is reported as sent: the list may have grown, the window may have closed again."""
        message = item.message
        entry = self.ledger.get(message.key) if look_up else None
        if entry is not None and entry.status in SENT_STATES:
            self._settled_earlier(message, entry)
        elif entry is not None and entry.status is not Status.FAILED:
            self._unknown_earlier(message, entry, "not replayed (suppressed or in quiet hours now)")
        elif isinstance(item, Suppressed):
            self.summary.suppressed += 1
            self.results.write(message.row, message.to, Status.SUPPRESSED, segments=message.segments)
        else:
            self.summary.held += 1
            self.summary.held_unknown_zone += item.unknown_zone
            if item.opens_at is not None:
                opens, earliest = item.opens_at.timestamp(), self.summary.next_opening
                self.summary.next_opening = opens if earliest is None else min(earliest, opens)
            until = item.opens_at.isoformat() if item.opens_at else None
            note = "time zone unknown" if item.unknown_zone else "quiet hours in the recipient's time zone"
            self.results.write(message.row, message.to, Status.HELD, segments=message.segments, until=until, note=note)

    def _plan(self, items: Iterable[PreparedRow]) -> Iterator[PreparedMessage]:
        """Yield what must be sent; account for invalid rows and what earlier attempts settled."""
        # A first attempt has an empty ledger and (validation saw to it) no repeated keys: no look-ups.
        look_up = bool(self.ledger.counts())
        for prepared in items:
            self.summary.total += 1
            if isinstance(prepared, PreparedMessage) and prepared.closes_at is not None and window_closed(prepared):
                prepared = held_from_now(prepared)  # validated in the window; sending ran past its end
            if isinstance(prepared, RowError):
                self.summary.invalid += 1
                self.results.write(prepared.row, "", Status.INVALID, field=prepared.field, error=prepared.reason)
                continue
            if isinstance(prepared, Suppressed | Held):
                self._not_sent_now(prepared, look_up)
                continue
            entry = self.ledger.get(prepared.key) if look_up else None
            if entry is None or entry.status is Status.FAILED:
                yield prepared  # never sent, or refused: safe to send
            elif entry.status in SENT_STATES:
                self._settled_earlier(prepared, entry)
            elif self.resend_unknown and entry.status in UNCONFIRMED_STATES:
                yield prepared  # the user's explicit choice; a pending entry (never left by recover) is not
            else:
                self._unknown_earlier(prepared, entry, "not resent")

    def _unknown_earlier(self, prepared: PreparedMessage, entry: LedgerEntry, why: str) -> None:
        status = Status.ARRIVED if entry.status is Status.ARRIVED else Status.UNKNOWN
        self.summary.unknown_previous += 1
        self.summary.tally(status, prepared.segments)
        self._count_done()
        self.results.write(
            prepared.row,
            prepared.to,
            status,
            segments=prepared.segments,
            error=entry.error,
            note=f"{status.value} since an earlier attempt; {why}",
        )

    def _settled_earlier(self, prepared: PreparedMessage, entry: LedgerEntry) -> None:
        segments = entry.segments or prepared.segments
        self.summary.tally(entry.status, segments)
        self._count_done(skipped=True)
        self.results.write(
            prepared.row,
            prepared.to,
            entry.status,
            message_id=entry.message_id,
            segments=segments,
            note="sent by an earlier attempt",
        )

    def _count_done(self, skipped: bool = False) -> None:
        if skipped:
            self.summary.skipped_already_sent += 1
        if self._progress is not None:
            self._progress.done += 1

    async def _store(self, entry: LedgerEntry) -> None:
        """Record an outcome. A refusal is written durably: left pending, its consumed nonce would make a
        later replay look like proof of receipt. Other outcomes may be buffered (see the ledger)."""
        if entry.status is Status.FAILED:
            await self._commit.write(entry)
        else:
            self.ledger.record(entry)

    async def _send_one(self, message: PreparedMessage) -> None:
        assert self._aclient is not None
        last: list[SignedRequest] = []

        def entry(status: Status, **fields: Any) -> LedgerEntry:
            return LedgerEntry(message.key, status, message.row, message.to, updated_at=time.time(), **fields)

        refused = [False]  # whether the last attempt was turned away (nothing of it arrived)

        async def before_exchange(signed: SignedRequest) -> None:
            await self._commit.write(entry(Status.PENDING, request=signed))
            last[:], refused[0] = [signed], False

        async def after_refusal(signed: SignedRequest) -> None:
            # Throttled or turned away: the API did not take it. Say so before the retry's backoff, so a
            # worker killed meanwhile leaves a refusal to resend, not a "pending" that replay would misread.
            await self._commit.write(entry(Status.FAILED, error="refused; a retry was under way"))
            refused[0] = True

        extra: dict[str, Any]
        try:
            result = await self._aclient.send_params(
                message.params, before_exchange, after_refusal, lambda: _gate(message)
            )
            status, extra = Status.ACCEPTED, {"message_id": result.message_id, "segments": result.segments}
        except WindowClosedError:
            # The wait for a slot, the limiter or a retry ran past the window. Nothing was sent, or the
            # last attempt was refused: held. The last attempt may have arrived: unknown, never re-sent now.
            if not last or refused[0]:
                self._not_sent_now(held_from_now(message), look_up=False)
                return
            error = "outcome unknown; not re-sent: the recipient's quiet hours began"
            status, extra = Status.UNKNOWN, {"error": error, "request": last[0]}
        except LedgerError:
            raise  # fatal: without a ledger, nothing more may be sent
        except ReceivedWithoutAnswerError:
            # The replay was the last request's bytes: kept for a pushed receipt to confirm (see _settle).
            status, extra = Status.ARRIVED, {"error": ARRIVED_NOTE, "request": last[0] if last else None}
        except OutcomeUnknownError as exc:
            # Kept with its signed request while a replay can still settle it (a later try does).
            status, extra = Status.UNKNOWN, {"error_code": exc.code, "error": str(exc), "request": exc.request}
        except (ApiError, RequestNotSentError) as exc:
            code = getattr(exc, "code", None) or type(exc).__name__
            status, extra = Status.FAILED, {"error_code": code, "error": str(exc)}
        except Exception as exc:  # a bug must not lose track of a message
            # If the request may have left, keep it to settle; if it never did, it may be sent again.
            status = Status.UNKNOWN if last else Status.FAILED
            extra = {"error_code": type(exc).__name__, "error": str(exc), "request": last[0] if last else None}
            self.logger.exception("row %d: unexpected error while sending", message.row)
        await self._finish(message, status, extra)

    async def _finish(self, message: PreparedMessage, status: Status, extra: dict[str, Any]) -> None:
        segments = int(extra.pop("segments", 0) or message.segments)
        entry = LedgerEntry(
            message.key, status, message.row, message.to, segments=segments, updated_at=time.time(), **extra
        )
        await self._store(entry)
        self.results.write(
            message.row,
            message.to,
            status,
            message_id=entry.message_id,
            segments=segments,
            error_code=entry.error_code,
            error=entry.error,
        )
        self.summary.sent += 1
        self.summary.tally(status, segments, entry.error_code)
        self._count_done()


def _gate(message: PreparedMessage) -> None:
    """Before each attempt of a message: stop it when its recipient's quiet hours have begun."""
    if window_closed(message):
        raise WindowClosedError
