"""Sends in doubt confirmed by pushed delivery receipts.

A message whose answer was lost and whose replay was refused as already seen is ``arrived``: the API has
it, but whether it accepted it is unknown, and without a MessageId no QueryMessage can tell. Alibaba pushes
a delivery receipt for every message it accepted, echoing the send's ``TaskId`` (the campaign id) and the
number (``To``, digits without ``+``). So a receipt confirms a message in doubt when all of these hold:

- its ``TaskId`` is the campaign's;
- its ``To`` is the message's number (read from the signed request the ledger kept);
- its ``SendDate`` is not before the request was signed (less ``SEND_DATE_SLACK``): a campaign id may be
  reused by a later run, whose numbers are the same, and an earlier run's receipt must not confirm it;
- no other receipt that passes the same checks names another MessageId (that would be ambiguous: it is
  reported, never confirmed). A receipt pushed twice names the same MessageId and counts once.

Any receipt status confirms acceptance: a failed or expired delivery was still accepted (and billed). What
stays unconfirmed is a message whose push was lost for good, or a request that was throttled in flight
while its worker died (its nonce was consumed, so its replay was refused as seen; it never went out).

``arrived``, ``unknown`` and ``pending`` entries that kept their signed request are looked at (a pending
one is an earlier try's, killed in flight: the caller holds the ledger's lease). A confirmed entry becomes
``accepted`` with the receipt's MessageId and segments, and its request is dropped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from airflow_provider_globesms.client.ledger.sqlite_ledger import LedgerEntry, SqliteLedger, Status
from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.receipts.pushed import PushedReceipt
from airflow_provider_globesms.client.rules.phone import mask_number

# SendDate has whole seconds, and so has the signing time read back from the request (x-acs-date,
# Timestamp): both are cut to the second, so an acceptance in the second of signing reads equal. Two
# seconds more cover a gateway that rounds instead of cutting and a sub-second difference between the
# worker's clock and Alibaba's. A worker clock further ahead only leaves a message in doubt (never wrong).
SEND_DATE_SLACK = 2.0

# Entries a receipt may settle: every unsettled one that kept its signed request.
CONFIRMABLE = frozenset({Status.ARRIVED, Status.UNKNOWN, Status.PENDING})


class WriteGuard(Protocol):
    """The bulk sender's guard (``SendGuard``): the ledger's lease checked around a durable write."""

    def before_write(self) -> None:
        """Before a write: may raise if the lease is lost."""

    def after_write(self) -> None:
        """After a write: may raise if the lease is lost."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """A message in doubt that a receipt could confirm: its ledger entry, its number's digits, when signed."""

    entry: LedgerEntry
    digits: str
    signed_at: float


@dataclass
class Confirmation:
    """What one look at the store did: how many confirmed, still in doubt (with their numbers' digits and
    signing times, to wait for; the ambiguous ones among them, by row), and how many objects and receipts
    were read."""

    confirmed: int = 0
    in_doubt: int = 0
    objects: int = 0
    receipts: int = 0
    last_object: str = ""  # the newest object name read: a wait for receipts looks only past it
    waiting: list[Waiting] = field(default_factory=list)
    ambiguous_rows: list[int] = field(default_factory=list)

    @property
    def ambiguous(self) -> int:
        """Messages that receipts naming different MessageIds match: reported, never confirmed."""
        return len(self.ambiguous_rows)

    @property
    def earliest(self) -> float | None:
        """When the earliest message still in doubt was signed (epoch seconds), or ``None``."""
        return min((w.signed_at for w in self.waiting), default=None)

    @property
    def latest(self) -> float | None:
        """When the latest message still in doubt was signed (epoch seconds), or ``None``."""
        return max((w.signed_at for w in self.waiting), default=None)


def digits(number: str | None) -> str:
    """A number as receipts write it: digits only (``+85291234567`` -> ``85291234567``)."""
    return "".join(c for c in number or "" if c.isdigit())


def waiting_for_receipts(entries: Iterable[LedgerEntry]) -> list[Waiting]:
    """The entries a receipt could confirm: unsettled, with a signed request giving the number and time."""
    found = []
    for entry in entries:
        request = entry.request
        if entry.status not in CONFIRMABLE or request is None:
            continue
        number, signed_at = digits(request.param("To")), request.signed_at()
        if number and signed_at is not None:
            found.append(Waiting(entry, number, float(signed_at)))
    return found


