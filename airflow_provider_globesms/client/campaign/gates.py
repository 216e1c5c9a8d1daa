"""The gates a campaign passes before its first send: the opt-out list read and judged, the prices read, the
quiet-hours window parsed, the budget counted and checked. Each refusal is a ``CampaignRefusedError`` naming
what to change; the Airflow operator and notifier are thin adapters over these (they open files through
``ObjectStoragePath`` and fail the task with the same words)."""

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import IO, Any

from airflow_provider_globesms.client.campaign.budget import Budget, check_max_segments, prices_from
from airflow_provider_globesms.client.campaign.quiet_hours import QuietHours, QuietSchedule
from airflow_provider_globesms.client.campaign.suppression import SuppressionList
from airflow_provider_globesms.client.campaign.suppression_sources import (
    suppression_entries,
    suppression_from_values,
)
from airflow_provider_globesms.client.errors import CampaignRefusedError, ConfigurationError
from airflow_provider_globesms.client.results.report import LineLogger, SendSummary
from airflow_provider_globesms.client.rules.recipients import MAX_SHOWN
from airflow_provider_globesms.client.wire.endpoint import require_positive

# Opens a path or URI as text (the operator's: local paths and any ObjectStoragePath, gzip read through).
TextOpener = Callable[[str], AbstractContextManager[IO[str]]]
RENDERED_TO_NOTHING = ("", "None", "null", "[]", "()")  # what a template renders for a missing or empty XCom
# What reading an opt-out list or a price file may raise: each is the source's fault, said with its reason.
UNREADABLE_PRICES = (ConfigurationError, OSError, EOFError, UnicodeError, ValueError, ImportError, zlib.error)
UNREADABLE_LIST = (*UNREADABLE_PRICES, csv.Error)


def checked_limits(max_segments: object, prices: object, max_qps: float | None) -> tuple[int | None, float | None]:
    """``max_segments`` and ``max_qps`` checked when the DAG is parsed, and prices given as numbers (text may be
    a template, checked when rendered): ``ConfigurationError`` naming the argument (nan, inf, a negative, a
    string...), which would otherwise disable a cap."""
    if isinstance(prices, Mapping):
        prices_from({k: v for k, v in prices.items() if not isinstance(v, str)})
    return check_max_segments(max_segments), require_positive("max_qps", max_qps) if max_qps is not None else None


def load_suppression(suppression: SuppressionList, source: object, location: str | None, open_text: TextOpener) -> None:
    """Index ``source`` into ``suppression``: the file at ``location`` when one is given, else the values (a
    number, or a list of numbers and records). A file that cannot be read refuses the campaign."""
    if isinstance(source, str) and source.strip() in RENDERED_TO_NOTHING:
        return  # nothing to read: ``check_suppression`` decides whether an empty list may be sent past
    if location is None:
        suppression.load(suppression_from_values([source] if isinstance(source, str | int) else source))  # type: ignore[arg-type]
        return
    try:
        with open_text(location) as handle:
            suppression.load(suppression_entries(handle, location))
    except UNREADABLE_LIST as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:MAX_SHOWN]}"
        raise CampaignRefusedError(f"suppression {location[:MAX_SHOWN]}: cannot be read ({reason})") from None


def check_suppression(suppression: SuppressionList, location: str | None, may_be_empty: bool, log: LineLogger) -> None:
    """Refuse a list where nothing is a phone number, and (unless ``may_be_empty``) an empty one: a failed
    export (0 bytes, a header only) or a template or XCom that rendered to nothing protects nobody."""
    lines = ", ".join(map(str, suppression.first_unreadable))
    if suppression.unreadable and not suppression.entries:
        raise CampaignRefusedError(
            f"suppression: none of its {suppression.unreadable} entries is a phone number (first at lines "
            f"{lines}): a list that matches nobody protects nobody"
        )
    if not suppression.entries and not may_be_empty:
        where = f"{location[:MAX_SHOWN]!r}" if location is not None else "(the list given)"
        raise CampaignRefusedError(
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


def read_prices(source: Mapping[str, Any] | str | None, open_text: TextOpener) -> dict[str, float]:
    """Price per segment by country, from a mapping or a CSV at a path or URI; a bad one refuses the campaign."""
    try:
        if source is None or isinstance(source, Mapping):
            return prices_from(source)
        with open_text(str(source)) as handle:
            return prices_from(handle)
    except UNREADABLE_PRICES as exc:
        raise CampaignRefusedError(f"prices: {exc}") from None


def quiet_schedule(window: Any, on_unknown: str, now: Callable[[], datetime]) -> QuietSchedule | None:
    """Quiet hours as of ``now()`` (read once the window is known good), or ``None`` without them; a bad window
    or choice refuses the campaign."""
    if not window:
        return None
    if on_unknown not in ("hold", "send", "skip"):
        raise CampaignRefusedError(f"on_unknown_timezone must be 'hold', 'send' or 'skip', not {on_unknown!r}")
    try:
        hours = QuietHours.parse(window)
    except ConfigurationError as exc:
        raise CampaignRefusedError(str(exc)) from None
    return QuietSchedule(hours, now(), on_unknown)


def budget_for(max_segments: int | None, prices: Any, open_text: TextOpener, *, dry_run: bool) -> Budget | None:
    """The budget to count in the validation pass: with a cap or prices, and in every dry run (its table)."""
    if max_segments is None and prices is None and not dry_run:
        return None
    return Budget(max_segments=max_segments, prices=read_prices(prices, open_text))


def check_budget(budget: Budget | None, table: Callable[[Budget], str], log: LineLogger, *, dry_run: bool) -> None:
    """Log the cost table; over ``max_segments`` the campaign is refused before the first send (a dry run says
    so). ``table`` draws the cost table (``client.tables.cost_table``)."""
    if budget is None:
        return
    try:
        shown = table(budget)
    except ConfigurationError as exc:  # a total too large to count
        raise CampaignRefusedError(f"{exc}; nothing was sent") from None
    log.info("Segments and estimated cost by country:\n%s", shown)
    over = budget.over()
    if over and dry_run:
        log.warning("Over budget: %s; a real run would send nothing", over)
    elif over:
        raise CampaignRefusedError(f"{over}; nothing was sent\n{shown}")


def unknown_zones_text(summary: SendSummary, on_unknown: str) -> str:
    """With ``on_unknown_timezone="hold"``, what was never sent for want of a time zone (else "")."""
    if not (summary.held_unknown_zone and on_unknown == "hold"):
        return ""
    return (
        f"{summary.held_unknown_zone} message(s) not sent: the recipient's time zone is unknown, so quiet hours "
        "cannot be kept. Give the rows a time zone (tz_field), or set on_unknown_timezone to 'send' or 'skip'"
    )
