"""The gates before the first send: invalid rows, the budget, the suppression list. The operator's controls
are read from where the DAG says: the suppression list (a list, or a text,
CSV or JSON Lines file at a path or any ``ObjectStoragePath`` URI, streamed) and the prices (a mapping or a
CSV ``country,price``). The rules themselves are in ``client/bulk/controls.py``."""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_globesms._compat import AirflowFailException
from airflow_provider_globesms.client import quiet_hours
from airflow_provider_globesms.client.bulk import ValidationReport
from airflow_provider_globesms.client.bulk.controls import (
    Budget,
    SuppressionList,
    check_max_segments,
    prices_from,
    suppression_entries,
    suppression_from_values,
)
from airflow_provider_globesms.client.errors import ConfigurationError
from airflow_provider_globesms.client.quiet_hours import QuietHours, QuietSchedule
from airflow_provider_globesms.client.recipients import MAX_SHOWN
from airflow_provider_globesms.client.report import LineLogger, SendSummary
from airflow_provider_globesms.client.tables import cost_table, invalid_rows_table
from airflow_provider_globesms.client.transport import require_positive
from airflow_provider_globesms.operators.recipient_source import open_text
from airflow_provider_globesms.operators.rendering import NO_LIST, ShownMasked


def _is_location(source: Any) -> bool:
    return isinstance(source, str | os.PathLike | ObjectStoragePath)


def checked_limits(max_segments: object, prices: object, max_qps: float | None) -> tuple[int | None, float | None]:
    """``max_segments`` and ``max_qps`` checked when the DAG is parsed, and prices given as numbers (text may be
    a template, checked when rendered): ``ConfigurationError`` naming the argument (nan, inf, a negative, a
    string...), which would otherwise disable a cap."""
    if isinstance(prices, Mapping):
        prices_from({k: v for k, v in prices.items() if not isinstance(v, str)})
    return check_max_segments(max_segments), require_positive("max_qps", max_qps) if max_qps is not None else None


def given_suppression(suppression: Any) -> bool:
    """Whether the DAG gave a suppression source: anything but leaving the argument out (``NO_LIST``). A
    ``None`` given is a list that came out as nothing (a mapped shard's export that failed, a lookup that found
    nothing) and fails the task as an empty list does, never sends unsuppressed."""
    return suppression is not NO_LIST


RENDERED_TO_NOTHING = ("", "None", "null", "[]", "()")  # what a template renders for a missing or empty XCom


@contextmanager
def open_suppression(
    source: Any, default_region: str | None, workdir: str, log: LineLogger, *, may_be_empty: bool = False
) -> Iterator[SuppressionList | None]:
    """The suppression list indexed on disk for this try, or ``None`` without one. Before anything is sent,
    the task fails on a list that cannot be read, one where nothing is a phone number, and (unless
    ``may_be_empty``) an empty one: a failed export (0 bytes, a header only) or a template or XCom that
    rendered to nothing protects nobody. The caller passes ``[]`` for a source that was given but rendered
    to ``None``."""
    source = source.value if isinstance(source, ShownMasked) else source
    if source is None:
        yield None
        return
    with SuppressionList(workdir, default_region) as suppression:
        if isinstance(source, str) and source.strip() in RENDERED_TO_NOTHING:
            pass  # nothing to read: the emptiness check below decides
        elif _is_location(source):
            _load_file(suppression, str(source))
        else:
            suppression.load(suppression_from_values([source] if isinstance(source, str | int) else source))
        log.info("Suppression list: %d numbers", suppression.entries)
        _check_loaded(suppression, source, may_be_empty, log)
        yield suppression


