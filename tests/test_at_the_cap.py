"""At the cap and never above it, and the faster validation pass saying exactly what the slower one said.

The pacing is simulated on a clock of our own (callers waking late, the loop stalling), so the promise is
checked on generated schedules rather than timed on a noisy machine; the speed itself is measured by
``bench/bulk_send.py``. Every shortcut of the validation pass is compared with what it replaced.
"""

from __future__ import annotations

import gc
import heapq
import random
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import Credentials, GlobeSmsClient, InvalidFieldError, mask_number, parse_number
from airflow_provider_globesms.client.bulk import (
    Campaign,
    Deduplicator,
    PreparedMessage,
    RowError,
    Suppressed,
    existing_objects_frozen,
    prepare,
    validate,
)
from airflow_provider_globesms.client.campaign.budget import Budget, region_of
from airflow_provider_globesms.client.ledger.sqlite_ledger import message_key
from airflow_provider_globesms.client.rules.phone import read_international
from airflow_provider_globesms.client.wire.http11 import ReplyParser
from airflow_provider_globesms.client.wire.ratelimit import CATCH_UP, RateLimiter
from airflow_provider_globesms.client.wire.signing import percent_encode

# --- the limiter, on a simulated clock ----------------------------------------------------------------


class Loop:
    """Callers that pace, then pass the guard, on a clock of our own; the loop may wake them late or stall."""

    def __init__(self, seed: int, stalls: list[tuple[float, float]], lateness: float, in_flight: float = 0.0) -> None:
        self.now = 0.0
        self.random = random.Random(seed)
        self.stalls = sorted(stalls)  # (start, length): nobody runs inside
        self.lateness = lateness
        self.in_flight = in_flight  # how long a caller's request is out before it paces its next one
        self.events: list[tuple[float, int, str]] = []
        self.admitted: list[float] = []

    def clock(self) -> float:
        return self.now

    def wake_at(self, moment: float) -> float:
        moment += self.random.uniform(0, self.lateness)
        for start, length in self.stalls:
            if start <= moment < start + length:
                moment = start + length
        return moment

    def run(self, limiter: RateLimiter, callers: int, until: float) -> list[float]:
        for caller in range(callers):
            heapq.heappush(self.events, (0.0, caller, "pace"))
        while self.events:
            self.now, caller, step = heapq.heappop(self.events)
            if self.now >= until:
                break
            if step == "pace":
                heapq.heappush(self.events, (self.wake_at(self.now + limiter.reserve()), caller, "admit"))
                continue
            wait = limiter._admit()  # the guard, right before the request is written
            if wait > 0:  # a real sleep always moves the clock on, however short
                heapq.heappush(self.events, (self.wake_at(self.now + max(wait, 1e-6)), caller, "admit"))
            else:
                self.admitted.append(self.now)
                heapq.heappush(self.events, (self.wake_at(self.now + self.in_flight), caller, "pace"))  # its next
        return self.admitted


