"""What may go now, decided again as the send pass reaches each message (validation decided it first):
quiet hours that began since validation, and whether an earlier try's request in doubt may be replayed (a
replay may be a send) to someone this try suppresses, holds, or no longer sends to at all."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timezone

from airflow_provider_globesms.client.bulk.prepare import Held, PreparedMessage, PreparedRow, Suppressed, message_of
from airflow_provider_globesms.client.campaign import quiet_hours
from airflow_provider_globesms.client.errors import GlobeSmsError


class WindowClosedError(GlobeSmsError):
    """A message's quiet hours began before its request could leave; it is held, not sent."""


def vouchers(items: Iterable[PreparedRow], keys: set[str]) -> dict[str, PreparedRow]:
    """This try's outcome for each message in doubt (``keys``) it still has: one pass over ``items``."""
    found: dict[str, PreparedRow] = {}
    for item in items:
        message = message_of(item)
        if message is not None and message.key in keys:
            found[message.key] = item
    return found


def replay_blocked(voucher: PreparedRow | None) -> str | None:
    """Why an in-doubt request may not be replayed now; ``None`` when it may."""
    if voucher is None:
        return "no row of this try sends it now (the row was removed, or its text changed)"
    if isinstance(voucher, Suppressed):
        return "the number is suppressed now"
    if isinstance(voucher, Held) or (isinstance(voucher, PreparedMessage) and window_closed(voucher)):
        return "the recipient is in quiet hours now"
    return None


def window_closed(message: PreparedMessage, now: float | None = None) -> bool:
    """Whether the recipient's quiet hours have begun since validation (less the margin)."""
    if message.closes_at is None:
        return False
    return (quiet_hours.utc_now().timestamp() if now is None else now) >= message.closes_at


def held_from_now(message: PreparedMessage) -> Held:
    """The message held from now until its window reopens (unknown when no reopening was found)."""
    reopens = datetime.fromtimestamp(message.reopens_at, timezone.utc) if message.reopens_at else None
    return Held(replace(message, closes_at=None, reopens_at=None), reopens, reopens is None)
