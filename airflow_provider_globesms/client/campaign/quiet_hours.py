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
MARGIN = timedelta(minutes=1)  # a message goes no later than this before its recipient's window closes
MIN_OPEN = 5 * MARGIN  # a shorter open stretch is not one to send in (it would be held day after day)
QUARTER = timedelta(minutes=15)
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
        day = datetime(2000, 1, 1)
        open_for = (datetime.combine(day, start) - datetime.combine(day, end)) % timedelta(days=1)
        if open_for < MIN_OPEN:
            raise ConfigurationError(f"quiet_hours: {window!r} leaves less than {MIN_OPEN} a day to send in")
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

    def closes_in(self, zone: ZoneInfo, moment: datetime) -> datetime:
        """The last moment before the window next begins in ``zone`` after ``moment`` (open now): when its
        start comes round, or earlier when a clock change puts the local time into it (a start in a skipped
        hour; a repeated hour that falls back into the window)."""
        local = moment.astimezone(zone)
        starts = [
            datetime.combine(day, self.start, tzinfo=zone).replace(fold=fold).astimezone(timezone.utc)
            for day in (local.date() + timedelta(days=n) for n in range(3))
            for fold in (0, 1)
        ]
        closing = min(start for start in starts if start > moment)
        # Clock changes happen on a quarter hour of UTC: look at each one up to the start.
        step = moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0) + QUARTER
        before = moment
        while step < closing:
            if self.is_quiet(step.astimezone(zone).time()):
                return before
            before, step = step, step + QUARTER
        return closing

    def next_open(self, zones: Sequence[ZoneInfo], now: datetime) -> datetime | None:
        """The first moment from ``now`` at which the window is open in every zone (``now`` when it is) and
        stays open for at least ``MIN_OPEN``; ``None`` when there is none within ``SEARCH_DAYS`` days."""
        moment, limit = now, now + timedelta(days=SEARCH_DAYS)
        while moment <= limit:
            later = max(self.opens_in(zone, moment) for zone in zones)
            if later == moment:
                closes = min(self.closes_in(zone, moment) for zone in zones)
                if closes - moment >= MIN_OPEN:
                    return moment
                later = max(closes, moment + timedelta(seconds=1))  # too short a stretch: the next one
            moment = later
        return None


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    """The ``ZoneInfo`` of an IANA name, or ``None`` when there is no such zone. A folder of the tz database
    (``Australia``, ``America/Argentina``: what a CRM holds when someone typed a country) or a name too long
    for a file name is no zone either (``IsADirectoryError``, ``OSError``), never an error of the campaign."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def number_zones(wire: str) -> tuple[ZoneInfo, ...]:
    """The time zones of a number in the wire form (``85291234567``); empty when its prefix is not placed."""
    try:
        parsed = phonenumbers.parse(f"+{wire}")
    except phonenumbers.NumberParseException:
        return ()
    names = number_timezones.time_zones_for_number(parsed)
    return tuple(z for z in (zone(name) for name in names if name != UNKNOWN) if z is not None)


@dataclass(frozen=True, slots=True)
class Timing:
    """When one recipient may be sent to: now (``opens_at`` is ``None``) until ``closes_at``, after which it
    waits for ``reopens_at``; or held until ``opens_at``; or, with ``unknown``, no zone to keep it by."""

    opens_at: datetime | None = None
    closes_at: datetime | None = None
    reopens_at: datetime | None = None
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class QuietSchedule:
    """Quiet hours applied to one campaign at one moment: for each recipient, now or when."""

    hours: QuietHours
    now: datetime
    on_unknown: str = "hold"  # "hold", "send" or "skip" a number whose time zone is not known

    def timing(self, wire: str, named_zone: str | None = None) -> Timing:
        """When the number may be sent to. ``named_zone`` (a row's IANA name) wins over the number's zones;
        an unknown name is a ``ValueError``. A number whose zones share no open stretch (``MIN_OPEN``)
        within days follows ``on_unknown`` as an unknown zone does."""
        return _timing(self, self._zones(wire, named_zone))

    @staticmethod
    def _zones(wire: str, named_zone: str | None) -> tuple[ZoneInfo, ...]:
        if named_zone and named_zone.strip():
            found = zone(named_zone.strip())
            if found is None:
                raise ValueError(f"unknown time zone {named_zone[:60]!r} (an IANA name such as Europe/London)")
            return (found,)
        return number_zones(wire)


@lru_cache(maxsize=4096)
def _timing(schedule: QuietSchedule, zones: tuple[ZoneInfo, ...]) -> Timing:
    """``QuietSchedule.timing`` for a set of zones (the same for every number sharing them: computed once).
    Open now with more than ``MARGIN`` left: send now, until then; else held until an open stretch of at
    least ``MIN_OPEN`` (never a sliver it would be held from again, day after day)."""
    hours, now = schedule.hours, schedule.now
    if zones and all(not hours.is_quiet(now.astimezone(z).time()) for z in zones):
        closes = min(hours.closes_in(z, now) for z in zones) - MARGIN
        if closes > now:
            return Timing(closes_at=closes, reopens_at=hours.next_open(zones, closes + MARGIN))
    when = hours.next_open(zones, now) if zones else None
    if when is None:
        return Timing() if schedule.on_unknown == "send" else Timing(unknown=True)
    return Timing(opens_at=when)