def busiest_second(times: list[float]) -> int:
    """The most moments in any [t, t + 1 s), as the neutral server counts."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


schedules = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "rate": st.sampled_from([20.0, 300.0, 2000.0]),
        "headroom": st.sampled_from([0.0, 0.005, 0.02]),
        "lateness": st.floats(0, 0.05),
        "stalls": st.lists(st.tuples(st.floats(0, 3.0), st.floats(0, 0.5)), max_size=6),
        "callers": st.integers(1, 64),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules)
def test_no_one_second_window_ever_holds_more_than_the_cap(schedule: dict[str, Any]) -> None:
    loop = Loop(schedule["seed"], schedule["stalls"], schedule["lateness"])
    limiter = RateLimiter(schedule["rate"], schedule["headroom"], clock=loop.clock)
    admitted = loop.run(limiter, schedule["callers"], until=3.5)
    assert busiest_second(admitted) <= limiter.cap <= schedule["rate"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 7), max_size=5, unique=True), st.floats(0.001, 0.08))
def test_short_stalls_are_made_up_so_the_average_stays_at_the_pace(seed: int, halves: list[int], length: float) -> None:
    """The sender's shape: requests out for 200 ms, a few more callers than that keeps busy, the loop stalling
    now and then for less than CATCH_UP. The slots a stall missed are taken afterwards, so four seconds hold
    what the pacing promises, less a stall at the very end."""
    rate, headroom = 2000.0, 0.005
    loop = Loop(seed, [(half / 2, length) for half in halves], lateness=0.0005, in_flight=0.2)
    limiter = RateLimiter(rate, headroom, clock=loop.clock)
    admitted = loop.run(limiter, callers=430, until=4.0)
    paced = 4.0 * rate * (1 - headroom)
    assert len(admitted) >= paced - rate * (length + 0.002) - 2
    assert busiest_second(admitted) <= limiter.cap


def test_an_idle_limiter_lends_no_more_than_the_catch_up() -> None:
    clock = [100.0]
    limiter = RateLimiter(1000.0, clock=lambda: clock[0])
    free = 0
    while limiter.reserve() == 0.0:
        free += 1
    assert free == pytest.approx(1000 * CATCH_UP, abs=2)  # a burst of at most rate x CATCH_UP


# --- one parse per number -----------------------------------------------------------------------------


def example_numbers() -> list[str]:
    """Every example phonenumbers has, of every region and type, as digits after "+"."""
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:])
    return found


def parsed_either_way(digits: str) -> tuple[Any, Any]:
    def attempt(read: Any) -> Any:
        try:
            return read()
        except phonenumbers.NumberParseException as exc:
            return ("refused", exc.error_type)

    return attempt(lambda: phonenumbers.parse("+" + digits, None)), attempt(lambda: read_international(digits))


@settings(max_examples=3000, deadline=None)
@given(st.integers(1, 999), st.text("0123456789", max_size=18))
def test_the_short_read_of_plus_digits_is_phonenumbers_own(code: int, rest: str) -> None:
    ours, theirs = parsed_either_way(f"{code}{rest}")
    assert ours == theirs


def test_the_short_read_agrees_on_every_example_number_and_with_leading_zeros() -> None:
    cases = [*example_numbers(), "3900612345678", "39000", "3906", "2250700000000", "44000000000", "000123"]
    for digits in cases:
        ours, theirs = parsed_either_way(digits)
        assert ours == theirs, digits


def test_the_country_found_while_validating_is_the_budgets_own() -> None:
    checked = 0
    for digits in example_numbers():
        try:
            number = parse_number("+" + digits)
        except InvalidFieldError:  # +86, or a number the API cannot reach: the budget never sees it
            checked -= 1
        else:
            assert number.country == region_of(number.wire), digits
        checked += 1
    assert checked > 1000


# --- the batched dedupe, and the pass around it -------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcdefgh"), max_size=60), st.lists(st.integers(1, 7), min_size=1, max_size=20))
def test_batched_look_ups_find_what_one_by_one_would(keys: list[str], sizes: list[int]) -> None:
    expected: list[int | None] = []
    first: dict[str, int] = {}
    for row, key in enumerate(keys):
        expected.append(first.get(key))
        first.setdefault(key, row)
    seen, found, at, turn = Deduplicator(), [], 0, 0
    try:
        while at < len(keys):
            size = sizes[turn % len(sizes)]
            digests = [(message_key(("s",), "85291234567", key), row) for row, key in enumerate(keys)]
            found += seen.first_rows(digests[at : at + size])
            at, turn = at + size, turn + 1
    finally:
        seen.close()
    assert found == expected
    one_by_one = Deduplicator()
    try:
        assert [one_by_one.first_row(key, row) for row, key in enumerate(keys)] == expected
    finally:
        one_by_one.close()


@pytest.fixture
def campaign() -> Iterator[Campaign]:
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint="http://127.0.0.1:9")
    yield Campaign(client, lambda row: f"Hi {row['name']}", ("dag", "run", "task", "-1"))
    client.close()


rows = st.lists(
    st.tuples(
        st.sampled_from(["+85291234567", "+85291234568", "+447911123456", "+1 212 555 0123", "12", ""]),
        st.sampled_from(["Ann", "Bo"]),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows, batch=st.integers(1, 9))
def test_the_pass_in_batches_says_row_by_row_what_it_said_before(
    campaign: Campaign, data: list[tuple[str, str]], batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outcomes in the rows' order, duplicates named by their first row, suppressed ones never duplicates,
    the same counts and budget: whatever the batch size."""
    records = [(n + 1, {"to": to, "name": name}) for n, (to, name) in enumerate(data)]
    suppressed = {"447911123456"}

    def run(size: int) -> tuple[list[Any], Any, dict[str, int]]:
        monkeypatch.setattr(prepare, "BATCH", size)
        seen: list[Any] = []
        budget = Budget()
        report = validate(campaign, records, on_row=seen.append, suppression=suppressed, budget=budget)
        return seen, (report.valid, report.invalid, report.suppressed), dict(budget.recipients)

    outcomes, counts, budget = run(batch)
    assert (outcomes, counts, budget) == run(10_000)
    firsts: dict[str, int] = {}
    for outcome in outcomes:
        if isinstance(outcome, PreparedMessage):
            assert outcome.key not in firsts
            firsts[outcome.key] = outcome.row
        elif isinstance(outcome, RowError) and "same number and text as row" in outcome.reason:
            assert int(outcome.reason.rsplit(" ", 1)[1]) in firsts.values()
        elif isinstance(outcome, Suppressed):
            assert outcome.message.to in suppressed


