"""SendGlobeSmsOperator's sends in doubt confirmed by pushed delivery receipts (``receipts_by_push``).

At the start of every try, under the ledger's lease and before anything is sent, the messages in doubt are
matched against the campaign's pushed receipts (``client.receipts.confirm``): each confirmed one becomes
``accepted`` with its MessageId, and the sender reports it so. After sending, while messages are still only
known to have arrived, the task defers to ``ArrivedReceiptsTrigger`` until their receipts are in the store or
until ``confirm_within`` seconds after their sending; it then resumes, and the next start-of-try confirmation
settles them. The deadline is carried through the deferral and bounded by the ledger's own signing times,
so the task never waits for ever; past it, the verdict is as without push, saying no receipt came.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_globesms.client.ledger.sqlite_ledger import SqliteLedger
from airflow_provider_globesms.client.receipts.confirm import Confirmation, Waiting, confirm_in_doubt
from airflow_provider_globesms.client.receipts.confirm import waiting_for_receipts as _waiting
from airflow_provider_globesms.client.results.report import LineLogger, SendSummary
from airflow_provider_globesms.client.rules.phone import mask_number
from airflow_provider_globesms.storage import push_grace, push_location, push_store, receipts_by_push
from airflow_provider_globesms.triggers.arrived_receipts import (
    ArrivedReceiptsTrigger,
    number_digest,
    receipts_digest_key,
)

POLL_EVERY = 5.0  # seconds between the trigger's looks at the store


@dataclass
class ReceiptsCheck:
    """One try's use of pushed receipts: what the start-of-try confirmation did, and what still waits."""

    campaign_id: str
    confirm_within: float
    deadline: float | None = None  # carried through the deferrals (epoch seconds)
    confirmed: Confirmation = field(default_factory=Confirmation)
    waiting: list[Waiting] = field(default_factory=list)

    def at_start(self, ledger: SqliteLedger, guard: Any, log: LineLogger) -> None:
        """Confirm what the ledger has in doubt by the receipts in the store (before anything is sent)."""
        try:
            self.confirmed = confirm_in_doubt(ledger, push_store(), self.campaign_id, guard=guard)
        except OSError as exc:  # the store unreachable: what is in doubt stays so; sending goes on
            log.warning("Pushed receipts could not be read (%s); messages in doubt stay in doubt", exc)
            return
        found = self.confirmed
        if found.confirmed or found.waiting:
            log.info(
                "Receipts by push: %d message(s) in doubt confirmed by their delivery receipts (accepted, with "
                "their MessageIds); %d still in doubt (%d receipts read from %d pushes)",
                found.confirmed,
                found.in_doubt,
                found.receipts,
                found.objects,
            )
        if found.ambiguous:
            rows = ", ".join(map(str, found.ambiguous_rows[:20]))
            log.warning(
                "%d message(s) in doubt have receipts naming different MessageIds for their number (rows %s): "
                "ambiguous, not confirmed",
                found.ambiguous,
                rows,
            )

    def after_sending(self, ledger: SqliteLedger) -> None:
        """What still waits for a receipt once this try sent (the ledger still open)."""
        self.waiting = _waiting(ledger.unsettled())

    def awaitable(self) -> list[Waiting]:
        """The waiting messages a receipt could still confirm: not two in doubt to one number."""
        numbers = Counter(w.digits for w in self.waiting)
        return [w for w in self.waiting if numbers[w.digits] == 1]

    def until(self) -> float | None:
        """When the wait ends: ``confirm_within`` after the latest signing still in doubt, never past the
        deadline carried from an earlier deferral; ``None`` when nothing waits."""
        latest = max((w.signed_at for w in self.waiting), default=None)
        if latest is None:
            return None
        own = latest + self.confirm_within
        return own if self.deadline is None else min(own, self.deadline)


def receipts_check(op: Any, campaign_id: str) -> ReceiptsCheck | None:
    """The try's receipts check when receipts come by push (``op.receipts_by_push``, else the config)."""
    if not receipts_by_push(op.receipts_by_push):
        return None
    return ReceiptsCheck(campaign_id, push_grace(op.confirm_within), op._receipts_deadline)


