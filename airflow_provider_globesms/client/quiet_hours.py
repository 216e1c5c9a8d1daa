"""Quiet hours in the recipient's own time: may a message go now, and if not, when.

A number's time zones come from its prefix (``phonenumbers.timezone``): one for most countries, several for
some numbers (an Australian mobile, a Russian one), none known for a few. Where there are several, the window
must be open in all of them: nobody in any of those zones is woken. A row may name its zone instead (an IANA
name in ``tz_field``), which then wins.

Times are aware UTC ``datetime``s throughout; ``now`` is always passed in (the clock is the caller's, so
tests need no real waiting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezones

from airflow_provider_globesms.client.errors import ConfigurationError

UNKNOWN = "Etc/Unknown"  # phonenumbers' answer for a prefix it cannot place
SEARCH_DAYS = 3  # how far ahead a window open in every zone is looked for (zones 14 h apart still share one)


def utc_now() -> datetime:
    """The real clock (tests pass their own ``now`` instead)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window, in local time, when nothing may be sent: ``start`` up to ``end`` (it may span
    midnight: 21:00-08:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, window: Sequence[str] | QuietHours) -> QuietHours:
        """From ``("21:00", "08:00")`` (``HH:MM`` or ``HH:MM:SS``); a bad window is a ``ConfigurationError``."""
        if isinstance(window, QuietHours):
            return window
        if isinstance(window, str) or len(window) != 2:
            raise ConfigurationError(f"quiet_hours must be (start, end) like ('21:00', '08:00'), not {window!r}")
        try:
            start, end = (time.fromisoformat(str(part)) for part in window)
        except ValueError:
            raise ConfigurationError(f"quiet_hours: {window!r} are not two HH:MM times") from None
        if start == end or start.tzinfo is not None or end.tzinfo is not None:
            raise ConfigurationError(f"quiet_hours: {window!r} must be two different local times")
        return cls(start, end)

    def is_quiet(self, local: time) -> bool:
        """Whether ``local`` (a wall-clock time) falls in the window."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def opens_in(self, zone: ZoneInfo, moment: datetime) -> datetime:
        """``moment`` when the window is open in ``zone`` then; else when it next ends there."""
        local = moment.astimezone(zone)
        if not self.is_quiet(local.time()):
            return moment
        day = local.date() if local.time() < self.end else local.date() + timedelta(days=1)
        ending = datetime.combine(day, self.end, tzinfo=zone).astimezone(timezone.utc)
        return max(ending, moment + timedelta(seconds=1))  # a DST gap can put the local end before moment

    def next_open(self, zones: Sequence[ZoneInfo], now: datetime) -> datetime | None:
        """The first moment from ``now`` at which the window is open in every zone (``now`` when it is);
        ``None`` when there is none within ``SEARCH_DAYS`` days."""
        moment, limit = now, now + timedelta(days=SEARCH_DAYS)
        while moment <= limit:
            later = max(self.opens_in(zone, moment) for zone in zones)
            if later == moment:
                return moment
            moment = later
        return None


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    """The ``ZoneInfo`` of an IANA name, or ``None`` when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def number_zones(wire: str) -> tuple[ZoneInfo, ...]:
    """The time zones of a number in the wire form (``85291234567``); empty when its prefix is not placed."""
    try:
        parsed = phonenumbers.parse(f"+{wire}")
    except phonenumbers.NumberParseException:
        return ()
    names = number_timezones.time_zones_for_number(parsed)
    found = tuple(z for z in (zone(name) for name in names if name != UNKNOWN) if z is not None)
    return found


@dataclass(frozen=True, slots=True)
class QuietSchedule:
    """Quiet hours applied to one campaign at one moment: for each recipient, now or when."""

    hours: QuietHours
    now: datetime
    on_unknown: str = "hold"  # "hold", "send" or "skip" a number whose time zone is not known

    def opens_at(self, wire: str, named_zone: str | None = None) -> tuple[datetime | None, bool]:
        """``(None, False)``: send now; ``(when, False)``: held until ``when``; ``(None, True)``: the time
        zone is unknown (hold or skip it). ``named_zone`` (a row's IANA name) wins over the number's
        zones; an unknown name is a ``ValueError``."""
        if named_zone:
            found = zone(named_zone.strip())
            if found is None:
                raise ValueError(f"unknown time zone {named_zone[:60]!r} (an IANA name such as Europe/London)")
            zones: tuple[ZoneInfo, ...] = (found,)
        else:
            zones = number_zones(wire)
        if not zones:
            return (None, False) if self.on_unknown == "send" else (None, True)
        when = self.hours.next_open(zones, self.now)
        if when is None:
            return None, True  # no hour open in all of its zones within days: as good as unknown
        return (None, False) if when <= self.now else (when, False)