def _check_loaded(suppression: SuppressionList, source: Any, may_be_empty: bool, log: LineLogger) -> None:
    lines = ", ".join(map(str, suppression.first_unreadable))
    if suppression.unreadable and not suppression.entries:
        raise AirflowFailException(
            f"suppression: none of its {suppression.unreadable} entries is a phone number (first at lines "
            f"{lines}): a list that matches nobody protects nobody"
        )
    if not suppression.entries and not may_be_empty:
        where = f"{str(source)[:MAX_SHOWN]!r}" if _is_location(source) else "(the list given)"
        raise AirflowFailException(
            f"suppression {where} is empty (no entries, or only a header): a failed export or an XCom that "
            "rendered to nothing protects nobody, so nothing was sent. If the list may be empty (a new opt-out "
            "list on its first day), set allow_empty_suppression=True"
        )
    if not suppression.entries:
        log.warning("Suppression list is empty (allowed by allow_empty_suppression): it suppresses nobody")
    if suppression.unreadable:
        log.warning(
            "Suppression list: %d entries are not phone numbers and match nobody (first at lines %s)",
            suppression.unreadable,
            lines,
        )


def _load_file(suppression: SuppressionList, location: str) -> None:
    try:
        with open_text(location) as handle:
            suppression.load(suppression_entries(handle, location))
    except (OSError, EOFError, UnicodeError, ValueError, ImportError, zlib.error, csv.Error, ConfigurationError) as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:MAX_SHOWN]}"
        raise AirflowFailException(f"suppression {location[:MAX_SHOWN]}: cannot be read ({reason})") from None


def read_prices(source: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, float]:
    """Price per segment by country, from a mapping or a CSV at a path or URI; a bad one fails the task."""
    try:
        if source is None or isinstance(source, Mapping):
            return prices_from(source)
        with open_text(str(source)) as handle:
            return prices_from(handle)
    except (ConfigurationError, OSError, EOFError, UnicodeError, ValueError, ImportError, zlib.error) as exc:
        raise AirflowFailException(f"prices: {exc}") from None


def quiet_schedule(window: Any, on_unknown: str) -> QuietSchedule | None:
    """Quiet hours as of now (``quiet_hours.utc_now``, which tests replace), or ``None`` without them."""
    if not window:
        return None
    if on_unknown not in ("hold", "send", "skip"):
        raise AirflowFailException(f"on_unknown_timezone must be 'hold', 'send' or 'skip', not {on_unknown!r}")
    try:
        hours = QuietHours.parse(window)
    except ConfigurationError as exc:
        raise AirflowFailException(str(exc)) from None
    return QuietSchedule(hours, quiet_hours.utc_now(), on_unknown)


def budget_for(max_segments: int | None, prices: Any, *, dry_run: bool) -> Budget | None:
    """The budget to count in the validation pass: with a cap or prices, and in every dry run (its table)."""
    if max_segments is None and prices is None and not dry_run:
        return None
    return Budget(max_segments=max_segments, prices=read_prices(prices))


def check_budget(budget: Budget | None, log: LineLogger, *, dry_run: bool) -> None:
    """Log the cost table; over ``max_segments`` the task fails before the first send (a dry run says so)."""
    if budget is None:
        return
    try:
        table = cost_table(budget)
    except ConfigurationError as exc:  # a total too large to count
        raise AirflowFailException(f"{exc}; nothing was sent") from None
    log.info("Segments and estimated cost by country:\n%s", table)
    over = budget.over()
    if over and dry_run:
        log.warning("Over budget: %s; a real run would send nothing", over)
    elif over:
        raise AirflowFailException(f"{over}; nothing was sent\n{table}")


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


def unknown_zones_text(summary: SendSummary, on_unknown: str) -> str:
    """With ``on_unknown_timezone="hold"``, what was never sent for want of a time zone (else "")."""
    if not (summary.held_unknown_zone and on_unknown == "hold"):
        return ""
    return (
        f"{summary.held_unknown_zone} message(s) not sent: the recipient's time zone is unknown, so quiet hours "
        "cannot be kept. Give the rows a time zone (tz_field), or set on_unknown_timezone to 'send' or 'skip'"
    )


def refuse_unknown_zones(summary: SendSummary, on_unknown: str) -> None:
    """With ``on_unknown_timezone="hold"``, fail naming what was never sent for want of a time zone."""
    if text := unknown_zones_text(summary, on_unknown):
        raise AirflowFailException(text)
