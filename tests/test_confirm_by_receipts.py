"""Sends in doubt confirmed by pushed delivery receipts (issue 28, item 4).

A message that arrived at the API without an answer (its replay refused as already seen) is confirmed by a
pushed receipt with the campaign's TaskId, its number and a SendDate not before its signing: it becomes
``accepted`` with the receipt's MessageId. Nothing else confirms it, two MessageIds for one number confirm
nothing, and what has no receipt stays in doubt and fails the task after a bounded wait.

Through the operator, nothing is written into the store by hand: the emulator pushes its receipts, as Alibaba
does, to the receiver on 127.0.0.1, which stores them where the operator reads them (``[globesms] push_uri``).
A retry confirms what an earlier try left arrived; a task waits, deferred, for receipts that come only after
it deferred (the receiver down until then, the pushes retried); a receipt whose push is dropped never comes,
and the task fails at its deadline naming that message. The rule itself is tested on generated receipts
written into a store directly, and at its boundary.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from airflow.sdk import DAG
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client.ledger.sqlite_ledger import LedgerEntry, SqliteLedger, Status
from airflow_provider_globesms.client.receipts.confirm import SEND_DATE_SLACK, confirm_in_doubt
from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.receipts.pushed import PushedReceipt, read_receipt
from airflow_provider_globesms.client.wire.signing import SignedRequest
from airflow_provider_globesms.emulator import EmulatorServer, Faults
from airflow_provider_globesms.operators import confirm_by_receipts
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.receiver import receiver_app
from airflow_provider_globesms.testing import task_states, xcom_values
from airflow_provider_globesms.triggers.arrived_receipts import ArrivedReceiptsTrigger
from tests.conftest import connection_json
from tests.test_push_receiver import SECRET, Served, mounted

CAMPAIGN = "spring-sale"
SIGNED_AT = 1_790_000_000  # whole seconds, as x-acs-date carries them


# --- the rule, on generated receipts ------------------------------------------------------------------


def signed(to: str, at: float = SIGNED_AT) -> SignedRequest:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    query = urlencode({"Action": "SendMessageToGlobe", "To": to, "Message": "Hi", "TaskId": CAMPAIGN})
    return SignedRequest("POST", f"/?{query}", {"x-acs-date": stamp, "authorization": "ACS3-HMAC-SHA256 ..."})


def receipt(to: str, message_id: str, *, send: float, task_id: str = CAMPAIGN, status: str = "1") -> PushedReceipt:
    date = format_datetime(datetime.fromtimestamp(send, timezone.utc))
    return read_receipt(
        {"To": to, "Status": status, "MessageId": message_id, "SmsSize": "2", "TaskId": task_id, "SendDate": date}
    )


NUMBERS = [f"8529{n:07d}" for n in range(1000001, 1000009)]
KINDS = ("match", "older", "other_task", "other_number", "two_ids", "duplicate", "none")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(("1", "2", "6", "3"))), min_size=8, max_size=8),
    status=st.sampled_from((Status.ARRIVED, Status.UNKNOWN, Status.PENDING)),
    late=st.floats(min_value=0, max_value=600),
)
def test_a_receipt_confirms_only_its_campaign_s_number_sent_after_the_signing(
    plan: list[tuple[str, str]], status: Status, late: float
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        ledger = SqliteLedger(Path(folder) / "ledger.sqlite3")
        ledger.write_many(
            [
                LedgerEntry(f"k{n}", status, n, "+" + to, segments=1, request=signed("+" + to))
                for n, to in enumerate(NUMBERS)
            ]
        )
        pushed, expected = [], {}
        for n, ((kind, code), to) in enumerate(zip(plan, NUMBERS, strict=True)):
            at = SIGNED_AT + late
            if kind in ("match", "duplicate", "two_ids"):
                pushed.append(receipt(to, f"M{n}", send=at, status=code))
            if kind == "duplicate":
                pushed.append(receipt(to, f"M{n}", send=at + 3, status="1"))  # the same MessageId pushed again
            if kind == "two_ids":
                pushed.append(receipt(to, f"X{n}", send=at, status=code))
            if kind == "older":  # a run before this one, under the same campaign id
                pushed.append(receipt(to, f"M{n}", send=SIGNED_AT - SEND_DATE_SLACK - 1 - late, status=code))
            if kind == "other_task":
                pushed.append(receipt(to, f"M{n}", send=at, task_id="another-campaign", status=code))
            if kind == "other_number":
                pushed.append(receipt("85290000000", f"M{n}", send=at, status=code))
            if kind in ("match", "duplicate"):
                expected[f"k{n}"] = f"M{n}"
        store = PushStore(Path(folder) / "push")
        store.write(pushed[: len(pushed) // 2])
        store.write(pushed[len(pushed) // 2 :])

        found = confirm_in_doubt(ledger, store, CAMPAIGN)

        entries = {e.key: e for e in ledger.entries()}
        accepted = {k: e.message_id for k, e in entries.items() if e.status is Status.ACCEPTED}
        assert accepted == expected  # any receipt status confirms acceptance: a failed delivery was accepted
        assert all(entries[k].request is None and entries[k].segments == 2 for k in accepted)
        assert all(e.request is not None and e.status is status for k, e in entries.items() if k not in accepted)
        assert found.confirmed == len(expected)
        assert found.in_doubt == len(NUMBERS) - len(expected)
        assert found.ambiguous == sum(kind == "two_ids" for kind, _ in plan)
        assert confirm_in_doubt(ledger, store, CAMPAIGN).confirmed == 0  # nothing confirmed twice
        ledger.close()


def test_a_receipt_of_the_second_of_signing_confirms_and_an_earlier_one_does_not(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger.write_many(
        [
            LedgerEntry(f"k{n}", Status.ARRIVED, n, "+" + to, request=signed("+" + to))
            for n, to in enumerate(NUMBERS[:3])
        ]
    )
    store = PushStore(tmp_path / "push")
    store.write(
        [
            receipt(NUMBERS[0], "A", send=SIGNED_AT),
            receipt(NUMBERS[1], "B", send=SIGNED_AT - SEND_DATE_SLACK),
            receipt(NUMBERS[2], "C", send=SIGNED_AT - SEND_DATE_SLACK - 1),
        ]
    )
    assert confirm_in_doubt(ledger, store, CAMPAIGN).confirmed == 2
    assert {e.key: e.status for e in ledger.entries()} == {
        "k0": Status.ACCEPTED,
        "k1": Status.ACCEPTED,
        "k2": Status.ARRIVED,
    }
    ledger.close()


# --- through the operator, the emulator's push and the receiver -------------------------------------

WHEN = datetime(2026, 11, 23, tzinfo=timezone.utc)


def people(count: int) -> list[dict[str, str]]:
    return [{"to": f"+8527{n + 1000000:07d}", "name": f"C{n}"} for n in range(count)]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Served]:
    """The push receiver (uvicorn on 127.0.0.1) for the store ``tmp_path / "push"``, its port chosen but not
    serving yet: a test starts it (``with receiver:``, or ``receiver.__enter__()`` from a thread)."""
    served = Served(mounted(receiver_app(PushStore(tmp_path / "push"), SECRET)))
    yield served
    if served.thread.is_alive():
        served.__exit__(None, None, None)


@pytest.fixture
def hanging(
    monkeypatch: pytest.MonkeyPatch,
    globesms_emulator_factory: Callable[..., EmulatorServer],
    receiver: Served,
    tmp_path: Path,
) -> EmulatorServer:
    """An emulator whose next three sends are accepted and then hang (their answers lost): with replay they end
    ``arrived``. It pushes every accepted message's receipt (final at once) to ``receiver``, retrying a failed
    push every second for ten seconds, as Alibaba retries; the operator reads the receiver's store."""
    emulator = globesms_emulator_factory(
        delivery_delay=0,
        seed=5,
        faults=Faults(),
        push_url=f"http://127.0.0.1:{receiver.port}/globesms/push/{SECRET}/receipts",
        push_retry=(1.0,) * 10,
        push_batch=10,
    )
    emulator.set_faults(script=["hang", "hang", "hang"], hang_seconds=5)
    monkeypatch.setenv("AIRFLOW_CONN_GLOBESMS_DEFAULT", connection_json(emulator.url, timeout=2))
    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_URI", str(tmp_path / "push"))
    monkeypatch.setattr(confirm_by_receipts, "POLL_EVERY", 0.3)
    return emulator


