"""Quiet hours and suppression are kept by the send pass too, not only by validation (issue 14, from an
adversary review): a long campaign validated while a window was open must not send into it once it closes,
and a retry's replay of an in-doubt request (a send) must not reach a number suppressed or quiet since.

The client core against the emulator; the clock is ``quiet_hours.utc_now``, replaced."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.client.bulk import BulkSender, Campaign, PreparedMessage, Spill, validate
from airflow_provider_globesms.client.campaign import quiet_hours
from airflow_provider_globesms.client.campaign.quiet_hours import MARGIN, QuietHours, QuietSchedule, number_zones
from airflow_provider_globesms.client.campaign.suppression import SuppressionList
from airflow_provider_globesms.client.errors import ConfigurationError
from airflow_provider_globesms.client.ledger.sqlite_ledger import LedgerEntry, SqliteLedger, Status
from airflow_provider_globesms.client.results.report import ResultsWriter
from airflow_provider_globesms.client.rules.recipients import rows_from_records
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from tests.emulator_helpers import send
from tests.test_quiet_hours import opens_at

UTC = timezone.utc
SCOPE = ("dag", "run", "task", "-1")
# Five countries, eight zones: Hong Kong, London, New York, an Australian mobile (all of Australia's zones),
# Tokyo, India (a half-hour offset), Los Angeles, Chatham (a 45-minute offset via a row's tz).
PEOPLE = [
    {"to": "+85291234567"},
    {"to": "+447911123456"},
    {"to": "+12125550123"},
    {"to": "+61412345678"},
    {"to": "+819012345678"},
    {"to": "+919812345678"},
    {"to": "+13105550123"},
    {"to": "+85291234568", "tz": "Pacific/Chatham"},
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as server:
        yield server


def _results(path: Path) -> dict[int, dict[str, Any]]:
    return {r["row"]: r for r in map(json.loads, path.read_text().splitlines())}


def _open_everywhere(hours: QuietHours, wire: str, tz: str | None, moment: datetime) -> bool:
    zones = [quiet_hours.zone(tz)] if tz else list(number_zones(wire))
    return all(zone is not None and not hours.is_quiet(moment.astimezone(zone).time()) for zone in zones)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31)).map(lambda d: d.replace(tzinfo=UTC)),
    later=st.integers(0, 6 * 3600),
    quiet_from=st.integers(0, 23),
    quiet_hours_long=st.integers(1, 12),
)
def test_nobody_is_sent_to_once_their_window_has_closed(
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    start: datetime,
    later: int,
    quiet_from: int,
    quiet_hours_long: int,
) -> None:
    """Validated at ``start``, sent ``later`` seconds after (a long list, a slow ledger): every message that
    goes is open in all its zones when it goes and a minute after; every other one is held until a moment
    when it is open. Nothing is lost, nothing reaches the emulator that was held."""
    hours = QuietHours.parse((f"{quiet_from:02d}:00", f"{(quiet_from + quiet_hours_long) % 24:02d}:00"))
    emulator.clear()
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
    campaign = Campaign(client, lambda r: "Weekend offer", SCOPE)
    sending_at = start + timedelta(seconds=later)
    with tempfile.TemporaryDirectory() as workdir, Spill(campaign, workdir) as spill:
        report = validate(
            campaign, rows_from_records(PEOPLE), on_row=spill.add, quiet=QuietSchedule(hours, start), tz_field="tz"
        )
        assert report.invalid == 0
        monkeypatch.setattr(quiet_hours, "utc_now", lambda: sending_at)
        results = Path(workdir) / "results.jsonl"
        with results.open("wb") as handle, SqliteLedger(Path(workdir) / "ledger.sqlite3") as ledger:
            summary = BulkSender(campaign, ledger, ResultsWriter(handle), progress_interval=0).run(spill, len(PEOPLE))
        outcomes = _results(results)
    assert sorted(outcomes) == list(range(1, len(PEOPLE) + 1))  # nothing lost
    sent = [m["to"] for m in emulator.messages()]
    assert len(sent) == len(set(sent)) == summary.accepted
    for row, outcome in outcomes.items():
        person = PEOPLE[row - 1]
        wire = person["to"].lstrip("+")
        if outcome["status"] == "accepted":
            assert wire in sent
            for moment in (sending_at, sending_at + MARGIN - timedelta(seconds=1)):
                assert _open_everywhere(hours, wire, person.get("tz"), moment), (row, moment)
        else:
            assert outcome["status"] == "held", outcome
            assert wire not in sent
            assert outcome["until"] is not None
            until = datetime.fromisoformat(outcome["until"])
            assert _open_everywhere(hours, wire, person.get("tz"), until)


def test_a_message_validated_in_its_window_is_held_when_it_closes_before_sending(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20:50 in Hong Kong at validation (quiet from 21:00): open. The send pass starts at 20:59:30, inside the
    margin: held until 08:00, and the summary's next opening says so."""
    emulator.clear()
    hours = QuietHours.parse(("21:00", "08:00"))
    validated = datetime(2026, 11, 20, 12, 50, tzinfo=UTC)  # 20:50 in Hong Kong
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
    campaign = Campaign(client, lambda r: "Offer", SCOPE)
    with tempfile.TemporaryDirectory() as workdir, Spill(campaign, workdir) as spill:
        validate(campaign, rows_from_records(PEOPLE[:1]), on_row=spill.add, quiet=QuietSchedule(hours, validated))
        (message,) = list(spill)
        assert isinstance(message, PreparedMessage)
        assert message.closes_at == datetime(2026, 11, 20, 12, 59, tzinfo=UTC).timestamp()
        monkeypatch.setattr(quiet_hours, "utc_now", lambda: validated + timedelta(minutes=9, seconds=30))
        with (Path(workdir) / "r.jsonl").open("wb") as handle, SqliteLedger(Path(workdir) / "l.sqlite3") as ledger:
            summary = BulkSender(campaign, ledger, ResultsWriter(handle), progress_interval=0).run(spill, 1)
    assert (summary.held, summary.accepted) == (1, 0)
    assert summary.next_opening == datetime(2026, 11, 21, 0, 0, tzinfo=UTC).timestamp()  # 08:00 in Hong Kong
    assert emulator.messages() == []


