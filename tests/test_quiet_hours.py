"""Quiet hours in the recipient's time (issue 14): the window arithmetic, generated over zones, moments and
windows, and a real DAG run (dag.test() on SQLite) that defers to Airflow's DateTimeTrigger between rounds.

The clock is the client core's ``quiet_hours.utc_now``, replaced here; the deferral is real (the trigger runs,
inline in dag.test), and fires at once because the fake moments lie in the past."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from airflow.sdk import DAG
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client.campaign.quiet_hours import QuietHours, QuietSchedule, number_zones
from airflow_provider_globesms.client.errors import ConfigurationError
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.conftest import QuietHoursClock

UTC = timezone.utc
NIGHT = QuietHours(time(21), time(8))
ZONES = [
    *("Asia/Hong_Kong", "Europe/London", "America/New_York", "Australia/Sydney", "Australia/Perth"),
    *("Australia/Adelaide", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham", "America/Los_Angeles"),
]


def opens_at(schedule: QuietSchedule, wire: str, named_zone: str | None = None) -> tuple[datetime | None, bool]:
    """``(None, False)``: send now; ``(when, False)``: held until ``when``; ``(None, True)``: no zone to keep."""
    timing = schedule.timing(wire, named_zone)
    return timing.opens_at, timing.unknown


def test_windows_are_parsed_and_checked() -> None:
    assert QuietHours.parse(("21:00", "08:00")) == NIGHT
    assert QuietHours.parse(["12:30:15", "13:00"]) == QuietHours(time(12, 30, 15), time(13))
    for bad in ("21:00", ("21:00",), ("9pm", "8am"), ("08:00", "08:00")):
        with pytest.raises(ConfigurationError):
            QuietHours.parse(bad)
    moments = [time(23), time(7, 59), time(8), time(20, 59, 59), time(21)]
    assert [NIGHT.is_quiet(moment) for moment in moments] == [True, True, False, False, True]


def test_a_numbers_zones_come_from_its_prefix() -> None:
    assert [z.key for z in number_zones("85291234567")] == ["Asia/Hong_Kong"]
    assert [z.key for z in number_zones("12125550123")] == ["America/New_York"]
    assert len(number_zones("61412345678")) > 3  # an Australian mobile: any of the country's zones
    assert number_zones("88216000000") == ()  # a satellite number: no zone


@settings(max_examples=300, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    start=st.times(),
    minutes=st.integers(30, 16 * 60),
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=4, unique=True),
)
def test_the_next_open_moment_is_open_everywhere_and_not_late(
    now: datetime, start: time, minutes: int, zones: list[str]
) -> None:
    """Across DST changes and half-hour zones: the moment returned is open in every zone, and one second
    earlier (unless it is ``now``) some zone was still quiet - so it is the window's real opening."""
    end = (datetime.combine(now.date(), start) + timedelta(minutes=minutes)).time()
    window = QuietHours(start.replace(microsecond=0), end.replace(microsecond=0))
    if window.start == window.end:
        return
    infos = [ZoneInfo(z) for z in zones]
    opens = window.next_open(infos, now)
    if opens is None:  # no common window within days: only when the zones are far apart for the window
        assert len(zones) > 1
        return
    assert opens >= now
    assert all(not window.is_quiet(opens.astimezone(z).time()) for z in infos)
    if opens > now:
        before = opens - timedelta(seconds=1)
        assert any(window.is_quiet(before.astimezone(z).time()) for z in infos)


def test_a_row_may_name_its_zone_and_an_unknown_one_is_held() -> None:
    noon = datetime(2026, 11, 20, 12, tzinfo=UTC)  # 20:00 in Hong Kong, 07:00 in New York
    schedule = QuietSchedule(NIGHT, noon)
    assert opens_at(schedule, "85291234567") == (None, False)
    assert opens_at(schedule, "85291234567", "America/New_York") == (datetime(2026, 11, 20, 13, tzinfo=UTC), False)
    assert opens_at(schedule, "88216000000") == (None, True)
    assert opens_at(QuietSchedule(NIGHT, noon, on_unknown="send"), "88216000000") == (None, False)
    with pytest.raises(ValueError, match="unknown time zone"):
        opens_at(schedule, "85291234567", "Mars/Olympus_Mons")


