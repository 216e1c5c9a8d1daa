"""Alert storm control (client/alerts): each alert once, one text per window per recipient, one digest.

The promises, tried hardest: every alert is reported in exactly one text (its own, or a digest's count);
two texts to one person are never closer than the window (by the store's clock); a callback run again
sends nothing; racers (many callbacks, a sweeper, a second sweeper) settle on one text; workers whose
clocks are 30 s apart agree; the store failing at any step never silences an alert.
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client.alerts import (
    Alert,
    LocalAlertStore,
    ObjectAlertStore,
    Route,
    StormControl,
    Text,
    Verdict,
    backlog_text,
    muted_text,
)
from airflow_provider_globesms.client.alerts.storm import TAKEOVER
from airflow_provider_globesms.client.rules.segments import count_segments

ALICE, BOB = "+85291234567", "+447911123456"


def alert(n: int, label: str = "etl.load", custom: bool = False) -> Alert:
    return Alert(
        key=f"task|etl|load|run-1|1|{n}|failed|",
        label=label,
        head=f"{label} failed (try 1)",
        text=f"Airflow: {label} failed (try 1) run-1 host:8080/dags/etl/runs/run-1",
        link="host:8080/dags/etl",
        custom=custom,
    )


@dataclass
class Clock:
    """The store's clock under the test's control (the algorithm reads no other)."""

    t: float = 1_800_000_000.0


class ClockedStore(LocalAlertStore):
    """A real local store whose stamps come from ``Clock`` (non-decreasing, as a store's are)."""

    def __init__(self, root: Path, clock: Clock) -> None:
        super().__init__(root)
        self.clock = clock

    def create(self, name: str, record: dict[str, Any]) -> float | None:
        return None if super().create(name, record) is None else self.clock.t

    def now(self) -> float:
        return self.clock.t


@dataclass
class Phone:
    """What one recipient received: (store time, text)."""

    texts: list[tuple[float, Text]] = field(default_factory=list)


def only_digest(storm: StormControl) -> Text:
    """The one text a sweep sends now (a sweep that sends none, or more, fails the test)."""
    (verdict,) = storm.sweep()
    assert verdict.text is not None, verdict.reason
    return verdict.text


def deliver(verdicts: list[Verdict], phones: dict[str, Phone], at: float) -> None:
    for verdict in verdicts:
        if verdict.text is not None:
            phones.setdefault(verdict.text.route.to, Phone()).texts.append((at, verdict.text))


def test_fifty_alerts_at_once_make_one_text_now_and_one_digest(tmp_path: Path) -> None:
    storm = StormControl(LocalAlertStore(tmp_path))
    route = Route(to=ALICE, conn_id="c", window=1.0)
    verdicts: list[Verdict] = []
    threads = [threading.Thread(target=lambda n=n: verdicts.append(storm.admit(alert(n), route))) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = [v.text for v in verdicts if v.text]
    assert len(sent) == 1
    assert sent[0].kind == "alert"
    assert sent[0].alerts == 1
    assert Counter(v.reason.split(" ")[0] for v in verdicts if not v.text) == {"folded": 49}
    assert storm.sweep() == []  # not yet: the window is open
    time.sleep(1.1)
    digest = only_digest(storm)
    assert digest.alerts == 49
    assert digest.body.startswith("Airflow: +49 more since ")
    assert "etl.load x49 host:8080/dags/etl" in digest.body
    assert storm.sweep() == []  # once


def test_a_callback_run_again_sends_nothing(tmp_path: Path) -> None:
    storm = StormControl(LocalAlertStore(tmp_path))
    route = Route(to=ALICE, conn_id="c", window=0.0)  # no window: only the duplicate is held back
    assert storm.admit(alert(1), route).text is not None
    again = storm.admit(alert(1), route)
    assert again.text is None
    assert again.reason.startswith("already alerted")
    assert storm.admit(alert(2), route).text is not None


def test_a_callback_run_again_across_midnight_sends_nothing(tmp_path: Path) -> None:
    clock = Clock(t=1_800_057_599.0)  # 23:59:59 UTC
    storm = StormControl(ClockedStore(tmp_path, clock))
    assert storm.admit(alert(1), Route(to=ALICE, conn_id="c")).text is not None
    clock.t += 2
    assert storm.admit(alert(1), Route(to=ALICE, conn_id="c")).text is None


def test_two_failures_in_separate_windows_are_two_alerts_and_no_digest(tmp_path: Path) -> None:
    clock = Clock()
    storm = StormControl(ClockedStore(tmp_path, clock))
    route = Route(to=ALICE, conn_id="c", window=600)
    first = storm.admit(alert(1), route)
    clock.t += 601
    assert storm.sweep() == []  # nothing folded: no digest due
    second = storm.admit(alert(2), route)
    assert [first.text and first.text.body, second.text and second.text.body] == [alert(1).text, alert(2).text]


def test_an_alert_after_the_window_carries_its_backlog_in_one_text(tmp_path: Path) -> None:
    clock = Clock()
    storm = StormControl(ClockedStore(tmp_path, clock))
    route = Route(to=ALICE, conn_id="c", window=600)
    storm.admit(alert(1), route)
    for n in range(2, 5):
        clock.t += 10
        assert storm.admit(alert(n, "etl.transform"), route).text is None
    clock.t += 600
    verdict = storm.admit(alert(9), route)
    assert verdict.text is not None
    assert verdict.text.alerts == 4
    assert verdict.text.body.startswith("Airflow: etl.load failed (try 1) +3 more since ")
    assert storm.sweep() == []  # the backlog went with it: no digest as well


def test_each_recipient_has_its_own_window(tmp_path: Path) -> None:
    storm = StormControl(LocalAlertStore(tmp_path))
    for to in (ALICE, BOB):
        assert storm.admit(alert(1), Route(to=to, conn_id="c", window=600)).text is not None
    assert storm.admit(alert(2), Route(to=ALICE, conn_id="c", window=600)).text is None


def test_the_daily_cap_sends_one_muted_text_then_silence(tmp_path: Path) -> None:
    clock = Clock(t=1_800_000_000.0)  # 08:00 UTC
    storm = StormControl(ClockedStore(tmp_path, clock))
    route = Route(to=ALICE, conn_id="c", window=60, daily_cap=2)
    kinds = []
    for n in range(5):
        verdict = storm.admit(alert(n), route)
        kinds.append(verdict.text.kind if verdict.text else verdict.reason.split(":")[0])
        clock.t += 61
    assert kinds == ["alert", "alert", "muted", "muted", "muted"]
    assert storm.admit(alert(9), route).reason.startswith("muted")
    clock.t += 86400  # the next day
    assert storm.admit(alert(10), route).text is not None


def test_the_muted_text_says_until_when() -> None:
    text = muted_text(1_800_057_600.0, 20, alert(1))
    assert text.startswith("Airflow: 20 alert texts today, the daily cap: muted until 2027-01-16 00:00 UTC.")
    assert count_segments(text).segments == 1


def test_a_digest_fits_one_segment_dropping_the_rarest_labels_first() -> None:
    backlog: list[dict[str, object]] = [
        {"label": f"warehouse_nightly.task_{n:02d}", "link": "airflow.example.com/dags/warehouse_nightly"}
        for n in range(30)
    ]
    backlog += [{"label": "warehouse_nightly.load", "link": "airflow.example.com/dags/warehouse_nightly"}] * 5
    text = backlog_text(None, backlog, 1_800_000_000.0)
    assert count_segments(text).segments == 1
    assert count_segments(text).encoding == "GSM-7"
    assert text.startswith("Airflow: +35 more since 08:00 UTC: warehouse_nightly.load x5, ")
    assert text.endswith(", ... airflow.example.com/dags/warehouse_nightly")


def test_a_custom_message_leads_its_backlog_as_written() -> None:
    lead = Alert(key="k", label="etl.load", head="etl.load failed", text="DB is down, page Ana", custom=True)
    text = backlog_text(lead, [{"label": "etl.x", "link": None}], 1_800_000_000.0)
    assert text == "DB is down, page Ana +1 more since 08:00 UTC: etl.x x1"


def test_a_window_that_cannot_be_opened_does_not_block_the_others(tmp_path: Path) -> None:
    """A window sealed with a key that is gone (a rotation without the old key kept): logged, skipped; the
    other recipients' digests still go."""

    def unseal(sealed: str) -> str:
        if sealed == "sealed:" + BOB:
            raise ValueError("InvalidToken: sealed with another key")
        return sealed.removeprefix("sealed:")

    storm = StormControl(LocalAlertStore(tmp_path), seal=lambda n: "sealed:" + n, unseal=unseal)
    for to in (BOB, ALICE):
        for n in range(3):
            storm.admit(alert(n), Route(to=to, conn_id="c", window=0.3))
    time.sleep(0.35)
    assert only_digest(storm).route.to == ALICE
    assert storm.sweep() == []  # Bob's window stays due (logged each sweep), Alice's went once


# Generated schedules: alerts (some repeated), sweeps and clock steps, for three recipients. The model checks
# every alert is reported exactly once, and texts to one recipient are at least a window apart.
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("alert"), st.integers(0, 2), st.integers(0, 12)),
        st.tuples(st.just("sweep"), st.just(0), st.just(0)),
        st.tuples(st.just("wait"), st.just(0), st.integers(1, 400)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS, window=st.sampled_from([0.0, 60.0, 300.0]))
def test_generated_schedules_report_every_alert_once_and_keep_the_window(
    tmp_path_factory: pytest.TempPathFactory, events: list[tuple[str, int, int]], window: float
) -> None:
    clock = Clock()
    storm = StormControl(ClockedStore(tmp_path_factory.mktemp("storm"), clock))
    numbers = [ALICE, BOB, "+61412345678"]
    phones: dict[str, Phone] = {}
    raised: dict[str, set[int]] = {}
    for kind, who, value in events:
        if kind == "alert":
            raised.setdefault(numbers[who], set()).add(value)
            deliver([storm.admit(alert(value), Route(to=numbers[who], conn_id="c", window=window))], phones, clock.t)
        elif kind == "sweep":
            deliver(storm.sweep(), phones, clock.t)
        clock.t += value if kind == "wait" else 0.5
    clock.t += window + 1
    deliver(storm.sweep(), phones, clock.t)  # the last windows end: their digests go
    for number, alerts in raised.items():
        texts = phones[number].texts
        assert sum(text.alerts for _, text in texts) == len(alerts)  # each alert once, none lost
        times = [at for at, _ in texts]
        assert all(later - earlier >= window for earlier, later in itertools.pairwise(times))
    assert set(phones) <= set(raised)


def _admit_in_threads(storm: StormControl, jobs: list[tuple[Alert | None, Route | None]]) -> list[Verdict]:
    """Run admits (and sweeps, for a job of None) at once, released together by a barrier."""
    barrier, verdicts, lock = threading.Barrier(len(jobs)), [], threading.Lock()

    def run(job: tuple[Alert | None, Route | None]) -> None:
        barrier.wait()
        found = storm.sweep() if job[0] is None else [storm.admit(job[0], job[1])]  # type: ignore[arg-type]
        with lock:
            verdicts.extend(found)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return verdicts


@pytest.mark.parametrize("store_kind", ["local", "object"])
def test_a_digest_racing_new_alerts_and_a_second_sweeper_goes_once(tmp_path: Path, store_kind: str) -> None:
    """At the end of a window: two sweepers and four new alerts at once. One text carries the backlog."""
    from airflow.sdk import ObjectStoragePath

    for attempt in range(5):
        store = (
            LocalAlertStore(tmp_path / str(attempt))
            if store_kind == "local"
            else ObjectAlertStore(ObjectStoragePath(f"memory://storm-race-{attempt}/alerts"))
        )
        storm = StormControl(store)
        route = Route(to=ALICE, conn_id="c", window=0.5)
        storm.admit(alert(0), route)
        for n in range(1, 6):
            assert storm.admit(alert(n), route).text is None
        time.sleep(0.6)
        jobs: list[tuple[Alert | None, Route | None]] = [(None, None), (None, None)]
        jobs += [(alert(n), route) for n in range(10, 14)]
        texts = [v.text for v in _admit_in_threads(storm, jobs) if v.text]
        time.sleep(0.6)
        texts += [v.text for v in storm.sweep() if v.text]
        assert sum(t.alerts for t in texts) == 9, (attempt, [t.body for t in texts])  # 5 folded + 4 new
        assert len(texts) <= 2  # the backlog with the first, and at most one digest of the rest
        assert any((t.body.count("+") and "x5" in t.body) or "+5 more" in t.body for t in texts)


def _admit_with_a_skewed_clock(root: str, skew: float, n: int, queue: Any) -> None:
    real = time.time
    time.time = lambda: real() + skew  # this worker's clock is wrong; the store's is not
    storm = StormControl(LocalAlertStore(root))
    verdict = storm.admit(alert(n), Route(to=ALICE, conn_id="c", window=3.0))
    queue.put((n, verdict.text.body if verdict.text else None, verdict.reason))


def test_workers_whose_clocks_are_30_s_apart_agree_on_the_window(tmp_path: Path) -> None:
    """Worker A's clock is right, B's 30 s ahead, C's 30 s behind: B's alert one second after A's folds (its
    own clock would say the window ended long ago), and C's after the window ends carries the backlog."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    for n, skew, pause in ((1, 0.0, 1.0), (2, 30.0, 2.5), (3, -30.0, 0.0)):
        worker = context.Process(target=_admit_with_a_skewed_clock, args=(str(tmp_path), skew, n, queue))
        worker.start()
        worker.join(30)
        assert worker.exitcode == 0
        time.sleep(pause)
    results = {n: (body, reason) for n, body, reason in (queue.get(timeout=5) for _ in range(3))}
    assert results[1][0] == alert(1).text
    assert results[2][0] is None
    assert results[2][1].startswith("folded")
    assert results[3][0] is not None
    assert results[3][0].startswith("Airflow: etl.load failed (try 1) +1 more since")


class FailingStore(ClockedStore):
    """A store that fails from its ``fail_at``-th operation on (the store going away mid-alert)."""

    def __init__(self, root: Path, clock: Clock, fail_at: int) -> None:
        super().__init__(root, clock)
        self.calls, self.fail_at = 0, fail_at

    def _tick(self) -> None:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise OSError("the alerts store is unreachable")

    def create(self, name: str, record: dict[str, Any]) -> float | None:
        self._tick()
        return super().create(name, record)

    def read(self, name: str) -> dict[str, Any] | None:
        self._tick()
        return super().read(name)

    def children(self, folder: str) -> list[str]:
        self._tick()
        return super().children(folder)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fail_at=st.integers(1, 45), before=st.integers(0, 4), late=st.booleans())
def test_a_store_failing_at_any_step_never_silences_an_alert(
    tmp_path_factory: pytest.TempPathFactory, fail_at: int, before: int, late: bool
) -> None:
    """As the notifier does: a store error sends the alert as it is. Every alert is reported (the window's
    backlog too, by a later sweep), at most the failing one twice; with no failure, each exactly once."""
    root, clock = tmp_path_factory.mktemp("failing"), Clock()
    route = Route(to=ALICE, conn_id="c", window=60)
    healthy = StormControl(ClockedStore(root, clock))
    reported = sum(v.text.alerts for n in range(before) if (v := healthy.admit(alert(n), route)).text)
    clock.t += 61 if late else 1  # the failing alert comes after the window, or inside it
    failing = FailingStore(root, clock, fail_at)
    try:
        verdict = StormControl(failing).admit(alert(99), route)
        failed = False
    except OSError:
        verdict, failed = Verdict(Text(route, alert(99).text, 1, "alert"), "sent as it is"), True
    reported += verdict.text.alerts if verdict.text else 0
    clock.t += TAKEOVER + 61  # every window ends; a closer that died is taken over
    reported += sum(v.text.alerts for v in healthy.sweep() if v.text)
    if failed:
        assert before + 1 <= reported <= before + 2
    else:
        assert reported == before + 1


def test_a_callback_run_twice_either_side_of_midnight_is_one_alert(tmp_path: Path) -> None:
    """Run A reads the clock at 23:59:59.9 and stalls before its claim; run B, at 00:00:00.1, claims and
    sends; A then finds the alert claimed (claims have one name, whatever the day)."""

    class Pausing(ClockedStore):
        def create(self, name: str, record: dict[str, Any]) -> float | None:
            if threading.current_thread().name == "A" and "/seen/" in name:
                paused.set()
                resume.wait(10)
            return super().create(name, record)

    clock = Clock(t=1_800_057_599.9)
    storm = StormControl(Pausing(tmp_path, clock))
    route = Route(to=ALICE, conn_id="c", window=0)
    paused, resume = threading.Event(), threading.Event()
    verdicts: dict[str, Verdict] = {}
    run_a = threading.Thread(target=lambda: verdicts.update(A=storm.admit(alert(1), route)), name="A")
    run_a.start()
    assert paused.wait(10)
    clock.t = 1_800_057_600.1
    verdicts["B"] = storm.admit(alert(1), route)
    resume.set()
    run_a.join()
    assert sorted(v.text is not None for v in verdicts.values()) == [False, True]


def test_windows_and_claims_are_kept_two_days_then_forgotten(tmp_path: Path) -> None:
    """Never deleted under a process that may still be at work in them (a stalled one); gone after two days."""
    clock = Clock()
    storm = StormControl(ClockedStore(tmp_path, clock))
    route = Route(to=ALICE, conn_id="c", window=0)
    for n in range(6):
        storm.admit(alert(n), route)
        clock.t += 1
    folder = tmp_path / storm.folder(ALICE)
    assert len(list(folder.glob("w-*"))) == 6  # all young: kept
    assert storm.admit(alert(0), route).text is None  # claimed
    clock.t += 3 * 86400
    assert storm.admit(alert(100), route).text is not None
    assert sorted(p.name for p in folder.glob("w-*")) == ["w-00000005", "w-00000006", "w-00000007"]
    assert [p.name for p in (folder / "seen").glob("*.json")] == [f"{alert(100).digest}.json"]  # old: forgotten


def test_the_sweeper_never_closes_a_window_before_it_ends(tmp_path: Path) -> None:
    clock = Clock(t=1_800_000_000.0)
    storm = StormControl(ClockedStore(tmp_path, clock))
    route = Route(to=ALICE, conn_id="c", window=600.0004)  # the due mark's name is in milliseconds
    storm.admit(alert(0), route)
    storm.admit(alert(1), route)
    clock.t += 600.0002  # past the millisecond the name rounds to, not past closes_at
    assert storm.sweep() == []
    assert storm.admit(alert(2), route).text is None  # still folds
    clock.t += 1
    assert only_digest(storm).alerts == 2


def test_sweep_settles_one_window_at_a_time_when_asked(tmp_path: Path) -> None:
    """The sweeper sends each digest before it settles the next: a stop costs one digest at most."""
    clock = Clock()
    storm = StormControl(ClockedStore(tmp_path, clock))
    for to in (ALICE, BOB, "+61412345678"):
        for n in range(3):
            storm.admit(alert(n), Route(to=to, conn_id="c", window=60))
    clock.t += 61
    settled = [storm.sweep(limit=1) for _ in range(4)]
    assert [len(batch) for batch in settled] == [1, 1, 1, 0]
    assert sorted(batch[0].text.route.to for batch in settled[:3] if batch[0].text) == sorted(
        [ALICE, BOB, "+61412345678"]
    )


def test_an_object_that_cannot_be_read_back_is_never_taken_for_someone_elses(tmp_path: Path) -> None:
    """A PUT that landed but cannot be read back: whose it is is unknown, so the store raises (the notifier
    then sends the alert as it is) rather than answer "already claimed" and silence it."""
    from airflow.sdk import ObjectStoragePath

    class Unreadable(ObjectAlertStore):
        def read(self, name: str) -> dict[str, Any] | None:
            return None if "/seen/" in name else super().read(name)

    storm = StormControl(Unreadable(ObjectStoragePath("memory://readback/alerts")))
    with pytest.raises(OSError, match="cannot be read back"):
        storm.admit(alert(1), Route(to=ALICE, conn_id="c"))


def test_a_long_custom_message_leads_its_backlog_by_its_head() -> None:
    long = Alert(key="k", label="etl.load", head="etl.load failed (try 1)", text="x" * 1995, custom=True)
    text = backlog_text(long, [{"label": "etl.x", "link": None}] * 3, 1_800_000_000.0)
    assert text == "Airflow: etl.load failed (try 1) +3 more since 08:00 UTC: etl.x x3"


class Killed(BaseException):
    """A task process killed mid-callback (Airflow's heartbeat timeout kills it, then reruns the callback)."""


def test_a_callback_killed_after_its_claim_is_placed_by_its_rerun(tmp_path: Path) -> None:
    """Killed between claiming the alert and folding it: a rerun within 10 s leaves it to the first run (it
    may be alive); after, the rerun takes over and places it. Every alert reported once."""

    class KillAtFold(ClockedStore):
        kill = True

        def create(self, name: str, record: dict[str, Any]) -> float | None:
            if self.kill and "alert" in record and "/w-" in name:
                raise Killed
            return super().create(name, record)

    clock = Clock()
    store = KillAtFold(tmp_path, clock)
    storm = StormControl(store)
    route = Route(to=ALICE, conn_id="c", window=600)
    store.kill = False
    storm.admit(alert(0), route)  # opens the window
    store.kill = True
    with pytest.raises(Killed):
        storm.admit(alert(1), route)
    store.kill = False
    clock.t += 5
    assert storm.admit(alert(1), route).reason.startswith("already alerted")  # the first may still be at work
    clock.t += 6
    assert storm.admit(alert(1), route).reason.startswith("folded")  # taken over
    assert storm.admit(alert(1), route).reason.startswith("already alerted")  # and done
    clock.t += 600
    assert only_digest(storm).alerts == 1


def test_a_takeover_finds_an_alert_placed_by_a_slow_first_run(tmp_path: Path) -> None:
    clock = Clock()
    storm = StormControl(ClockedStore(tmp_path, clock))
    route = Route(to=ALICE, conn_id="c", window=600)
    storm.admit(alert(0), route)
    storm.admit(alert(1), route)
    (tmp_path / storm.folder(ALICE) / "seen" / f"{alert(1).digest}.done").unlink()  # placed, not yet marked
    clock.t += 11
    assert storm.admit(alert(1), route).reason.startswith("already alerted")
    clock.t += 600
    assert only_digest(storm).alerts == 1
