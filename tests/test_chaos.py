"""The chaos suite: generated fault schedules, kill points and retry counts against "never twice, never lost".

Each generated case sends a small campaign through the fault proxy to the emulator, over several tries
of one task instance: some tries are killed at a generated point (every task cancelled mid-flight and
the ledger's unflushed outcomes dropped, as SIGKILL would), then a calm final try. Per recipient it
asserts what the emulator holds against the final try's summary and results file:

* at most one message, whatever happened;
* ``accepted`` only if the emulator has exactly one; ``failed`` (which a retry resends) only if it has
  none; a recipient without a message is never counted as sent without saying so (``arrived`` or
  ``unknown``, never ``accepted``), and the summary's statuses add up to the number of recipients.

``make test`` runs 200 cases (the ``ci`` profile, derandomized so CI is stable); ``make chaos`` runs the
``chaos`` profile: thousands of random cases, for before a release.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import Credentials, GlobeSmsClient, RetryPolicy, Timeout, aio
from airflow_provider_globesms.client.bulk import BulkSender, Campaign, PreparedMessage
from airflow_provider_globesms.client.ledger.sqlite_ledger import SqliteLedger
from airflow_provider_globesms.client.results.report import ResultsWriter, SendSummary
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from tests.fault_proxy import ACTIONS, FaultProxy

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("chaos", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FAST = RetryPolicy(max_attempts=3, max_throttled_attempts=4, backoff_base=0.002, backoff_cap=0.01)
CASES = itertools.count(1)
SEEN: Counter[str] = Counter()  # what the generated cases exercised, checked by the last test


@dataclass
class Stage:
    """The world during one try: the proxy's schedule, the emulator's throttling, when the worker dies."""

    schedule: list[str]
    throttle: float
    kill_after: int | None  # proxy requests seen in this try before the kill; None: not killed


CALM = Stage([], 0.0, None)
stages = st.builds(
    Stage,
    schedule=st.lists(st.sampled_from(ACTIONS), max_size=12),
    throttle=st.sampled_from([0.0, 0.0, 0.2, 0.5]),
    kill_after=st.one_of(st.none(), st.integers(min_value=0, max_value=12)),
)


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[EmulatorServer, FaultProxy]]:
    with (
        EmulatorServer(EmulatorConfig(delivery_delay=0, seed=3)) as emulator,
        FaultProxy(emulator.port, hang_seconds=0.4, delay_seconds=0.05, refuse_seconds=0.05) as proxy,
    ):
        yield emulator, proxy


def numbers(case: int, count: int) -> list[str]:
    return [f"+8529{1_000_000 + (case * 8 + i) % 8_000_000:07d}" for i in range(count)]


def one_try(
    campaign: Campaign, ledger_path: Path, items: list[PreparedMessage], stage: Stage, proxy: FaultProxy
) -> Any:
    """Run one try; return (summary, results lines), or None when it was killed."""
    proxy.set_schedule(stage.schedule)
    ledger = SqliteLedger(ledger_path)
    handle = io.BytesIO()
    sender = BulkSender(campaign, ledger, ResultsWriter(handle), concurrency=4, progress_interval=0)
    start = proxy.stats()["requests"]

    async def main() -> SendSummary | None:
        sending = asyncio.ensure_future(sender.run_async(items, total=len(items)))
        while not sending.done():
            if stage.kill_after is not None and proxy.stats()["requests"] - start >= stage.kill_after:
                sending.cancel()  # every send in flight dies with it when the loop ends, unrecorded
                return None
            await asyncio.sleep(0.002)
        return sending.result()

    summary = aio.run(main())
    if summary is None:
        SEEN["kills"] += 1
        return None  # the ledger object is dropped unflushed: its buffered outcomes are lost, as in a kill
    ledger.close()
    return summary, [json.loads(line) for line in handle.getvalue().splitlines()]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    recipients=st.integers(min_value=1, max_value=5),
    troubled=st.lists(stages, min_size=1, max_size=3),
    calm_tries=st.integers(min_value=1, max_value=2),
)
def test_generated_faults_and_kills_never_send_twice_and_never_lose_silently(
    rig: tuple[EmulatorServer, FaultProxy], recipients: int, troubled: list[Stage], calm_tries: int
) -> None:
    emulator, proxy = rig
    case = next(CASES)
    client = GlobeSmsClient(
        Credentials("AKID", "SECRET"), endpoint=proxy.url, timeout=Timeout(connect=0.5, read=0.2), retry=FAST
    )
    campaign = Campaign(client, lambda row: f"Hi {row['to'][-3:]}", ["chaos", str(case), "t", "-1"])
    rows = numbers(case, recipients)
    items = [campaign.prepare(i + 1, {"to": to}) for i, to in enumerate(rows)]
    prepared = [item for item in items if isinstance(item, PreparedMessage)]
    assert len(prepared) == recipients
    final: Any = None
    with tempfile.TemporaryDirectory() as workdir:
        ledger_path = Path(workdir) / "ledger.sqlite3"
        try:
            for stage in [*troubled, *[CALM] * calm_tries]:
                if stage is CALM:
                    proxy.wait_until_listening()  # a "refuse" window of the last troubled try closes first
                emulator.set_faults(throttle=stage.throttle)
                final = one_try(campaign, ledger_path, prepared, stage, proxy) or final
        finally:
            emulator.set_faults(throttle=0.0)
            proxy.set_schedule([])
            client.close()
    assert final is not None  # the calm tries are never killed
    summary, results = final
    SEEN.update(f"final {line['status']}" for line in results)
    SEEN["recovered"] += summary.recovered
    at_emulator = Counter(m["to"] for to in rows for m in emulator.messages(to=to.lstrip("+")))
    check(summary, results, at_emulator)


def check(summary: SendSummary, results: list[dict[str, Any]], at_emulator: Counter[str]) -> None:
    """Per recipient: at most once, and the final status never hides a missing or a doubled message."""
    assert all(count == 1 for count in at_emulator.values()), f"sent twice: {at_emulator}"
    statuses = {line["to"]: line["status"] for line in results}
    assert len(statuses) == summary.total
    for wire, status in statuses.items():
        got = at_emulator.get(wire, 0)
        if status == "accepted":
            assert got == 1, f"{wire} reported accepted, emulator has {got}"
        elif status == "failed":
            assert got == 0, f"{wire} reported failed (a retry resends it), emulator has {got}"
        else:
            assert status in ("arrived", "unknown"), status
    assert summary.accepted + summary.arrived + summary.unknown + summary.failed + summary.invalid == summary.total
    assert summary.accepted == sum(1 for s in statuses.values() if s == "accepted")  # never counted with others
    assert summary.arrived + summary.unknown >= sum(1 for s in statuses.values() if s in ("arrived", "unknown"))


def test_the_generated_cases_exercised_every_fault(rig: tuple[EmulatorServer, FaultProxy]) -> None:
    """Guards the suite itself: a generator that stopped producing kills or faults would prove nothing."""
    emulator, proxy = rig
    applied = proxy.stats()
    assert all(applied[action] > 0 for action in ACTIONS), applied
    assert SEEN["kills"] >= 10, SEEN
    assert SEEN["recovered"] >= 10, SEEN
    assert SEEN["final accepted"] > 0, SEEN
    assert SEEN["final arrived"] > 0, SEEN
    assert SEEN["final failed"] == 0, SEEN  # after calm tries, everything refused earlier went out
    assert emulator.stats()["actions"]["SendMessageToGlobe"]["throttled"] > 0
    print(f"chaos: {dict(SEEN)}; proxy: {applied}")
