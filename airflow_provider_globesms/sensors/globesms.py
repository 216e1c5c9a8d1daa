"""GlobeSmsDeliverySensor: waits for a campaign's delivery receipts and logs what reached whom."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_globesms._compat import AirflowSensorTimeout, AirflowSkipException, conf
from airflow_provider_globesms.client import aio
from airflow_provider_globesms.client.aio import AsyncGlobeSmsClient
from airflow_provider_globesms.client.receipts.tracker import DeliveryTracker, Round
from airflow_provider_globesms.client.tables import receipts_table
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.storage import (
    local_work_dir,
    push_grace,
    push_location,
    push_store,
    receipts_by_push,
    store_file,
    task_instance_location,
)
from airflow_provider_globesms.triggers.globesms import GlobeSmsDeliveryTrigger, load_source

if TYPE_CHECKING:
    from airflow.sdk import Context


class DeliveryRateTooLow(Exception):
    """Fewer messages were delivered than ``min_delivery_rate`` asks for.

    Not an ``AirflowException`` on purpose: Airflow turns those into a skip under ``soft_fail``, which is
    meant for receipts still pending at the timeout, not for a campaign that did not reach people.
    """


class GlobeSmsDeliverySensor(BaseSensorOperator):
    """Wait until every message of a campaign is delivered, failed or expired, and report it.

    :param messages: what to track: the summary ``SendGlobeSmsOperator`` returns (e.g. ``send.output``),
        the URI of its results file, or a list of MessageIds.
    :param min_delivery_rate: fail the task if a smaller share was delivered (0 to 1).
    :param results_uri: where to write the receipts, one JSON line per message; by default in this
        task instance's folder beside the ledgers.
    :param ledger_uri: the base folder for this task's files (default ``[globesms] ledger_uri``).
    :param concurrency: QueryMessage calls in flight (the 300/s cap paces them).
    :param receipts_by_push: read the receipts Alibaba pushed to the receiver first (matched on MessageId),
        and ask QueryMessage only about messages with none after ``push_grace`` seconds (default
        ``[globesms] receipts_by_push``, off).
    :param push_grace: seconds a message waits for its pushed receipt before it is polled (default
        ``[globesms] push_grace``, 1200: Alibaba retries a failed push after 1, 5 and 10 minutes).
    :param campaign_id: the sends' ``TaskId``, where their receipts are pushed (default: the send summary's
        ``campaign_id``, else the one in the results file's lines).
    :param push_uri: where pushed receipts are kept (default ``[globesms] push_uri``).
    :param deferrable: wait in the triggerer instead of a worker slot (default:
        ``[operators] default_deferrable``).
    :param globesms_conn_id: the connection (type ``globesms``).
    :param poke_interval: seconds between polls (default 30).
    :param timeout: seconds to wait in all (default one hour); receipts still pending then follow
        ``soft_fail`` (skip) or fail the task.

    Polls every ``poke_interval`` seconds (default 30) until ``timeout`` (default one hour); receipts
    still pending then follow ``soft_fail`` (skip) or fail the task. ``mode="reschedule"`` works too.
    The summary (XCom) holds counts, the delivery rate, p50/p95 time to deliver and ``results_uri``.
    """

    template_fields: Sequence[str] = ("messages", "results_uri", "globesms_conn_id", "campaign_id", "push_uri")
    ui_color = "#ffc89e"

    def __init__(
        self,
        *,
        messages: Any,
        globesms_conn_id: str = GlobeSmsHook.default_conn_name,
        min_delivery_rate: float | None = None,
        results_uri: str | None = None,
        ledger_uri: str | None = None,
        concurrency: int = 64,
        receipts_by_push: bool | None = None,
        push_grace: float | None = None,
        campaign_id: str | None = None,
        push_uri: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 30,
        timeout: float = 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        if min_delivery_rate is not None and not 0 <= min_delivery_rate <= 1:
            raise ValueError("min_delivery_rate is a share between 0 and 1")
        self.messages = messages
        self.globesms_conn_id = globesms_conn_id
        self.min_delivery_rate = min_delivery_rate
        self.results_uri = results_uri
        self.ledger_uri = ledger_uri
        self.concurrency = concurrency
        self.receipts_by_push = receipts_by_push
        if push_grace is not None and push_grace < 0:
            raise ValueError("push_grace is a number of seconds, 0 or more")
        self.push_grace = push_grace
        self.campaign_id = campaign_id
        self.push_uri = push_uri
        self.deferrable = deferrable

    # --- what to track, and where -----------------------------------------------------------------

    def _source(self) -> str | list[str]:
        messages = self.messages
        if isinstance(messages, Mapping):
            if messages.get("dry_run"):
                raise ValueError("messages is the summary of a dry run: nothing was sent, nothing to track")
            if not messages.get("results_uri"):
                raise ValueError("messages is a mapping without results_uri; pass SendGlobeSmsOperator's summary")
            return str(messages["results_uri"])
        if isinstance(messages, str):
            return messages
        if isinstance(messages, list | tuple) and all(isinstance(m, str | int) for m in messages):
            return [str(m) for m in messages]
        raise ValueError(f"messages must be a send summary, a results URI or MessageIds, not {type(messages).__name__}")

    def _folder(self, context: Context) -> str:
        return task_instance_location(context["ti"], self.ledger_uri)

    def _results_location(self, context: Context) -> str:
        return self.results_uri or f"{self._folder(context)}/receipts.jsonl"

    def _campaigns(self, tracker: DeliveryTracker) -> list[str]:
        """The campaigns whose pushed receipts to read: none when receipts do not come by push."""
        if not receipts_by_push(self.receipts_by_push):
            return []
        given = self.campaign_id or (self.messages.get("campaign_id") if isinstance(self.messages, Mapping) else None)
        campaigns = [str(given)] if given else tracker.campaigns()
        if not campaigns:
            self.log.warning(
                "receipts come by push but no campaign id is known (pass campaign_id=): polling QueryMessage only"
            )
        return campaigns

    def _tracker(self, context: Context) -> DeliveryTracker:
        """The receipts gathered so far by this task instance (kept across pokes and reschedules)."""
        tracker = DeliveryTracker(local_work_dir(self._folder(context)) / "receipts.sqlite3")
        load_source(tracker, self._source())  # a no-op unless the input changed (a re-run send task)
        return tracker

    # --- poke and reschedule modes ----------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Wait for every receipt (deferring when ``deferrable``); return the receipts summary."""
        if self.deferrable:
            # Look once first: receipts are often final already. A trigger that fires the moment it starts
            # also races Airflow 3.3's scheduler, which can then fail the resumed task (apache/airflow#72716).
            if self.poke(context):
                return self._finish(context, timed_out=False)
            self._defer(context)
        try:
            super().execute(context)
        except (AirflowSensorTimeout, AirflowSkipException):
            self._finish(context, timed_out=True)
            raise
        return self._finish(context, timed_out=False)

    @cached_property
    def hook(self) -> GlobeSmsHook:
        """The hook for ``globesms_conn_id`` (as rendered)."""
        return GlobeSmsHook(self.globesms_conn_id)

    def poke(self, context: Context) -> bool:
        """Read the receipts pushed since the last poke (when they come by push), then query the pending
        ones that are due once; ``True`` when none is pending."""
        tracker = self._tracker(context)
        try:
            loaded_before = None
            if campaigns := self._campaigns(tracker):
                pushed = tracker.read_pushed(push_store(self.push_uri), campaigns)
                self.log.info(pushed.describe(tracker.pending()))
                loaded_before = time.time() - push_grace(self.push_grace)
            if tracker.due(loaded_before):
                round_ = aio.run(self._poll(tracker, loaded_before))
                self.log.info(round_.describe(tracker.pending()))
            pending = tracker.pending()
        finally:
            tracker.close()
        return pending == 0

    async def _poll(self, tracker: DeliveryTracker, loaded_before: float | None) -> Round:
        client = AsyncGlobeSmsClient(self.hook.client, max_connections=self.concurrency)
        try:
            return await tracker.poll_round(client, concurrency=self.concurrency, loaded_before=loaded_before)
        finally:
            await client.aclose()

    def _finish(self, context: Context, *, timed_out: bool) -> dict[str, Any]:
        tracker = self._tracker(context)
        try:
            with tempfile.TemporaryDirectory(prefix="globesms-receipts-") as workdir:
                local = Path(workdir) / "receipts.jsonl"
                with local.open("wb") as handle:
                    tracker.write_results(handle)
                stored = store_file(local, self._results_location(context))
            summary = tracker.summary()
        finally:
            tracker.close()
        return self._verdict(context, summary, stored, timed_out)

    # --- deferrable mode --------------------------------------------------------------------------

    def _defer(self, context: Context) -> None:
        tracker = self._tracker(context)
        try:
            campaigns, loaded_at = self._campaigns(tracker), tracker.first_loaded_at()
        finally:
            tracker.close()
        trigger = GlobeSmsDeliveryTrigger(
            push_uri=push_location(self.push_uri) if campaigns else None,
            campaign_ids=campaigns,
            push_grace=push_grace(self.push_grace),
            loaded_at=loaded_at,
            source=self._source(),
            results_uri=self._results_location(context),
            globesms_conn_id=self.globesms_conn_id,
            poll_interval=self.poke_interval,
            first_poll_after=self.poke_interval,  # the worker has just polled
            timeout_at=time.time() + self.timeout,
            concurrency=self.concurrency,
        )
        # The trigger stops itself at the timeout with a report; the deferral's own limit is a backstop.
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + self.poke_interval + 300),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger (Airflow calls it): return the receipts summary.

        :param event: what the trigger sent: the receipts summary, its ``results_uri`` and ``status``.
        """
        return self._verdict(context, event["summary"], event["results_uri"], event["status"] == "timeout")

    # --- the report -------------------------------------------------------------------------------

    def _verdict(self, context: Context, summary: dict[str, Any], stored: str, timed_out: bool) -> dict[str, Any]:
        out = {**summary, "results_uri": stored, "timed_out": timed_out}
        when = " (timed out with receipts still pending)" if timed_out else ""
        self.log.info("Receipts of %d messages%s:\n%s", summary["tracked"], when, receipts_table(summary))
        failing = timed_out or (
            self.min_delivery_rate is not None
            and (summary["delivery_rate"] is None or summary["delivery_rate"] < self.min_delivery_rate)
        )
        if failing:
            context["ti"].xcom_push(key="summary", value=out)  # what downstream cleanup tasks can read
        if timed_out:
            if self.deferrable:  # in poke mode the base class raises its own timeout
                raise AirflowSensorTimeout(f"{summary['pending']} receipts still pending after {self.timeout:g} s")
            return out
        if failing:
            raise DeliveryRateTooLow(
                f"delivery rate {summary['delivery_rate']} is below min_delivery_rate {self.min_delivery_rate}: "
                f"{summary['delivered']} of {summary['tracked']} delivered; receipts in {stored}"
            )
        return out