def defer_for_receipts(
    op: Any, check: ReceiptsCheck | None, summary: SendSummary, fail_on_unknown: bool
) -> float | None:
    """Defer to the triggerer while arrived messages wait for their receipts and the deadline is ahead.

    Only when a retry cannot settle anything else (nothing refused, no unknown outcome a replay settles) and
    the task would fail for them. Returns the seconds waited when the wait is over with messages still in
    doubt (for the failure's text), else ``None``."""
    if check is None or not check.waiting or not fail_on_unknown:
        return None
    replayable = summary.unknown and op.confirm_by_replay
    deadline = check.until()
    if summary.failed or replayable or deadline is None:
        return None
    if time.time() >= deadline:
        op.log.warning(
            "No delivery receipt came within %.0f s of sending for: %s", check.confirm_within, masked_waiting(check)
        )
        return check.confirm_within
    key = receipts_digest_key(check.campaign_id)
    digests = sorted({number_digest(key, w.digits) for w in check.awaitable()})
    if not digests:  # every one is to a number texted twice: no receipt can tell which it confirms
        op.log.warning("No receipt can confirm these (one number, two messages in doubt): %s", masked_waiting(check))
        return None
    op.log.info(
        "%d message(s) arrived without an answer: waiting for their delivery receipts (by push) until %s",
        len(check.waiting),
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline)),
    )
    trigger = ArrivedReceiptsTrigger(
        campaign_id=check.campaign_id,
        push_uri=push_location(),
        digests=digests,
        not_before=min(w.signed_at for w in check.waiting),
        deadline=deadline,
        after=check.confirmed.last_object,
        poll_interval=POLL_EVERY,
    )
    op.defer(trigger=trigger, method_name="resume_after_receipts", kwargs={"receipts_deadline": deadline})
    return None  # pragma: no cover (defer raises)


def masked_waiting(check: ReceiptsCheck) -> str:
    """The numbers still waiting, masked, with their rows (for a log line; the first 20)."""
    shown = ", ".join(f"row {w.entry.row} {mask_number('+' + w.digits)}" for w in check.waiting[:20])
    return shown + (f" and {len(check.waiting) - 20} more" if len(check.waiting) > 20 else "")


def carried_deadline(event: Any, receipts_deadline: float | None) -> float | None:
    """The wait's end carried through a deferral: the resume's kwargs, else the trigger's event."""
    carried = receipts_deadline if receipts_deadline is not None else (event or {}).get("deadline")
    return float(carried) if carried is not None else None


class ConfirmByReceipts:
    """``SendGlobeSmsOperator``'s part in confirming sends in doubt by pushed receipts (a mixin: the operator
    keeps its arguments ``receipts_by_push`` and ``confirm_within``)."""

    _receipts: ReceiptsCheck | None = None  # this try's pushed receipts (receipts_by_push)
    _receipts_deadline: float | None = None  # the wait for them ends then, carried across deferrals

    def _receipts_at_start(self, campaign_id: str, ledger: SqliteLedger, guard: Any) -> None:
        """Under the lease, before sending: confirm what is in doubt (when receipts come by push)."""
        op: Any = self
        self._receipts = receipts_check(op, campaign_id)
        if self._receipts is not None:
            self._receipts.at_start(ledger, guard, op.log)

    def _receipts_after_sending(self, ledger: SqliteLedger, summary: SendSummary) -> SendSummary:
        """Once sent, the ledger still open: what still waits for a receipt; returns ``summary``."""
        if self._receipts is not None:
            self._receipts.after_sending(ledger)
        return summary

    def _wait_for_receipts(self, summary: SendSummary) -> float | None:
        """Defer while arrived messages wait for their receipts (see ``defer_for_receipts``); past the wait,
        the seconds waited (for the failure's text)."""
        op: Any = self
        return defer_for_receipts(op, self._receipts, summary, op.fail_on_unknown)

    def resume_after_receipts(self, context: Any, event: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Back from ``ArrivedReceiptsTrigger`` (receipts came, or the deadline passed): run again (the ledger
        sends nothing twice); the try's first step confirms what the receipts confirm, and the task waits
        again only before the deadline.

        :param event: the trigger's event (``status``: ``receipts`` or ``deadline``, and the ``deadline``).
        """
        self._receipts_deadline = carried_deadline(event, kwargs.get("receipts_deadline"))
        op: Any = self
        return dict(op.resume_after_quiet_hours(context, event))