def accepted_at_emulator(emulator: EmulatorServer, campaign: str) -> dict[str, str]:
    """What the emulator accepted for ``campaign``: number -> MessageId (to compare with, never to store)."""
    return {m["to"]: m["message_id"] for m in emulator.messages(task_id=campaign)}


def stored_ids(store: PushStore, campaign: str) -> Counter[str]:
    """The MessageIds of the campaign's receipts the receiver stored (duplicates counted)."""
    return Counter(r.message_id for _, batch in store.receipts(campaign) for r in batch)


def campaign_dag(dag_id: str, count: int, **options: Any) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send", recipients=people(count), message="Hi {{ recipient.name }}", campaign_id=dag_id, **options
        )
    return dag


def results(dag_run: Any) -> dict[str, dict[str, Any]]:
    (summary,) = xcom_values(dag_run, "send", key="summary") or xcom_values(dag_run, "send")
    with open(summary["results_uri"]) as handle:
        return {line["to"]: line for line in map(json.loads, handle)}


def arrived_numbers(dag_run: Any) -> list[str]:
    return [to for to, line in results(dag_run).items() if line["status"] == "arrived"]


def test_a_retry_confirms_arrived_messages_by_their_receipts(
    run_dag: Callable[..., Any], hanging: EmulatorServer, receiver: Served, tmp_path: Path
) -> None:
    dag_id = "confirm_retry"
    with receiver:
        first = run_dag(campaign_dag(dag_id, 8), logical_date=WHEN, run_after=WHEN)
        assert task_states(first) == {"send": "failed"}  # receipts_by_push off: three arrived, nothing confirms them
        assert len(arrived_numbers(first)) == 3
        stats = hanging.wait_for_pushes(timeout=30)
        assert (stats["receipts_pushed"], stats["receipts_dropped"], stats["receipts_given_up"]) == (8, 0, 0)
        again = run_dag(campaign_dag(dag_id, 8, receipts_by_push=True), logical_date=WHEN, run_after=WHEN)
    assert task_states(again) == {"send": "success"}
    expected = accepted_at_emulator(hanging, dag_id)
    assert set(stored_ids(PushStore(tmp_path / "push"), dag_id)) == set(expected.values())
    lines = results(again)
    assert {to: (line["status"], line["message_id"]) for to, line in lines.items()} == {
        to: ("accepted", message_id) for to, message_id in expected.items()
    }
    (summary,) = xcom_values(again, "send")
    assert (summary["accepted"], summary["arrived"], summary["sent"]) == (8, 0, 0)
    assert len(hanging.messages()) == 8  # nobody got two


