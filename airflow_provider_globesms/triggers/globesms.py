"""GlobeSmsDeliveryTrigger: waits, in the triggerer, until a campaign's receipts are final.

Async and serializable (only ids, URIs and numbers in its kwargs). It builds its own client, with its
own QueryMessage rate limiter, and keeps receipts in a private temporary SQLite file, so memory stays
flat for any campaign. Its one output is the receipts file it writes at the end, atomically, to a
location fixed by the sensor: running it again (a restarted triggerer) rewrites the same file. It
never sends anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_globesms.client.aio import AsyncGlobeSmsClient
from airflow_provider_globesms.client.receipts.tracker import DeliveryTracker, read_jsonl
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.storage import push_store, storage_path, store_file

log = logging.getLogger(__name__)


def source_fingerprint(source: str | list[str]) -> str:
    """Changes when the input changes: a results file rewritten by a re-run send task, another id list."""
    if isinstance(source, str):
        info = storage_path(source).stat()
        return f"{source}|{getattr(info, 'st_size', '')}|{getattr(info, 'st_mtime', '')}"
    return "ids|" + hashlib.sha256("\n".join(source).encode()).hexdigest()


def load_source(tracker: DeliveryTracker, source: str | list[str], loaded_at: float | None = None) -> int:
    """Load what to track (a results file, URI or path, or a list of MessageIds) unless already loaded;
    ``loaded_at``: when they were first seen (default now)."""
    fingerprint = source_fingerprint(source)
    if tracker.source == fingerprint:
        return 0
    if isinstance(source, str):
        with storage_path(source).open("rb") as handle:  # type: ignore[no-untyped-call]
            return tracker.load(read_jsonl(handle), fingerprint, loaded_at)
    ids = ({"message_id": str(message_id), "row": n} for n, message_id in enumerate(source, 1))
    return tracker.load(ids, fingerprint, loaded_at)


class GlobeSmsDeliveryTrigger(BaseTrigger):
    """Reads pushed receipts (when ``push_uri`` is given) and polls QueryMessage for the rest, until every
    message is final or ``timeout_at`` (epoch seconds) passes.

    :param source: the send results file (path or URI) or a list of MessageIds.
    :param results_uri: where to write the receipts (one JSON line per message).
    :param first_poll_after: seconds to wait before the first poll (the sensor polled just before deferring).
    :param globesms_conn_id: the connection (type ``globesms``).
    :param poll_interval: seconds between polls.
    :param timeout_at: when to stop waiting (epoch seconds); ``None``: wait until every message is final.
    :param concurrency: QueryMessage calls in flight (the 300/s cap paces them).
    :param push_uri: where pushed receipts are kept; ``None``: receipts do not come by push (poll only).
    :param campaign_ids: the campaigns (``TaskId``) whose pushed receipts to read.
    :param push_grace: seconds after ``loaded_at`` before a message with no pushed receipt is polled.
    :param loaded_at: when the sensor first loaded the messages (epoch seconds; default: now).
    """

    def __init__(
        self,
        *,
        source: str | list[str],
        results_uri: str,
        globesms_conn_id: str = GlobeSmsHook.default_conn_name,
        poll_interval: float = 30.0,
        timeout_at: float | None = None,
        concurrency: int = 64,
        first_poll_after: float = 0.0,
        push_uri: str | None = None,
        campaign_ids: list[str] | None = None,
        push_grace: float = 0.0,
        loaded_at: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source = source
        self.results_uri = results_uri
        self.globesms_conn_id = globesms_conn_id
        self.poll_interval = poll_interval
        self.timeout_at = timeout_at
        self.concurrency = concurrency
        self.first_poll_after = first_poll_after
        self.push_uri = push_uri
        self.campaign_ids = list(campaign_ids or [])
        self.push_grace = push_grace
        self.loaded_at = loaded_at

    def _before_timeout(self, seconds: float) -> float:
        """``seconds``, cut short so that a wait never passes ``timeout_at``."""
        if self.timeout_at is None:
            return seconds
        return max(0.0, min(seconds, self.timeout_at - time.time()))

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's class path and arguments, to recreate it in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "source": self.source,
                "results_uri": self.results_uri,
                "globesms_conn_id": self.globesms_conn_id,
                "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at,
                "concurrency": self.concurrency,
                "first_poll_after": self.first_poll_after,
                "push_uri": self.push_uri,
                "campaign_ids": self.campaign_ids,
                "push_grace": self.push_grace,
                "loaded_at": self.loaded_at,
            },
        )

    async def _look(self, tracker: DeliveryTracker, client: AsyncGlobeSmsClient) -> int:
        """Read what was pushed since the last look, poll the pending messages that are due; return how many
        are still pending."""
        loaded_before = None
        if self.push_uri is not None and self.campaign_ids:
            store = push_store(self.push_uri)
            pushed = await asyncio.to_thread(tracker.read_pushed, store, self.campaign_ids)
            self.log.info(pushed.describe(tracker.pending()))
            loaded_before = time.time() - self.push_grace
        if tracker.due(loaded_before):
            round_ = await tracker.poll_round(client, concurrency=self.concurrency, loaded_before=loaded_before)
            self.log.info(round_.describe(tracker.pending()))
        return tracker.pending()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until no receipt is pending or the timeout nears; yield one event with the summary and results."""
        client = await GlobeSmsHook(self.globesms_conn_id, max_connections=self.concurrency).aget_client()
        aclient = AsyncGlobeSmsClient(client, max_connections=self.concurrency)
        with tempfile.TemporaryDirectory(prefix="globesms-receipts-") as workdir:
            tracker = DeliveryTracker(Path(workdir) / "receipts.sqlite3")
            try:
                await asyncio.to_thread(load_source, tracker, self.source, self.loaded_at)
                if self.first_poll_after > 0:
                    await asyncio.sleep(self._before_timeout(self.first_poll_after))
                status = "done"
                while True:
                    pending = await self._look(tracker, aclient)
                    if pending == 0:
                        break
                    if self.timeout_at is not None and time.time() + self.poll_interval >= self.timeout_at:
                        status = "timeout"
                        break
                    await asyncio.sleep(self.poll_interval)
                results = Path(workdir) / "receipts.jsonl"
                with results.open("wb") as handle:
                    tracker.write_results(handle)
                stored = await asyncio.to_thread(store_file, results, self.results_uri)
                summary = tracker.summary()
            finally:
                tracker.close()
                await aclient.aclose()
        yield TriggerEvent({"status": status, "summary": summary, "results_uri": stored})  # type: ignore[no-untyped-call]