# --- in Airflow ---------------------------------------------------------------------------------------

ROUND_1 = datetime(2026, 11, 20, 12, tzinfo=UTC)  # HK 20:00 and London 12:00 open; NY 07:00, Sydney 23:00 quiet
PEOPLE = [
    {"to": "+85291234567", "name": "Hong Kong"},
    {"to": "+447911123456", "name": "London"},
    {"to": "+12125550123", "name": "New York"},  # opens 13:00Z
    # An Australian mobile may be in any zone of +61, the Cocos Islands' (UTC+6:30) included: 01:30Z.
    {"to": "+61412345678", "name": "Australia"},
    {"to": "+85291234568", "name": "Named zone", "tz": "America/Los_Angeles"},  # 04:00 there: opens 16:00Z
]


def promotion(dag_id: str, **options: Any) -> DAG:
    """The DAG these tests run: PEOPLE, quiet from 21:00 to 08:00, a row's ``tz`` winning."""
    with DAG(dag_id, schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="promo",
            recipients=PEOPLE,
            message="Hi {{ recipient.name }}",
            quiet_hours=("21:00", "08:00"),
            tz_field="tz",
            **options,
        )
    return dag


@pytest.fixture
def fake_clock(quiet_hours_clock: Callable[[datetime], QuietHoursClock]) -> list[datetime]:
    """The clock starts at ROUND_1; the moments each deferral waited for are returned."""
    return quiet_hours_clock(ROUND_1).moments


def test_held_recipients_go_when_their_window_opens_each_exactly_once(
    run_dag: Callable[..., Any], globesms_conn: Any, fake_clock: list[datetime]
) -> None:
    emulator = globesms_conn()
    dag_run = run_dag(promotion("quiet_hours_rounds"), logical_date=ROUND_1, run_after=ROUND_1)
    assert task_states(dag_run) == {"promo": "success"}
    assert fake_clock == [
        datetime(2026, 11, 20, 13, tzinfo=UTC),  # New York opens
        datetime(2026, 11, 20, 16, tzinfo=UTC),  # Los Angeles (the row's own zone)
        datetime(2026, 11, 21, 1, 30, tzinfo=UTC),  # every zone of an Australian mobile
    ]
    assert Counter(m["to"] for m in emulator.messages()) == Counter(p["to"].lstrip("+") for p in PEOPLE)
    (summary,) = xcom_values(dag_run, "promo")
    assert (summary["accepted"], summary["held"], summary["total"]) == (5, 0, 5)
    assert [(r["sent"], r["held"]) for r in summary["quiet_hours_rounds"]] == [(2, 3), (1, 2), (1, 1), (1, 0)]


def test_unknown_zones_are_held_and_the_task_says_so(
    run_dag: Callable[..., Any], globesms_conn: Any, fake_clock: list[datetime]
) -> None:
    emulator = globesms_conn()
    rows = [{"to": "+85291234567"}, {"to": "+88216000000"}]  # a satellite number: no time zone
    with DAG("quiet_hours_unknown", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="hold", recipients=rows, message="Hi", quiet_hours=("21:00", "08:00"), tz_field="tz", retries=0
        )
        SendGlobeSmsOperator(
            task_id="skip",
            recipients=[{"to": "+88216000001"}],
            message="Hi",
            quiet_hours=("21:00", "08:00"),
            tz_field="tz",
            on_unknown_timezone="skip",
        )
    dag_run = run_dag(dag, logical_date=ROUND_1, run_after=ROUND_1)
    assert task_states(dag_run) == {"hold": "failed", "skip": "success"}
    assert [m["to"] for m in emulator.messages()] == ["85291234567"]
    (skipped,) = xcom_values(dag_run, "skip")
    assert (skipped["held"], skipped["accepted"]) == (1, 0)


