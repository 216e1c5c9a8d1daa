"""The validation pass: each recipient row becomes a checked, rendered message or a ``RowError`` naming the
row, the masked number, the field and the reason; repeated number-and-text pairs are found on disk."""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from airflow_provider_globesms.client.blocking import GlobeSmsClient
from airflow_provider_globesms.client.campaign.budget import Budget
from airflow_provider_globesms.client.campaign.quiet_hours import QuietSchedule
from airflow_provider_globesms.client.errors import (
    InvalidFieldError,
    RenderError,
)
from airflow_provider_globesms.client.files.sqlite import open_sqlite
from airflow_provider_globesms.client.ledger.sqlite_ledger import (
    message_key,
)
from airflow_provider_globesms.client.rules.phone import mask_number, parse_number, scrub_numbers
from airflow_provider_globesms.client.rules.recipients import Row, UnreadableRow
from airflow_provider_globesms.client.rules.segments import count_segments
from airflow_provider_globesms.client.rules.validation import check_message

MAX_REASONS = 1000  # distinct invalid-row reasons counted (for "the most common reason")


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that cannot be sent: its number in the source, the masked phone number and what is wrong."""

    row: int
    to: str  # masked
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    """A validated message: the API parameters, ready to sign."""

    row: int
    to: str  # the wire form, e.g. 85291234567
    params: dict[str, str]
    key: str
    segments: int
    encoding: str
    # With quiet hours: the recipient's window closes at ``closes_at`` (a UNIX time, less a margin); the
    # sender holds it from then until ``reopens_at`` (``None``: no shared window found; an unknown zone).
    closes_at: float | None = None
    reopens_at: float | None = None
    country: str = ""  # where it is billed, as validation found it (not spilled: only the budget needs it)

    @property
    def text(self) -> str:
        """The rendered message text."""
        return self.params["Message"]


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A valid message whose number is on the suppression list: never sent, reported as ``suppressed``."""

    message: PreparedMessage


@dataclass(frozen=True, slots=True)
class Held:
    """A valid message whose recipient is in quiet hours: it goes when the window opens (``opens_at``); with
    ``unknown_zone`` its time zone is not known and it is held (or skipped) as ``on_unknown_timezone`` says."""

    message: PreparedMessage
    opens_at: datetime | None
    unknown_zone: bool = False


# What validation made of one row: a message to send, or why not (refused, suppressed, in quiet hours).
PreparedRow = PreparedMessage | RowError | Suppressed | Held


def message_of(outcome: PreparedRow) -> PreparedMessage | None:
    """The validated message of an outcome (suppressed and held ones carry one); ``None`` for a row error."""
    if isinstance(outcome, Suppressed | Held):
        return outcome.message
    return outcome if isinstance(outcome, PreparedMessage) else None


@dataclass
class Campaign:
    """One bulk send: the client, how to render a row's text, the options and the ledger scope."""

    client: GlobeSmsClient
    render: Callable[[Mapping[str, Any]], str]
    scope: Sequence[str]  # dag, run, task, map index: part of every message key
    options: dict[str, Any] = field(default_factory=dict)  # sender, sms_type, task_id, validity_period...
    to_field: str = "to"
    _option_params: dict[str, str] | None = field(default=None, init=False, repr=False)

    def check_options(self) -> dict[str, str]:
        """Refuse bad options (sender ID, TaskId...) once, before reading any row; return their API
        parameters (``From``, ``Type``...)."""
        if self._option_params is None:
            probe = self.client.build_send_request("+85291234567", "option check", **self.options)
            self._option_params = {k: v for k, v in probe.to_params().items() if k not in ("To", "Message")}
        return self._option_params

    def prepare(self, row: int, data: Mapping[str, Any] | UnreadableRow) -> PreparedMessage | RowError:
        """Render and validate one source row: the message ready to send, or why the row cannot be sent."""
        if isinstance(data, UnreadableRow):
            return RowError(row, "", "(row)", data.reason)
        raw_to = data.get(self.to_field)
        if raw_to is None or (isinstance(raw_to, str) and not raw_to.strip()):
            return RowError(row, "", self.to_field, "no phone number")
        try:
            text = self.render(data)
        except RenderError as exc:
            return RowError(row, mask_number(raw_to), "message", _storable(str(exc)))
        if _storable(text) != text:
            reason = "holds a character that is no valid Unicode (a lone surrogate: a broken export?)"
            return RowError(row, mask_number(raw_to), "message", reason)
        # The same checks as SendMessageRequest's, without building a model per row; the options
        # were checked once (check_options).
        try:
            number = parse_number(raw_to, self.to_field, default_region=self.client.default_region)
            check_message(text, self.client.max_message_length)
        except InvalidFieldError as exc:
            return RowError(row, mask_number(raw_to), exc.field, _storable(exc.reason))
        count, to = count_segments(text), number.wire
        params = {**self.check_options(), "To": to, "Message": text}
        key = message_key(self.scope, to, text)
        return PreparedMessage(row, to, params, key, count.segments, count.encoding, country=number.country)


