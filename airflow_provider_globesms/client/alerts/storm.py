"""Alert storm control: each alert once, at most one text per window per recipient, the rest in a digest.

Per recipient (a folder named by a keyed digest of the number, never the number), a chain of **windows**.
A window is a folder of numbered **slots**, each created exclusively, so the slots of a window are one
ordered log that every worker agrees on:

- slot 1 opens the window: ``opened_at``, ``closes_at`` (store time) and the route to the recipient. Only
  the process that creates it sends a text: the first alert of a quiet spell, or the digest of the
  window before;
- an alert inside the window takes the next slot (**folded**: no text now);
- once the store's clock has passed ``closes_at``, the next slot is a **close**, taken by a late alert or by
  the sweeper. Every alert in a slot before the close is in the backlog, and a slot after it belongs to
  the next window. Whoever creates slot 1 of the next window sends one text covering the backlog. Of two
  racers, exclusive creation lets one win, so the backlog goes out in exactly one text.

The fast path needs no reads of other slots: a slot created before ``closes_at`` (by the store's clock)
cannot come after a close, because a close is only ever created after ``closes_at``. Times are always the
store's (the modification time of an object just created), so workers whose clocks disagree agree anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from airflow_provider_globesms.client.alerts import claims
from airflow_provider_globesms.client.alerts.digest import Alert, backlog_text, clock_text, muted_text
from airflow_provider_globesms.client.alerts.store import AlertStore, Record

log = logging.getLogger(__name__)

# Store seconds after a close whose closer has not opened the next window: it died. Safe however short (the
# next window's first slot is created exclusively, and a taker reports the closer's own alert too); short, so
# that alerts waiting on a dead closer do not fall back to plain texts for long.
TAKEOVER = 10.0
_KEEP = 2 * 86400.0  # store seconds that windows, claims and daily counts are kept
_TRIES, _PAUSE = 40, 0.05
_WINDOW, _SLOT = re.compile(r"w-(\d{8})"), re.compile(r"s-(\d{6})\.json")
_NUMBERED = re.compile(r"[a-z]+-(\d{6})\.json")
_DUE = re.compile(r"(\d{15})-(r-[0-9a-f]{32})-(\d{8})\.json")


@dataclass(frozen=True)
class Route:
    """How to text one recipient, kept with each window so that the sweeper can send its digest.

    :param to: the number, as sent (``+85291234567``).
    :param conn_id: the connection to send with.
    :param window: seconds between texts to this recipient.
    :param daily_cap: texts per UTC day before one "muted" text and silence until midnight; None: no cap.
    """

    to: str
    conn_id: str
    sender: str | None = None
    sms_type: str | None = None
    region: str | None = None
    window: float = 600.0
    daily_cap: int | None = None


@dataclass(frozen=True)
class Text:
    """A text to send now: ``alerts`` counts the alerts it reports; ``kind`` is alert, digest or muted."""

    route: Route
    body: str
    alerts: int
    kind: str


@dataclass(frozen=True)
class Verdict:
    """What became of an alert for one recipient: a text to send now, or why none (for the log)."""

    text: Text | None
    reason: str


class StormControl:
    """The windows of every recipient in one ``AlertStore``.

    :param store: where the claims live (shared by every process that runs callbacks).
    :param secret: keys the digest that names a recipient's folder (Airflow's Fernet key, so a listing of
        the store does not reveal numbers by trying them all).
    :param seal: seals the number kept in a window's route (Fernet), ``unseal`` opens it; identity by default.
    """

    def __init__(
        self,
        store: AlertStore,
        *,
        secret: bytes = b"globesms-alerts",
        seal: Callable[[str], str] = str,
        unseal: Callable[[str], str] = str,
    ) -> None:
        self.store, self._secret, self._seal, self._unseal = store, secret, seal, unseal

    def folder(self, to: str) -> str:
        """The recipient's folder: ``r-`` and a keyed digest of the number."""
        return "r-" + hmac.new(self._secret, to.encode(), hashlib.sha256).hexdigest()[:32]

    def admit(self, alert: Alert, route: Route) -> Verdict:
        """Decide one alert for one recipient; store errors propagate (the caller then sends it plain)."""
        folder = self.folder(route.to)
        now = claims.claim(self.store, folder, alert.digest, lambda: self._placed(folder, alert.digest))
        if now is None:
            return Verdict(None, "already alerted (the callback ran again)")
        verdict = Verdict(Text(route, alert.text, 1, "alert"), "the window could not be settled: sent as it is")
        for _ in range(_TRIES):
            decided, now = self._step(folder, alert, route, now)
            if decided is not None:
                verdict = decided
                break
            time.sleep(_PAUSE)
        claims.mark_placed(self.store, folder, alert.digest)
        return verdict

    def sweep(self, limit: int | None = None) -> list[Verdict]:
        """Close the windows past their end that hold folded alerts: the digests to send now (the sweeper's
        work, and every callback's on the side: a digest goes out even when no later alert comes).

        :param limit: settle at most this many windows: a caller that sends each digest before sweeping for
            the next (``limit=1`` in a loop) loses at most the one in flight if it is stopped.
        """
        verdicts: list[Verdict] = []
        now = self.store.now()
        for name in self.store.children("due"):
            match = _DUE.fullmatch(name)
            if match is None or int(match.group(1)) / 1000 > now:
                continue
            if limit is not None and len(verdicts) >= limit:
                break
            try:  # one clock reading serves the sweep: each window's opening reads its own (``_open``)
                verdict = self._sweep_one(match.group(2), int(match.group(3)), now)
            except Exception as exc:  # one bad window (unreadable, sealed with a key gone) must not block the rest
                log.warning("Alert digest for window %s not settled: %s: %s", name, type(exc).__name__, exc)
                continue
            if verdict is not False:
                self.store.delete(f"due/{name}")
                if verdict is not None:
                    verdicts.append(verdict)
        return verdicts

    def _sweep_one(self, folder: str, number: int, now: float) -> Verdict | Literal[False] | None:
        """Close one due window: its verdict; None when the next window exists; False: look again later."""
        if self.store.read(self._opener(folder, number + 1)) is None:
            opener = self.store.read(self._opener(folder, number))
            if opener is None or now < float(opener["closes_at"]):
                return False
            route = Route(**{**opener["route"], "to": self._unseal(str(opener["route"]["to"]))})
            verdict = self._close_and_open(folder, number, opener, route, now, None)
            return False if verdict is None else verdict  # None: another process is closing it
        return None

    def _placed(self, folder: str, digest: str) -> bool:
        """Whether an alert is in the recipient's last two windows (its opener, a fold or a close)."""
        latest = self._latest(folder)
        if latest is None:
            return False
        number, newest = latest
        for window in (number, number - 1):
            opener = newest if window == number else self.store.read(self._opener(folder, window)) or {}
            records = [opener, *self._window_records(folder, window)]
            if any(r.get("key") == digest or (r.get("alert") or {}).get("key") == digest for r in records):
                return True
        return False

    def _step(self, folder: str, alert: Alert, route: Route, now: float) -> tuple[Verdict | None, float]:
        """One look at the latest window (None: it changed under us, look again) and the time to go on with."""
        latest = self._latest(folder)
        if latest is None:
            return self._open(folder, 1, route, now, alert, [], since=now), now
        number, opener = latest
        closes_at = float(opener["closes_at"])
        if now < closes_at:
            self._mark_due(folder, number, closes_at)  # first: a fold whose process dies next is still swept
            slot, stamped = self._append(folder, number, {"alert": alert.to_record(), "at": now})
            if stamped >= closes_at and self._close_in(self._records(folder, number, slot)) is not None:
                return None, stamped  # our slot came after a close: the alert belongs to the next window
            return Verdict(None, f"folded into the digest of the window until {clock_text(closes_at)}"), now
        return self._close_and_open(folder, number, opener, route, now, alert), now

    def _close_and_open(
        self, folder: str, number: int, opener: Record, route: Route, now: float, lead: Alert | None
    ) -> Verdict | None:
        """Close window ``number`` (if no one has) and open the next with one text for its backlog."""
        since, records = float(opener["opened_at"]), self._window_records(folder, number)
        close = self._close_in(records)
        if close is None:
            record: Record = {"close": True, "at": now, **({"alert": lead.to_record()} if lead else {})}
            slot, _ = self._append(folder, number, record)
            records += self._records(folder, number, slot, start=len(records) + 2)
            if self._close_in(records) is not None:
                return None  # someone closed it first: look again
            backlog = _alerts(records[: slot - 2])
            if lead is None and not backlog:
                return Verdict(None, "the window closed quiet")
            return self._open(folder, number + 1, route, now, lead, backlog, since) or Verdict(
                None, "reported by the text of the next window (opened by another process)"
            )
        close_record = records[close - 2]
        backlog = _alerts(records[: close - 2]) + ([close_record["alert"]] if "alert" in close_record else [])
        if lead is None and not backlog:
            return Verdict(None, "the window closed quiet")
        if backlog and now < float(close_record["at"]) + TAKEOVER:
            return None  # its closer is opening the next window: wait for it
        return self._open(folder, number + 1, route, now, lead, backlog, since)

    def _open(
        self,
        folder: str,
        number: int,
        route: Route,
        now: float,
        lead: Alert | None,
        backlog: list[Record],
        since: float,
    ) -> Verdict | None:
        """Create slot 1 of window ``number``; the one process that does sends the text. None: lost the race."""
        now = max(now, self.store.now())  # the window starts when its text is decided, not when we looked
        count = len(backlog) + (1 if lead else 0)
        opener = {
            "opened_at": now,
            "closes_at": now + route.window,
            "route": {**asdict(route), "to": self._seal(route.to)},
            "alerts": count,
            **({"key": lead.digest} if lead else {}),
        }
        if self.store.create(self._opener(folder, number), opener) is None:
            return None
        text = Text(route, backlog_text(lead, backlog, since), count, "digest" if backlog else "alert")
        try:  # the window is ours now: nothing after this may raise, or its backlog would be lost
            capped = self._within_cap(folder, route, now, text, lead)
        except Exception as exc:
            log.warning("Daily alert cap not checked (%s); sending", exc)
            capped = text
        self._prune(folder, number, now)
        if capped is None:
            return Verdict(None, f"muted: the daily cap of {route.daily_cap} texts was reached")
        return Verdict(capped, f"the next text no sooner than {clock_text(now + route.window)}")

    def _within_cap(self, folder: str, route: Route, now: float, text: Text, lead: Alert | None) -> Text | None:
        """``text``; the muted notice instead when it is the day's first over the cap; None after that."""
        if route.daily_cap is None:
            return text
        slot, _ = self._append_to(f"{folder}/day-{claims.day(now)}", "n-", {"kind": text.kind})
        if slot <= route.daily_cap:
            return text
        if slot == route.daily_cap + 1:
            midnight = datetime.fromtimestamp(now, timezone.utc).date() + timedelta(days=1)
            until = datetime(midnight.year, midnight.month, midnight.day, tzinfo=timezone.utc).timestamp()
            return Text(route, muted_text(until, route.daily_cap, lead), text.alerts, "muted")
        return None

    def _latest(self, folder: str) -> tuple[int, Record] | None:
        """The newest window with its opener written: its number and opener; None when there is none."""
        numbers = sorted(int(m.group(1)) for m in map(_WINDOW.fullmatch, self.store.children(folder)) if m)
        for number in reversed(numbers):
            opener = self.store.read(self._opener(folder, number))
            if opener is not None:
                return number, opener
        return None

    @staticmethod
    def _opener(folder: str, number: int) -> str:
        return f"{folder}/w-{number:08d}/s-000001.json"

    def _window_records(self, folder: str, number: int) -> list[Record]:
        """Every slot of window ``number`` after its opener, in order, as listed now."""
        names = self.store.children(f"{folder}/w-{number:08d}")
        last = max((int(m.group(1)) for m in map(_SLOT.fullmatch, names) if m), default=1)
        return self._records(folder, number, last + 1)

    def _append(self, folder: str, number: int, record: Record) -> tuple[int, float]:
        """Take the next free slot of a window: its number and store time."""
        return self._append_to(f"{folder}/w-{number:08d}", "s-", record)

    def _append_to(self, folder: str, prefix: str, record: Record) -> tuple[int, float]:
        """Create ``<prefix><n>.json`` for the lowest free ``n`` above every one listed: ``n`` and its time."""
        slot = 0
        for _ in range(10_000):
            taken = [int(m.group(1)) for m in map(_NUMBERED.fullmatch, self.store.children(folder)) if m]
            slot = max([slot, *taken]) + 1  # jump past every slot taken meanwhile
            stamped = self.store.create(f"{folder}/{prefix}{slot:06d}.json", record)
            if stamped is not None:
                return slot, stamped
        raise OSError(f"no free slot in {folder} after 10000 tries")

    def _records(self, folder: str, number: int, upto: int, start: int = 2) -> list[Record]:
        """Slots ``start`` .. ``upto - 1`` of window ``number``, in order."""
        records = []
        for index in range(start, upto):
            name = f"{folder}/w-{number:08d}/s-{index:06d}.json"
            record = self.store.read(name)
            if record is None:  # never torn (slots appear whole): garbage, or a store gone wrong
                log.warning("Alert slot %s cannot be read: counted as empty", name)
                record = {}
            records.append(record)
        return records

    @staticmethod
    def _close_in(records: list[Record]) -> int | None:
        """The slot number of the first close among records of slots 2, 3, ...; None when there is none."""
        return next((index + 2 for index, record in enumerate(records) if record.get("close")), None)

    def _mark_due(self, folder: str, number: int, closes_at: float) -> None:
        """Tell the sweeper this window has a backlog to send when it closes (once; later folds find it)."""
        self.store.create(f"due/{math.ceil(closes_at * 1000):015d}-{folder}-{number:08d}.json", {})

    def _prune(self, folder: str, number: int, now: float) -> None:
        """Forget windows, claims and counts older than two days (best effort: a failure here loses nothing
        that matters). A window is forgotten only when it opened that long ago: a process stalled in it may
        still be at work, and a window deleted under it would lose or repeat alerts."""
        try:
            days = {f"{kind}-{claims.day(now + d * 86400)}" for kind in ("seen", "day") for d in (-2, -1, 0, 1)}
            names = self.store.children(folder)
            for name in names:
                if name.startswith("seen-") and name not in days:
                    claims.forget(self.store, folder, name)
                elif name.startswith("day-") and name not in days:
                    self.store.delete(f"{folder}/{name}")
            old = sorted(int(m.group(1)) for m in map(_WINDOW.fullmatch, names) if m and int(m.group(1)) < number - 2)
            for window in old:  # oldest first: stop at the first one young enough to keep
                opener = self.store.read(self._opener(folder, window))
                if opener is not None and float(opener["opened_at"]) > now - _KEEP:
                    break
                self.store.delete(f"{folder}/w-{window:08d}")
        except Exception as exc:  # pruning is housekeeping: never at the cost of the text
            log.warning("Old alert windows not pruned: %s", exc)


def _alerts(records: list[Record]) -> list[Record]:
    return [dict(record["alert"]) for record in records if "alert" in record]