def test_the_task_waits_for_the_receipts_then_completes(
    run_dag: Callable[..., Any],
    hanging: EmulatorServer,
    receiver: Served,
    tmp_path: Path,
    fernet: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    capfd: Any,
) -> None:
    """The receiver is down while the campaign sends, and comes up only once the task has deferred (its
    trigger running): the emulator's pushes fail and are retried, so every receipt reaches the store while
    the task waits, and the wait ends by them, long before its deadline."""
    from cryptography.fernet import Fernet

    fernet(Fernet.generate_key().decode())  # the trigger's kwargs hold keyed digests of the numbers
    dag_id = "confirm_deferred"
    deferred: list[float] = []
    real_run = ArrivedReceiptsTrigger.run

    async def run(trigger: ArrivedReceiptsTrigger) -> AsyncIterator[Any]:  # the real trigger, its start seen
        if not deferred:
            deferred.append(time.time())
            threading.Thread(target=receiver.__enter__, daemon=True).start()
        async for event in real_run(trigger):
            yield event

    monkeypatch.setattr(ArrivedReceiptsTrigger, "run", run)
    started = time.monotonic()
    dag_run = run_dag(
        campaign_dag(dag_id, 6, receipts_by_push=True, confirm_within=60), logical_date=WHEN, run_after=WHEN
    )
    assert task_states(dag_run) == {"send": "success"}
    assert time.monotonic() - started < 45  # the receipts ended the wait, not the deadline
    logged = capfd.readouterr().out
    assert "waiting for their delivery receipts (by push)" in logged
    assert "3 message(s) in doubt confirmed by their delivery receipts" in logged
    stats = hanging.wait_for_pushes(timeout=30)
    assert stats["attempts_failed"] > 0  # pushed while nobody listened: retried
    assert (stats["receipts_pushed"], stats["receipts_given_up"]) == (6, 0)
    store = PushStore(tmp_path / "push")
    (since,) = deferred
    assert all(int(name[:20]) / 1e9 >= since for name in store.names(dag_id))  # every receipt came while deferred
    expected = accepted_at_emulator(hanging, dag_id)
    assert set(stored_ids(store, dag_id)) == set(expected.values())
    assert {to: (line["status"], line["message_id"]) for to, line in results(dag_run).items()} == {
        to: ("accepted", message_id) for to, message_id in expected.items()
    }
    assert len(hanging.messages()) == 6