def test_rows_read_before_a_failure_are_reported_as_one_by_one(campaign: Campaign) -> None:
    """A source that fails after 1,500 rows, and a renderer that raises at row 2: every row before the
    failure still reaches ``on_row``, in order, then the error propagates."""

    def failing_source() -> Iterator[tuple[int, dict[str, str]]]:
        for n in range(1500):
            yield n + 1, {"to": f"+8526{n:07d}", "name": "Ann"}
        raise RuntimeError("the warehouse went away")

    seen: list[Any] = []
    with pytest.raises(RuntimeError, match="warehouse"):
        validate(campaign, failing_source(), on_row=seen.append)
    assert [message_of_row(o) for o in seen] == list(range(1, 1501))

    def render(row: Any) -> str:
        return f"Hi {row['name']}"  # a row without "name": KeyError, not a RenderError

    seen.clear()
    breaking = Campaign(campaign.client, render, ("dag", "run", "task", "-1"))
    with pytest.raises(KeyError):
        validate(
            breaking, [(1, {"to": "+85291234567", "name": "Ann"}), (2, {"to": "+85291234568"})], on_row=seen.append
        )
    assert [message_of_row(o) for o in seen] == [1]


def message_of_row(outcome: Any) -> int:
    return int(outcome.row if hasattr(outcome, "row") else outcome.message.row)


def test_a_heap_frozen_before_the_campaign_stays_frozen() -> None:
    """Airflow's LocalExecutor freezes its heap before forking task processes: the campaign leaves it so."""
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with existing_objects_frozen():
            pass
        assert gc.get_freeze_count() >= before
    finally:
        gc.unfreeze()


# --- the hot path's smaller pieces --------------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=40))
def test_percent_encoding_is_rfc_3986_as_quote_writes_it(value: str) -> None:
    assert percent_encode(value) == quote(value, safe="~")


@given(st.one_of(st.text(max_size=30), st.integers(), st.none()))
def test_a_remembered_mask_is_the_mask(raw: object) -> None:
    first, again = mask_number(raw), mask_number(raw)
    assert first == again
    assert "91234567" not in mask_number("+85291234567")


def test_a_parsed_reply_is_freed_at_once_without_the_garbage_collector() -> None:
    """llhttp holds its callbacks: were they the parser's own methods, each reply would be a reference cycle
    left for the collector, whose pauses stalled the event loop at 2,000 sends/s."""
    gc.disable()
    try:
        parser = ReplyParser()
        reply = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        assert reply is not None
        assert reply.body == b"{}"
        freed = weakref.ref(parser)
        del parser
        assert freed() is None
    finally:
        gc.enable()


def test_the_collector_is_restored_after_a_campaign_however_nested() -> None:
    before, outside = gc.get_threshold(), gc.get_freeze_count()
    with existing_objects_frozen():
        frozen = gc.get_freeze_count()
        assert frozen > outside
        with existing_objects_frozen():
            assert gc.get_threshold()[0] > before[0]
        assert gc.get_freeze_count() >= frozen  # the inner one released nothing
    assert gc.get_freeze_count() == outside
    assert gc.get_threshold() == before
