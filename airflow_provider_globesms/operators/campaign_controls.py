"""The campaign controls, as the operator and the notifier read them from the DAG: the opt-out list (a list, or
a text, CSV or JSON Lines file at a path or any ``ObjectStoragePath`` URI, streamed), the prices, quiet hours
(deferring to the triggerer while messages are held) and the budget. The rules and the gates are the client's
(``client/campaign/``); this module opens the files, fails the task with the gates' words and defers."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_globesms._compat import AirflowFailException
from airflow_provider_globesms.client.bulk import ValidationReport
from airflow_provider_globesms.client.campaign import gates, quiet_hours
from airflow_provider_globesms.client.campaign.budget import Budget
from airflow_provider_globesms.client.campaign.gates import unknown_zones_text
from airflow_provider_globesms.client.campaign.quiet_hours import QuietSchedule
from airflow_provider_globesms.client.campaign.suppression import SuppressionList
from airflow_provider_globesms.client.errors import CampaignRefusedError
from airflow_provider_globesms.client.results.report import LineLogger, SendSummary
from airflow_provider_globesms.client.tables import cost_table, invalid_rows_table
from airflow_provider_globesms.operators.recipient_source import open_text
from airflow_provider_globesms.operators.rendering import NO_LIST, ShownMasked


@contextmanager
def _refusals_fail_the_task() -> Iterator[None]:
    try:
        yield
    except CampaignRefusedError as exc:
        raise AirflowFailException(str(exc)) from None


def _location(source: Any) -> str | None:
    return str(source) if isinstance(source, str | os.PathLike | ObjectStoragePath) else None


def given_suppression(suppression: Any) -> bool:
    """Whether the DAG gave a suppression source: anything but leaving the argument out (``NO_LIST``). A
    ``None`` given is a list that came out as nothing (a mapped shard's export that failed, a lookup that found
    nothing) and fails the task as an empty list does, never sends unsuppressed."""
    return suppression is not NO_LIST


@contextmanager
def open_suppression(
    source: Any, default_region: str | None, workdir: str, log: LineLogger, *, may_be_empty: bool = False
) -> Iterator[SuppressionList | None]:
    """The suppression list indexed on disk for this try, or ``None`` without one. Before anything is sent,
    the task fails on a list that cannot be read, one where nothing is a phone number, and (unless
    ``may_be_empty``) an empty one (``gates.check_suppression``). The caller passes ``[]`` for a source that
    was given but rendered to ``None``."""
    source = source.value if isinstance(source, ShownMasked) else source
    if source is None:
        yield None
        return
    with SuppressionList(workdir, default_region) as suppression:
        location = _location(source)
        with _refusals_fail_the_task():
            gates.load_suppression(suppression, source, location, open_text)
            log.info("Suppression list: %d numbers", suppression.entries)
            gates.check_suppression(suppression, location, may_be_empty, log)
        yield suppression


def quiet_schedule(window: Any, on_unknown: str) -> QuietSchedule | None:
    """Quiet hours as of now (``quiet_hours.utc_now``, which tests replace), or ``None`` without them."""
    with _refusals_fail_the_task():
        return gates.quiet_schedule(window, on_unknown, quiet_hours.utc_now)


def budget_for(max_segments: int | None, prices: Any, *, dry_run: bool) -> Budget | None:
    """The budget to count in the validation pass: with a cap or prices, and in every dry run (its table)."""
    with _refusals_fail_the_task():
        return gates.budget_for(max_segments, prices, open_text, dry_run=dry_run)


def check_budget(budget: Budget | None, log: LineLogger, *, dry_run: bool) -> None:
    """Log the cost table; over ``max_segments`` the task fails before the first send (a dry run says so)."""
    with _refusals_fail_the_task():
        gates.check_budget(budget, cost_table, log, dry_run=dry_run)


def refuse_invalid(report: ValidationReport, described: str, on_invalid: str, log: LineLogger) -> None:
    """Stop before sending when no row is valid, or any is and ``on_invalid="fail"``."""
    if report.total and not (report.valid or report.held or report.suppressed) and report.invalid:
        reason, count = report.reasons.most_common(1)[0]
        raise AirflowFailException(
            f"none of the {report.total} recipients is valid; nothing was sent. Most common reason "
            f"({count} rows): {reason}\n{invalid_rows_table(report)}"
        )
    if not report.total:
        log.warning("No recipients in %s: nothing to send.", described)
    if report.invalid and on_invalid == "fail":
        raise AirflowFailException(
            f"{report.invalid} of {report.total} recipients are invalid; nothing was sent "
            f"(on_invalid='fail'; use 'skip' to send the valid ones):\n{invalid_rows_table(report)}"
        )


ROUNDS_KEY = "quiet_hours_rounds"


def rounds_so_far(context: Any) -> list[dict[str, Any]]:
    """What the rounds before this deferral did (an XCom of this task instance: it outlives the deferral,
    whatever the triggerer's event carries)."""
    ti = context["ti"]
    found = ti.xcom_pull(task_ids=ti.task_id, key=ROUNDS_KEY, map_indexes=ti.map_index)
    return list(found) if isinstance(found, list) else []


def defer_while_held(
    operator: BaseOperator, context: Any, summary: SendSummary, rounds: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """After a round of sending: while any message is held for a window that will open, defer
    (``DateTimeTrigger``, in the triggerer) until it does. This comes before any verdict on refused or
    unknown messages: they fail the task in its last round, once the held ones have gone. Returns the
    rounds so far (one small entry per round, for the summary)."""
    if summary.held == 0 and not rounds:
        return []
    now = quiet_hours.utc_now()
    wake = datetime.fromtimestamp(summary.next_opening, timezone.utc) if summary.next_opening else None
    until = wake.isoformat() if wake else None
    done = [*rounds, {"at": now.isoformat(), "sent": summary.sent, "held": summary.held, "until": until}]
    if wake is not None:
        operator.log.info("%d message(s) held by quiet hours; deferring until %s", summary.held, wake.isoformat())
        if summary.failed or summary.unknown:
            operator.log.warning(
                "%d refused and %d unknown so far: the task fails after the last round", summary.failed, summary.unknown
            )
        context["ti"].xcom_push(key=ROUNDS_KEY, value=done)
        operator.defer(trigger=DateTimeTrigger(moment=wake), method_name="resume_after_quiet_hours")
    return done


def refuse_unknown_zones(summary: SendSummary, on_unknown: str) -> None:
    """With ``on_unknown_timezone="hold"``, fail naming what was never sent for want of a time zone."""
    if text := unknown_zones_text(summary, on_unknown):
        raise AirflowFailException(text)