def test_without_a_receipt_the_wait_ends_at_the_deadline_and_the_task_fails_naming_them(
    run_dag: Callable[..., Any], hanging: EmulatorServer, receiver: Served, tmp_path: Path, capfd: Any
) -> None:
    """Three arrived messages; the push of the first one's receipt is dropped (``push_drop`` while it alone
    waits: one send at a time, each hang 2 s). To the ledger it looks like a request throttled in flight that
    never went out. The other two are confirmed by their pushed receipts; it stays arrived, and the wait
    ends at its deadline. No Fernet key here: the trigger fires at each new receipt object, and the task
    defers again (its deadline carried) until the deadline."""
    dag_id = "confirm_deadline"
    hanging.set_faults(script=["hang", "hang"], push_drop=1)  # five: each replay takes one, unused (refused)
    stop = threading.Event()

    def drop_only_the_first() -> None:
        while not stop.wait(0.02):
            if hanging.push_stats()["pushes_dropped"]:
                hanging.set_faults(push_drop=0)
                return

    watcher = threading.Thread(target=drop_only_the_first, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        with receiver:
            dag_run = run_dag(
                campaign_dag(dag_id, 6, receipts_by_push=True, confirm_within=10, concurrency=1),
                logical_date=WHEN,
                run_after=WHEN,
            )
            stats = hanging.wait_for_pushes(timeout=30)
    finally:
        stop.set()
        watcher.join(5)
    assert task_states(dag_run) == {"send": "failed"}
    assert time.monotonic() - started < 45
    expected = accepted_at_emulator(hanging, dag_id)
    by_id = {message_id: to for to, message_id in expected.items()}
    (lost,) = stats["dropped_message_ids"]
    gone = by_id[lost]
    first = min(hanging.messages(task_id=dag_id), key=lambda m: m["submitted_at"])
    assert first["message_id"] == lost  # the first send hung, and its receipt never came
    assert (stats["receipts_pushed"], stats["receipts_dropped"]) == (5, 1)
    assert set(stored_ids(PushStore(tmp_path / "push"), dag_id)) == set(expected.values()) - {lost}
    lines = results(dag_run)
    assert len(lines) == 6
    assert lines[gone]["status"] == "arrived"
    assert not lines[gone].get("message_id")
    assert {to: (line["status"], line["message_id"]) for to, line in lines.items() if to != gone} == {
        to: ("accepted", message_id) for to, message_id in expected.items() if to != gone
    }
    logged = capfd.readouterr().out
    assert "no delivery receipt came for the arrived ones within 10 s" in logged
    assert "2 message(s) in doubt confirmed by their delivery receipts" in logged
    assert "waiting for their delivery receipts (by push)" in logged
    assert len(hanging.messages()) == 6


def test_the_trigger_holds_no_number_and_round_trips(tmp_path: Path) -> None:
    trigger = ArrivedReceiptsTrigger(
        campaign_id=CAMPAIGN, push_uri=str(tmp_path), digests=["ab" * 16], not_before=SIGNED_AT, deadline=SIGNED_AT + 9
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_globesms.triggers.arrived_receipts.ArrivedReceiptsTrigger"
    assert ArrivedReceiptsTrigger(**kwargs).serialize() == (path, kwargs)


@pytest.mark.parametrize("with_key", [True, False], ids=["fernet-key", "no-key"])
def test_the_trigger_wakes_for_the_awaited_numbers_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_key: bool
) -> None:
    """With a Fernet key or without one (digests keyed by the campaign id), another number's receipt, an
    older one of the awaited number or another campaign's never ends the wait; the awaited one does."""
    import asyncio

    from cryptography.fernet import Fernet

    from airflow_provider_globesms.triggers.arrived_receipts import number_digest, receipts_digest_key

    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode() if with_key else "")
    awaited, other = NUMBERS[0], NUMBERS[1]
    now = time.time()
    digest = number_digest(receipts_digest_key(CAMPAIGN), awaited)
    assert awaited not in json.dumps(
        ArrivedReceiptsTrigger(
            campaign_id=CAMPAIGN, push_uri="x", digests=[digest], not_before=now, deadline=now
        ).serialize()
    )
    store = PushStore(tmp_path)
    store.write([receipt(other, "m-other", send=now), receipt(awaited, "m-old", send=now - 60)])
    store.write([receipt(awaited, "m-elsewhere", send=now, task_id="another-campaign")])
    trigger = ArrivedReceiptsTrigger(
        campaign_id=CAMPAIGN,
        push_uri=str(tmp_path),
        digests=[digest],
        not_before=now,
        deadline=now + 30,
        poll_interval=0.1,
    )

    async def first_event(delay_awaited: float) -> tuple[dict[str, Any], float]:
        async def land() -> None:
            await asyncio.sleep(delay_awaited)
            await asyncio.to_thread(store.write, [receipt(awaited, "m-awaited", send=now + 1)])

        landing = asyncio.create_task(land())
        started = time.monotonic()
        event = await anext(trigger.run())
        await landing
        return event.payload, time.monotonic() - started

    payload, took = asyncio.run(first_event(1.0))
    assert payload["status"] == "receipts"
    assert took >= 0.9  # not woken by the receipts that were there before