@pytest.mark.parametrize("now_blocked_by", ["suppression", "quiet hours at validation", "quiet hours since"])
def test_a_retry_never_replays_to_a_number_suppressed_or_quiet_since(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, now_blocked_by: str
) -> None:
    """A first try left two requests in doubt (one had reached the API, one had not), then the number was
    put on the opt-out list, or its night began. The retry must not replay them (a replay is a send): both
    stay unknown, the task's verdict says so, and the emulator got nothing more."""
    emulator.clear()
    night = QuietHours.parse(("21:00", "08:00"))
    noon_hk = datetime(2026, 11, 20, 4, tzinfo=UTC)
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
    campaign = Campaign(client, lambda r: "Offer", SCOPE)
    people = [{"to": "+85291234567"}, {"to": "+85291234568"}]
    with tempfile.TemporaryDirectory() as workdir, SqliteLedger(Path(workdir) / "l.sqlite3") as ledger:
        first = Spill(campaign, workdir)
        validate(campaign, rows_from_records(people), on_row=first.add, quiet=QuietSchedule(night, noon_hk))
        arrived, never_left = list(first)
        for message in (arrived, never_left):
            assert isinstance(message, PreparedMessage)
            request = client.sign("SendMessageToGlobe", message.params)
            pending = LedgerEntry(message.key, Status.PENDING, message.row, message.to, request=request)
            ledger.write_many([pending])
            if message is arrived:
                assert send(emulator, request).code == "OK"  # ...and then the worker died
        retry = Spill(campaign, workdir)
        with SuppressionList(workdir) as opted_out:
            opted_out.load(enumerate(["+85291234567", "+85291234568"]))
            if now_blocked_by == "suppression":
                validate(campaign, rows_from_records(people), on_row=retry.add, suppression=opted_out)
            elif now_blocked_by == "quiet hours at validation":
                late = QuietSchedule(night, noon_hk + timedelta(hours=9, minutes=30))  # 21:30 in Hong Kong
                validate(campaign, rows_from_records(people), on_row=retry.add, quiet=late)
            else:
                validate(campaign, rows_from_records(people), on_row=retry.add, quiet=QuietSchedule(night, noon_hk))
                monkeypatch.setattr(quiet_hours, "utc_now", lambda: noon_hk + timedelta(hours=9))  # 21:00 there
        with (Path(workdir) / "r.jsonl").open("wb") as handle:
            summary = BulkSender(campaign, ledger, ResultsWriter(handle), progress_interval=0).run(retry, 2)
        outcomes = _results(Path(workdir) / "r.jsonl")
        entries = {e.row: e for e in ledger.entries()}
        first.close()
        retry.close()
    assert summary.recovered == 2
    assert (summary.unknown, summary.accepted, summary.held, summary.suppressed) == (2, 0, 0, 0)
    assert [m["to"] for m in emulator.messages()] == ["85291234567"]  # the one that arrived, once
    assert {r: o["status"] for r, o in outcomes.items()} == {1: "unknown", 2: "unknown"}
    assert all("not replayed" in o["note"] for o in outcomes.values())
    assert all(entries[r].status is Status.UNKNOWN and "not confirmed by replay" in (entries[r].error or "")
               for r in (1, 2))  # fmt: skip