def _storable(text: str) -> str:
    """``text`` with what UTF-8 cannot hold (lone surrogates, from a broken JSON export) shown as "?": a
    row's error is written to the spill and the results file, and must never fail the campaign."""
    return text if text.isascii() else text.encode("utf-8", "replace").decode()


@dataclass
class ValidationReport:
    """Counts of the validation pass, with the first errors and the most common reasons (memory stays flat)."""

    total: int = 0
    valid: int = 0  # to be sent (neither invalid nor suppressed)
    invalid: int = 0
    suppressed: int = 0
    held: int = 0  # in quiet hours now: sent when their window opens
    held_unknown_zone: int = 0
    opens: Counter[datetime] = field(default_factory=Counter)  # when held messages may go (to the minute)
    segments: int = 0
    encodings: Counter[str] = field(default_factory=Counter)
    invalid_by_field: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)  # up to MAX_REASONS distinct ones: memory stays flat
    errors: list[RowError] = field(default_factory=list)  # the first ones only: memory stays flat
    max_errors: int = 50

    def add(self, outcome: PreparedRow) -> None:
        """Count one row's outcome."""
        self.total += 1
        if isinstance(outcome, Suppressed):
            self.suppressed += 1
        elif isinstance(outcome, Held):
            self.held += 1
            minute = outcome.opens_at.replace(second=0, microsecond=0) if outcome.opens_at else None
            if minute is None:
                self.held_unknown_zone += 1
            elif minute in self.opens or len(self.opens) < MAX_REASONS:
                self.opens[minute] += 1
        elif isinstance(outcome, RowError):
            self.invalid += 1
            self.invalid_by_field[outcome.field] += 1
            reason = f"{outcome.field}: {outcome.reason}"
            if reason in self.reasons or len(self.reasons) < MAX_REASONS:
                self.reasons[reason] += 1
            if len(self.errors) < self.max_errors:
                self.errors.append(outcome)
        else:
            self.valid += 1
            self.segments += outcome.segments
            self.encodings[outcome.encoding] += 1


class Deduplicator:
    """Remembers every message key of a run on disk, to report a repeated number-and-text pair. Keys are
    looked up and written a batch at a time (one query per batch, not two per row)."""

    def __init__(self, directory: str | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="globesms-dedup-", dir=directory)
        self._db = open_sqlite(
            f"{self._dir.name}/keys.sqlite3",
            journal="OFF",  # scratch: thrown away with the task
            threads=False,
            schema="CREATE TABLE keys (key BLOB PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID",
        )

    def first_rows(self, batch: Sequence[tuple[str, int]]) -> list[int | None]:
        """For each ``(key, row)`` in order: ``None`` the first time its key is seen (in this run, earlier
        in the batch included), else the row that had it first."""
        # 16 bytes per key, whatever its form: a collision is as likely as guessing a random 128-bit value.
        digests = [hashlib.blake2b(key.encode(), digest_size=16).digest() for key, _ in batch]
        first: dict[bytes, int] = {}
        unique = list(dict.fromkeys(digests))
        for at in range(0, len(unique), _LOOKUP):
            part = unique[at : at + _LOOKUP]
            marks = ",".join("?" * len(part))
            first.update(self._db.execute(f"SELECT key, row FROM keys WHERE key IN ({marks})", part))  # noqa: S608
        found: list[int | None] = []
        new: list[tuple[bytes, int]] = []
        for digest, (_, row) in zip(digests, batch, strict=True):
            earlier = first.get(digest)
            if earlier is None:
                first[digest] = row
                new.append((digest, row))
            found.append(earlier)
        self._db.execute("BEGIN")  # one transaction per batch (the connection is in autocommit mode)
        self._db.executemany("INSERT INTO keys VALUES (?, ?)", new)
        self._db.execute("COMMIT")
        return found

    def first_row(self, key: str, row: int) -> int | None:
        """``None`` the first time ``key`` is seen, else the row that had it first (one key at a time)."""
        return self.first_rows([(key, row)])[0]

    def close(self) -> None:
        """Close the database and delete its directory."""
        self._db.close()
        self._dir.cleanup()