def matches(receipt: PushedReceipt, campaign_id: str, signed_at: float) -> bool:
    """Whether ``receipt`` may confirm a message of ``campaign_id`` signed at ``signed_at`` (same number
    assumed): the campaign's TaskId, and a readable SendDate not before the signing (less the slack)."""
    return (
        receipt.task_id == campaign_id
        and receipt.send_ts is not None
        and receipt.send_ts >= signed_at - SEND_DATE_SLACK
    )


def match_receipts(
    waiting: Sequence[Waiting], receipts: Iterable[PushedReceipt], campaign_id: str
) -> dict[str, dict[str, PushedReceipt]]:
    """Number digits -> MessageId -> a receipt, for the numbers in ``waiting`` only (the rest is never kept:
    a campaign's store may hold a million receipts)."""
    by_number: dict[str, Waiting] = {}
    for wait in waiting:  # a number twice in doubt: the earlier signing (neither is confirmed)
        if wait.digits not in by_number or wait.signed_at < by_number[wait.digits].signed_at:
            by_number[wait.digits] = wait
    found: dict[str, dict[str, PushedReceipt]] = defaultdict(dict)
    for receipt in receipts:
        candidate = by_number.get(receipt.to)
        if candidate is not None and matches(receipt, campaign_id, candidate.signed_at):
            kept = found[receipt.to].get(receipt.message_id)
            if kept is None or (receipt.segments and not kept.segments):
                found[receipt.to][receipt.message_id] = receipt
    return found


def confirm_in_doubt(
    ledger: SqliteLedger,
    store: PushStore,
    campaign_id: str,
    *,
    guard: WriteGuard | None = None,
) -> Confirmation:
    """Confirm the campaign's messages in doubt by the receipts in ``store``; write the confirmed ones to
    ``ledger`` (``accepted``, the receipt's MessageId and segments, the request dropped) in one durable
    batch. Reads the campaign's receipts once. The caller holds the ledger's lease (``guard`` checks it)."""
    waiting = waiting_for_receipts(ledger.unsettled())
    result = Confirmation()
    if not waiting:
        return result
    # Two messages in doubt to one number (one task instance never has two; a text changed between tries
    # could): a receipt cannot say which it confirms, so neither is confirmed.
    shared = {number for number, n in _counts(w.digits for w in waiting).items() if n > 1}
    found = match_receipts(waiting, _read(store, campaign_id, result), campaign_id)
    if found:
        _drop_other_messages(ledger, waiting, found, shared)
    confirmed: list[LedgerEntry] = []
    now = time.time()
    for wait in waiting:
        ids = found.get(wait.digits, {})
        if len(ids) == 1 and wait.digits not in shared:
            ((message_id, receipt),) = ids.items()
            entry = wait.entry
            segments = receipt.segments or entry.segments
            confirmed.append(
                LedgerEntry(entry.key, Status.ACCEPTED, entry.row, entry.to, message_id, segments, updated_at=now)
            )
            continue
        if ids:  # several MessageIds (or one for two messages): which is this message's is unknown
            result.ambiguous_rows.append(wait.entry.row)
        result.waiting.append(wait)
    if confirmed:
        if guard is not None:
            guard.before_write()
        ledger.write_many(confirmed)
        if guard is not None:
            guard.after_write()
    result.confirmed = len(confirmed)
    result.in_doubt = len(result.waiting)
    return result


def _drop_other_messages(
    ledger: SqliteLedger, waiting: Sequence[Waiting], found: dict[str, dict[str, PushedReceipt]], shared: set[str]
) -> None:
    """Keep only receipts that can be the waiting messages' own. A task instance may text one number twice
    (two texts): a receipt whose MessageId another message of the ledger already holds is that message's,
    and a number with another message in doubt that cannot be looked at (no request kept) is shared."""
    waiting_keys = {w.entry.key for w in waiting}
    masked = {mask_number("+" + number): number for number in found}
    for entry in ledger.entries():
        if entry.message_id:
            for ids in found.values():
                ids.pop(entry.message_id, None)
        elif entry.key not in waiting_keys and entry.status in CONFIRMABLE and entry.to in masked:
            shared.add(masked[entry.to])  # masked in the ledger: a match of the mask is enough to hold back


def _counts(values: Iterable[str]) -> dict[str, int]:
    counted: dict[str, int] = defaultdict(int)
    for value in values:
        counted[value] += 1
    return counted


def _read(store: PushStore, campaign_id: str, counts: Confirmation) -> Iterator[PushedReceipt]:
    """Every receipt of the campaign, one stored object at a time (counted in ``counts``)."""
    for name, batch in store.receipts(campaign_id):
        counts.objects += 1
        counts.receipts += len(batch)
        counts.last_object = max(counts.last_object, name)
        yield from batch