def test_a_number_whose_zones_share_no_open_hour_follows_on_unknown_timezone() -> None:
    """An Australian mobile spans Cocos (UTC+6:30) to Lord Howe (UTC+11 in November): with only 12:00-14:00
    open there is no hour open in all its zones. It is treated as an unknown zone: 'send' sends it now
    (before this, it was held, never sent, and the task succeeded), 'hold' and 'skip' hold it as unknown."""
    short_day = QuietHours.parse(("14:00", "12:00"))
    now = datetime(2026, 11, 20, 4, tzinfo=UTC)
    australian = "61412345678"
    assert short_day.next_open(number_zones(australian), now) is None
    assert opens_at(QuietSchedule(short_day, now, "send"), australian) == (None, False)
    assert opens_at(QuietSchedule(short_day, now, "hold"), australian) == (None, True)
    assert opens_at(QuietSchedule(short_day, now, "skip"), australian) == (None, True)
    ten_in_hong_kong = datetime(2026, 11, 20, 2, tzinfo=UTC)
    assert opens_at(QuietSchedule(short_day, ten_in_hong_kong, "send"), "85291234567") == (now, False)  # till noon


@pytest.mark.parametrize("change", ["row removed", "text changed"])
def test_an_in_doubt_request_no_row_of_the_retry_sends_is_not_replayed(emulator: EmulatorServer, change: str) -> None:
    """From a second adversary review: the first try's request never left; before the retry, the row was
    removed (and its number put on an opt-out list), or the text changed (a template with a date). The
    request no row of the retry vouches for must not be replayed: it stays unknown, reported with its row."""
    emulator.clear()
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
    first_campaign = Campaign(client, lambda r: "Offer of Monday", SCOPE)
    people = [{"to": "+85291234567"}, {"to": "+85291234568"}]
    with tempfile.TemporaryDirectory() as workdir, SqliteLedger(Path(workdir) / "l.sqlite3") as ledger:
        first = Spill(first_campaign, workdir)
        validate(first_campaign, rows_from_records(people), on_row=first.add)
        never_left = next(iter(first))
        assert isinstance(never_left, PreparedMessage)
        request = client.sign("SendMessageToGlobe", never_left.params)
        ledger.write_many([LedgerEntry(never_left.key, Status.PENDING, 1, never_left.to, request=request)])
        retry_campaign = (
            Campaign(client, lambda r: "Offer of Tuesday", SCOPE) if change == "text changed" else first_campaign
        )
        retry = Spill(retry_campaign, workdir)
        validate(retry_campaign, rows_from_records(people[1:] if change == "row removed" else people), on_row=retry.add)
        with (Path(workdir) / "r.jsonl").open("wb") as handle:
            summary = BulkSender(retry_campaign, ledger, ResultsWriter(handle), progress_interval=0).run(retry, 2)
        lines = [json.loads(line) for line in (Path(workdir) / "r.jsonl").read_text().splitlines()]
        first.close()
        retry.close()
    sent_now = 2 if change == "text changed" else 1
    assert sorted(m["to"] for m in emulator.messages()) == ["85291234567", "85291234568"][2 - sent_now :]
    assert (summary.recovered, summary.accepted, summary.unknown) == (1, sent_now, 1)
    (orphan,) = [line for line in lines if line["status"] == "unknown"]
    assert (orphan["row"], orphan["to"]) == (1, "+852****4567")
    assert "no row of this try sends it" in orphan["note"]