_LOOKUP = 500  # keys per look-up query (SQLite's oldest limit on parameters is 999)
BATCH = 1000  # rows validated together: one dedupe query and one write each; memory stays flat


def validate(
    campaign: Campaign,
    rows: Iterable[Row],
    *,
    max_errors: int = 50,
    on_row: Callable[[PreparedRow], None] | None = None,
    workdir: str | None = None,
    suppression: Container[str] | None = None,
    budget: Budget | None = None,
    quiet: QuietSchedule | None = None,
    tz_field: str | None = None,
) -> ValidationReport:
    """Check and render every row, and find repeated number-and-text pairs, without sending anything.
    Numbers on ``suppression`` become ``Suppressed``; what is left to send is counted in ``budget``; a
    recipient in ``quiet`` hours is ``Held`` (its zone from the number, or from the row's ``tz_field``).
    ``on_row`` sees every outcome in the rows' order."""
    report = ValidationReport(max_errors=max_errors)
    seen = Deduplicator(workdir)
    pending: list[tuple[Any, PreparedRow]] = []  # (row data, outcome), prepared and not yet settled

    def settle() -> None:
        nonlocal pending
        batch, pending = pending, []
        outcomes = _controlled(campaign, [outcome for _, outcome in batch], seen, suppression)
        for (data, _), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, PreparedMessage) and quiet is not None:
                outcome = _in_quiet_hours(outcome, quiet, _field(data, tz_field))
            going = _to_be_sent(outcome)
            if budget is not None and going is not None:
                budget.add(going.to, going.segments, going.country)
            report.add(outcome)
            if on_row is not None:
                on_row(outcome)

    try:
        for number, data in rows:
            pending.append((data, campaign.prepare(number, data)))
            if len(pending) >= BATCH:
                settle()
        settle()
    except BaseException:
        settle()  # the rows read before a failure (of the source, or of a row) are reported as one by one
        raise
    finally:
        seen.close()
    return report


def _field(data: object, name: str | None) -> str | None:
    """A row's optional text field; blank counts as absent (an empty ``tz`` cell: the number's zones)."""
    value = data.get(name) if name and isinstance(data, Mapping) else None
    return (str(value).strip() or None) if value is not None else None


def _in_quiet_hours(message: PreparedMessage, quiet: QuietSchedule, named_zone: str | None) -> PreparedRow:
    try:
        timing = quiet.timing(message.to, named_zone)
    except ValueError as exc:
        return RowError(message.row, mask_number(message.to), "tz", _storable(scrub_numbers(str(exc))))
    if timing.opens_at is not None or timing.unknown:
        return Held(message, timing.opens_at, timing.unknown)
    if timing.closes_at is None:
        return message
    reopens = timing.reopens_at.timestamp() if timing.reopens_at else None
    return replace(message, closes_at=timing.closes_at.timestamp(), reopens_at=reopens)


def _to_be_sent(outcome: PreparedRow) -> PreparedMessage | None:
    """The message that will be sent, now or when its window opens (not one suppressed, invalid, or held
    for want of a time zone)."""
    if isinstance(outcome, Held):
        return outcome.message if outcome.opens_at is not None else None
    return outcome if isinstance(outcome, PreparedMessage) else None


def _controlled(
    campaign: Campaign, outcomes: list[PreparedRow], seen: Deduplicator, suppression: Container[str] | None
) -> list[PreparedRow]:
    """A suppressed number is never sent (checked first: a repeated suppressed row is no error); a repeated
    number-and-text pair is an error."""
    for at, outcome in enumerate(outcomes):
        if isinstance(outcome, PreparedMessage) and suppression is not None and outcome.to in suppression:
            outcomes[at] = Suppressed(outcome)
    fresh = [(at, o) for at, o in enumerate(outcomes) if isinstance(o, PreparedMessage)]
    firsts = seen.first_rows([(message.key, message.row) for _, message in fresh]) if fresh else []
    for (at, message), first in zip(fresh, firsts, strict=True):
        if first is not None:
            reason = f"same number and text as row {first}"
            outcomes[at] = RowError(message.row, mask_number(message.to), campaign.to_field, reason)
    return outcomes
