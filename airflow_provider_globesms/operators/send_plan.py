"""The plan of a send, decided before the first row is read: the campaign (client, renderer, options), where
the rows come from, where the ledger and results go, the concurrency, and the controls (budget, quiet hours)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_globesms.client.bulk import Budget, Campaign
from airflow_provider_globesms.client.campaign.quiet_hours import QuietSchedule
from airflow_provider_globesms.client.rules.recipients import Row
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.operators.campaign_controls import budget_for, quiet_schedule
from airflow_provider_globesms.operators.ledger_place import ledger_location
from airflow_provider_globesms.operators.recipient_source import open_rows
from airflow_provider_globesms.storage import default_campaign_id, task_instance_location, task_instance_scope

if TYPE_CHECKING:
    from airflow.sdk import Context

MAX_CONCURRENCY = 512
# Sends in flight needed to hold the cap: rate x latency. 0.3 s covers Alibaba's 100-300 ms.
LATENCY_BUDGET = 0.3


class SendTask(Protocol):
    """What a plan reads of the operator (``SendGlobeSmsOperator``), which imports this module."""

    campaign_id: str | None
    to: Any
    recipients: Any
    to_field: str
    sender: str | None
    sms_type: str | None
    validity_period: Any
    channel_id: str | None
    ledger_uri: str | None
    results_uri: str | None
    concurrency: int | None
    max_segments: int | None
    prices: Any
    quiet_hours: Any

    @property
    def on_unknown_timezone(self) -> str:
        """``hold``, ``send`` or ``skip``."""

    @property
    def hook(self) -> GlobeSmsHook:
        """The task's hook."""

    @property
    def log(self) -> Any:
        """The task's logger."""

    @property
    def is_dry_run(self) -> bool:
        """Whether this run validates only."""


@dataclass(frozen=True)
class SendPlan:
    """What ``execute`` decided before reading the first row."""

    campaign_id: str
    campaign: Campaign
    rows: Iterator[Row]
    described: str
    ledger_dir: str
    results_location: str
    concurrency: int
    budget: Budget | None  # segments and cost by country, when a cap or prices are given (or a dry run)
    quiet: QuietSchedule | None  # quiet hours as of this execution's start


def make_plan(op: SendTask, context: Context, render: Callable[[Mapping[str, Any]], str]) -> SendPlan:
    """Everything decided before the first row is read; a bad sender ID fails here, once."""
    ti = context["ti"]
    scope = task_instance_scope(ti)
    dag_id, run_id, task_id, map_index = scope
    campaign_id = op.campaign_id or default_campaign_id(dag_id, run_id, task_id, int(map_index))
    client = op.hook.client
    rows, to_field, described = open_rows(op.to, op.recipients, op.to_field)
    options = {
        "sender": op.sender,
        "sms_type": op.sms_type,
        "task_id": campaign_id,
        "validity_period": op.validity_period,
        "channel_id": op.channel_id,
    }
    campaign = Campaign(client, render, scope, {k: v for k, v in options.items() if v is not None}, to_field)
    campaign.check_options()
    ledger_dir = ledger_location(context, op.ledger_uri, campaign_id)
    if ledger_dir != task_instance_location(ti, op.ledger_uri):
        op.log.info("Using the ledger an earlier try left at %s", ledger_dir)
    max_qps = client.max_qps  # this task's max_qps, else the connection's, else the account cap
    dry = " (dry run: nothing will be sent)" if op.is_dry_run else ""
    op.log.info("Campaign %s: validating %s at up to %g sends/s%s", campaign_id, described, max_qps, dry)
    return SendPlan(
        campaign_id=campaign_id,
        campaign=campaign,
        rows=rows,
        described=described,
        ledger_dir=ledger_dir,
        results_location=op.results_uri or f"{ledger_dir}/results.jsonl",
        concurrency=op.concurrency or max(1, min(MAX_CONCURRENCY, math.ceil(max_qps * LATENCY_BUDGET))),
        budget=budget_for(op.max_segments, op.prices, dry_run=op.is_dry_run),
        quiet=quiet_schedule(op.quiet_hours, op.on_unknown_timezone),
    )