class RunningClock:
    """``utc_now`` as a fixed moment plus the seconds since ``start()``, called just before sending: the
    setup's time on a slow machine does not eat the seconds left in the window."""

    def __init__(self, at: datetime) -> None:
        self.at, self.started = at, time.monotonic()

    def start(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> datetime:
        return self.at + timedelta(seconds=time.monotonic() - self.started)


def test_a_message_waiting_for_the_rate_limiter_past_its_window_is_held(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a second adversary review: the window was checked when a message was planned, not when it left.
    Sixteen Hong Kong numbers, validated two seconds before the margin ends (20:58:58, quiet from 21:00), sent at
    4 a second: those still waiting for the limiter when the window closes are held, none goes after."""
    emulator.clear()
    hours = QuietHours.parse(("21:00", "08:00"))
    validated = datetime(2026, 11, 20, 12, 58, 58, tzinfo=UTC)  # 20:58:58 in Hong Kong; closes_at 20:59:00
    clock = RunningClock(validated)
    monkeypatch.setattr(quiet_hours, "utc_now", clock)
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url, max_qps=4)
    campaign = Campaign(client, lambda r: "Offer", SCOPE)
    people = [{"to": f"+8529123{n:04d}"} for n in range(16)]
    with tempfile.TemporaryDirectory() as workdir, Spill(campaign, workdir) as spill:
        validate(campaign, rows_from_records(people), on_row=spill.add, quiet=QuietSchedule(hours, validated))
        with (Path(workdir) / "r.jsonl").open("wb") as handle, SqliteLedger(Path(workdir) / "l.sqlite3") as ledger:
            sender = BulkSender(campaign, ledger, ResultsWriter(handle), concurrency=16, progress_interval=0)
            clock.start()
            summary = sender.run(spill, len(people))
        statuses = [json.loads(line)["status"] for line in (Path(workdir) / "r.jsonl").read_text().splitlines()]
    assert summary.accepted + summary.held == 16
    assert 1 <= summary.accepted <= 12  # 4/s for about two seconds
    assert summary.held >= 4
    assert len(emulator.messages()) == summary.accepted == statuses.count("accepted")
    assert summary.next_opening == datetime(2026, 11, 21, 0, tzinfo=UTC).timestamp()


def test_clock_changes_close_the_window_early_never_late() -> None:
    """A start in a skipped hour (New York, 8 March 2026: 02:00 EST becomes 03:00 EDT) and an end in a
    repeated one (1 November 2026: 01:59 EDT becomes 01:00 EST, quiet again until 01:30)."""
    new_york = ZoneInfo("America/New_York")
    gap = QuietHours.parse(("02:30", "08:00"))
    assert gap.closes_in(new_york, datetime(2026, 3, 8, 6, 50, tzinfo=UTC)) <= datetime(2026, 3, 8, 7, tzinfo=UTC)
    fold = QuietHours.parse(("22:00", "01:30"))
    assert fold.closes_in(new_york, datetime(2026, 11, 1, 5, 35, tzinfo=UTC)) <= datetime(2026, 11, 1, 6, tzinfo=UTC)


DST_ZONES = [
    *("America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "America/Havana", "America/Santiago"),
    *("America/Nuuk", "Pacific/Easter", "Europe/London", "Asia/Tehran", "America/St_Johns"),
]


@settings(max_examples=150, deadline=None)
@given(
    zone_name=st.sampled_from(DST_ZONES),
    moment=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)).map(lambda d: d.replace(tzinfo=UTC)),
    start=st.integers(0, 95).map(lambda q: f"{q // 4:02d}:{q % 4 * 15:02d}"),
    end=st.integers(0, 95).map(lambda q: f"{q // 4:02d}:{q % 4 * 15:02d}"),
)
def test_the_window_never_closes_later_than_computed(zone_name: str, moment: datetime, start: str, end: str) -> None:
    """Every minute from an open moment up to ``closes_in`` is open in the zone, clock changes included."""
    try:
        hours = QuietHours.parse((start, end))
    except ConfigurationError:
        return
    zone = ZoneInfo(zone_name)
    if hours.is_quiet(moment.astimezone(zone).time()):
        return
    closes = hours.closes_in(zone, moment)
    minute = moment
    while minute < closes:
        assert not hours.is_quiet(minute.astimezone(zone).time()), (minute, closes)
        minute += timedelta(minutes=1)


def test_an_open_stretch_too_short_to_send_in_is_no_window() -> None:
    """From the review: 30 s open a day (shared by an Australian mobile's zones) was deferred to, day after
    day, forever. Now it counts as no shared window (on_unknown_timezone decides), and a window leaving less
    than five minutes a day is refused."""
    with pytest.raises(ConfigurationError, match="leaves less than"):
        QuietHours.parse(("08:00:30", "08:00"))
    sliver = QuietHours.parse(("12:30:30", "08:00"))  # AU zones span 4.5 h: 30 s shared
    now = datetime(2026, 11, 20, 4, tzinfo=UTC)
    assert sliver.next_open(number_zones("61412345678"), now) is None
    assert opens_at(QuietSchedule(sliver, now, "send"), "61412345678") == (None, False)
    assert opens_at(QuietSchedule(sliver, now, "hold"), "61412345678") == (None, True)


@pytest.mark.parametrize("path", ["send", "recovery"])
def test_a_re_send_of_a_request_in_doubt_stops_when_the_window_closes(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """From a third review: the window was checked only before a newly signed attempt. The first attempt
    is dropped by a reset (in doubt), the backoff runs past the window's end: the re-send, which would be
    the real send, does not go; the message stays unknown (its first copy may have arrived), never texted
    in quiet hours. The same for a retry's recovery replay."""
    from airflow_provider_globesms.client.wire.retry import RetryPolicy

    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt: 3.5)
    emulator.clear()
    hours = QuietHours.parse(("21:00", "08:00"))
    validated = datetime(2026, 11, 20, 12, 58, 58, tzinfo=UTC)  # 20:58:58 in Hong Kong; closes_at 20:59:00
    clock = RunningClock(validated)
    monkeypatch.setattr(quiet_hours, "utc_now", clock)
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
    campaign = Campaign(client, lambda r: "Offer", SCOPE)
    with tempfile.TemporaryDirectory() as workdir, Spill(campaign, workdir) as spill:
        quiet = QuietSchedule(hours, validated)
        validate(campaign, rows_from_records([{"to": "+85291234567"}]), on_row=spill.add, quiet=quiet)
        (message,) = list(spill)
        assert isinstance(message, PreparedMessage)
        with SqliteLedger(Path(workdir) / "l.sqlite3") as ledger, (Path(workdir) / "r.jsonl").open("wb") as handle:
            if path == "recovery":  # an earlier try's worker was killed as its request left
                request = client.sign("SendMessageToGlobe", message.params)
                ledger.write_many([LedgerEntry(message.key, Status.PENDING, 1, message.to, request=request)])
            emulator.set_faults(script=["reset"])
            sender = BulkSender(campaign, ledger, ResultsWriter(handle), progress_interval=0)
            clock.start()
            summary = sender.run(spill, 1)
            (entry,) = list(ledger.entries())
    assert emulator.messages() == []
    assert (summary.unknown, summary.accepted, summary.held) == (1, 0, 0)
    assert entry.status is Status.UNKNOWN
    assert "quiet hours began" in (entry.error or "")
    assert entry.request is not None  # kept: a later try in the window may settle it by replay


def test_an_unknown_no_row_sends_any_more_is_reported_whatever_the_replay_setting(emulator: EmulatorServer) -> None:
    """From the third review: with confirm_by_replay=False, an unknown whose row was removed vanished from
    the next round's summary (only 'pending' entries were looked at), and the task passed."""
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
    campaign = Campaign(client, lambda r: "Offer", SCOPE)
    with tempfile.TemporaryDirectory() as workdir, Spill(campaign, workdir) as spill:
        validate(campaign, rows_from_records([{"to": "+85291234568"}]), on_row=spill.add)
        with SqliteLedger(Path(workdir) / "l.sqlite3") as ledger, (Path(workdir) / "r.jsonl").open("wb") as handle:
            gone = LedgerEntry("k-of-a-removed-row", Status.UNKNOWN, 7, "+852****4567", error="timed out")
            ledger.write_many([gone])
            sender = BulkSender(campaign, ledger, ResultsWriter(handle), confirm_unknown=False, progress_interval=0)
            summary = sender.run(spill, 1)
        lines = [json.loads(line) for line in (Path(workdir) / "r.jsonl").read_text().splitlines()]
    assert (summary.unknown, summary.accepted, summary.total) == (1, 1, 2)
    assert [(line["row"], line["status"]) for line in lines if line["status"] == "unknown"] == [(7, "unknown")]