def test_a_task_ended_by_an_arrival_also_names_the_unknown_zones_it_held(
    run_dag: Callable[..., Any], globesms_conn: Any, fake_clock: list[datetime], capfd: Any
) -> None:
    """An arrival ends the task before the time-zone check would: its failure says both (found by a helper's
    review: the unknown zones went unmentioned)."""
    emulator = globesms_conn()
    emulator.set_faults(script=["internal_error"])  # the one sendable message arrives, its answer lost
    rows = [{"to": "+85291234567"}, {"to": "+88216000000"}]  # a satellite number: no time zone
    with DAG("quiet_hours_unknown_arrived", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="hold", recipients=rows, message="Hi", quiet_hours=("21:00", "08:00"), tz_field="tz", retries=0
        )
    dag_run = run_dag(dag, logical_date=ROUND_1, run_after=ROUND_1)
    assert task_states(dag_run) == {"hold": "failed"}
    (summary,) = xcom_values(dag_run, "hold", key="summary")
    assert (summary["arrived"], summary["held"]) == (1, 1)
    logged = capfd.readouterr().out
    assert "1 arrived at the API" in logged
    assert "1 message(s) not sent: the recipient's time zone is unknown" in logged
    assert len(emulator.messages()) == 1


def test_a_worker_killed_after_resumption_resends_nobody(
    run_dag: Callable[..., Any], globesms_conn: Any, fake_clock: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task is killed right after the round that follows the first deferral has sent (before it could
    defer again); Airflow retries it: the retry sends only who was never sent, then defers on as before."""
    from airflow_provider_globesms.client.bulk import BulkSender

    emulator = globesms_conn()
    original, calls = BulkSender.run, []

    def run_then_die(self: BulkSender, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        summary = original(self, *args, **kwargs)
        if len(calls) == 2:
            raise RuntimeError("worker killed after the resumed round sent")
        return summary

    monkeypatch.setattr(BulkSender, "run", run_then_die)
    dag = promotion("quiet_hours_killed", retries=1, retry_delay=timedelta(0))
    dag_run = run_dag(dag, logical_date=ROUND_1, run_after=ROUND_1)
    assert task_states(dag_run) == {"promo": "success"}
    assert len(calls) == 5  # round 1, the killed round 2, then the retry's rounds 2, 3 and 4
    assert Counter(m["to"] for m in emulator.messages()) == Counter(p["to"].lstrip("+") for p in PEOPLE)
    (summary,) = xcom_values(dag_run, "promo")
    assert (summary["accepted"], summary["held"]) == (5, 0)


def test_an_unknown_outcome_waits_for_the_held_ones_then_fails(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., Any],
    fake_clock: list[datetime],
) -> None:
    """Round 1 leaves one message unknown (accepted, its answer never came, no replay asked): the task still
    defers and sends each held recipient when its window opens, and only then fails naming the unknown
    one. Before, it failed at once in every round, and retries never reached the held recipients."""
    emulator = globesms_conn(timeout=2)  # not less: a normal reply on a loaded machine must not time out too
    emulator.set_faults(script=["hang"], hang_seconds=5)
    try:
        dag = promotion("quiet_hours_unknown_outcome", confirm_by_replay=False, retries=0)
        dag_run = run_dag(dag, logical_date=ROUND_1, run_after=ROUND_1)
    finally:
        emulator.set_faults(hang_seconds=30)
    assert task_states(dag_run) == {"promo": "failed"}
    assert len(fake_clock) == 3  # every window waited for
    assert Counter(m["to"] for m in emulator.messages()) == Counter(p["to"].lstrip("+") for p in PEOPLE)
    (summary,) = xcom_values(dag_run, "promo", key="summary")
    assert (summary["unknown"], summary["held"]) == (1, 0)
    assert [r["held"] for r in summary["quiet_hours_rounds"]] == [3, 2, 1, 0]
