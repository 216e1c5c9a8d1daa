"""Sends in doubt confirmed by pushed delivery receipts (issue 28, item 4).

A message that arrived at the API without an answer (its replay refused as already seen) is confirmed by a
pushed receipt with the campaign's TaskId, its number and a SendDate not before its signing: it becomes
``accepted`` with the receipt's MessageId. Nothing else confirms it, two MessageIds for one number confirm
nothing, and what has no receipt stays in doubt and fails the task after a bounded wait.

TODO(push): the receipts are written into the store from the emulator's own record of what it accepted
(``emulator.messages()``). When the emulator's push (``push_url``) and the receiver land, let the emulator
push them to a receiver on 127.0.0.1 that writes the store instead.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
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
from airflow_provider_globesms.testing import task_states, xcom_values
from airflow_provider_globesms.triggers.arrived_receipts import ArrivedReceiptsTrigger
from tests.conftest import connection_json

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


# --- through the operator, against the emulator -------------------------------------------------------

WHEN = datetime(2026, 11, 23, tzinfo=timezone.utc)


def people(count: int) -> list[dict[str, str]]:
    return [{"to": f"+8527{n + 1000000:07d}", "name": f"C{n}"} for n in range(count)]


@pytest.fixture
def hanging(
    monkeypatch: pytest.MonkeyPatch, globesms_emulator_factory: Callable[..., EmulatorServer], tmp_path: Path
) -> EmulatorServer:
    """An emulator whose next three sends are accepted and then hang (their answers lost): with replay they end
    ``arrived``. The push store is a folder of this test's own."""
    emulator = globesms_emulator_factory(delivery_delay=0, seed=5, faults=Faults())
    emulator.set_faults(script=["hang", "hang", "hang"], hang_seconds=5)
    monkeypatch.setenv("AIRFLOW_CONN_GLOBESMS_DEFAULT", connection_json(emulator.url, timeout=2))
    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_URI", str(tmp_path / "push"))
    monkeypatch.setattr(confirm_by_receipts, "POLL_EVERY", 0.3)
    return emulator


def push_receipts(
    emulator: EmulatorServer, store: PushStore, campaign: str, *, skip: frozenset[str] = frozenset()
) -> dict[str, str]:
    """What the emulator accepted for ``campaign``, written into the store as pushed receipts (but for the
    numbers in ``skip``: their push was lost). Returns number -> MessageId."""
    messages = [m for m in emulator.messages(task_id=campaign) if m["to"] not in skip]
    store.write(
        [
            read_receipt(
                {
                    "To": m["to"].lstrip("+"),
                    "Status": "1",
                    "MessageId": m["message_id"],
                    "SmsSize": str(m["segments"]),
                    "TaskId": m["task_id"],
                    "SendDate": m["send_date"],
                    "ReceiveDate": m["send_date"],
                }
            )
            for m in messages
        ]
    )
    return {m["to"]: m["message_id"] for m in messages}


def campaign_dag(dag_id: str, count: int, **options: Any) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send", recipients=people(count), message="Hi {{ recipient.name }}", campaign_id=dag_id, **options
        )
    return dag


def results(dag_run: Any) -> dict[str, dict[str, Any]]:
    import json

    (summary,) = xcom_values(dag_run, "send", key="summary") or xcom_values(dag_run, "send")
    with open(summary["results_uri"]) as handle:
        return {line["to"]: line for line in map(json.loads, handle)}


def arrived_numbers(emulator: EmulatorServer, dag_run: Any) -> list[str]:
    return [to for to, line in results(dag_run).items() if line["status"] == "arrived"]


def test_a_retry_confirms_arrived_messages_by_their_receipts(
    run_dag: Callable[..., Any], hanging: EmulatorServer, tmp_path: Path
) -> None:
    dag_id = "confirm_retry"
    first = run_dag(campaign_dag(dag_id, 8), logical_date=WHEN, run_after=WHEN)
    assert task_states(first) == {"send": "failed"}  # receipts_by_push off: three arrived, nothing confirms them
    assert len(arrived_numbers(hanging, first)) == 3
    pushed = push_receipts(hanging, PushStore(tmp_path / "push"), dag_id)
    again = run_dag(campaign_dag(dag_id, 8, receipts_by_push=True), logical_date=WHEN, run_after=WHEN)
    assert task_states(again) == {"send": "success"}
    lines = results(again)
    assert {to: (line["status"], line["message_id"]) for to, line in lines.items()} == {
        to: ("accepted", message_id) for to, message_id in pushed.items()
    }
    (summary,) = xcom_values(again, "send")
    assert (summary["accepted"], summary["arrived"], summary["sent"]) == (8, 0, 0)
    assert len(hanging.messages()) == 8  # nobody got two


def test_the_task_waits_for_the_receipts_then_completes(
    run_dag: Callable[..., Any], hanging: EmulatorServer, tmp_path: Path, fernet: Callable[[str], None], capfd: Any
) -> None:
    from cryptography.fernet import Fernet

    fernet(Fernet.generate_key().decode())  # the trigger's kwargs hold keyed digests of the numbers
    dag_id = "confirm_deferred"
    store = PushStore(tmp_path / "push")
    pushed: dict[str, str] = {}

    def push_later() -> None:  # as a receiver would: some seconds after the campaign's sends
        deadline = time.monotonic() + 60
        while len(hanging.messages(task_id=dag_id)) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        pushed.update(push_receipts(hanging, store, dag_id))

    pusher = threading.Thread(target=push_later, daemon=True)
    pusher.start()
    started = time.monotonic()
    dag_run = run_dag(
        campaign_dag(dag_id, 6, receipts_by_push=True, confirm_within=60), logical_date=WHEN, run_after=WHEN
    )
    pusher.join(5)
    assert task_states(dag_run) == {"send": "success"}
    assert time.monotonic() - started < 45  # the receipts ended the wait, not the deadline
    assert "3 message(s) in doubt confirmed by their delivery receipts" in capfd.readouterr().out
    assert {to: (line["status"], line["message_id"]) for to, line in results(dag_run).items()} == {
        to: ("accepted", message_id) for to, message_id in pushed.items()
    }
    assert len(hanging.messages()) == 6


def test_without_a_receipt_the_wait_ends_at_the_deadline_and_the_task_fails_naming_them(
    run_dag: Callable[..., Any], hanging: EmulatorServer, tmp_path: Path, capfd: Any
) -> None:
    """One of the three arrived messages has no receipt (its push was lost, or it was throttled in flight and
    never went out: to the ledger the two look the same): the other two are confirmed, it stays arrived, and
    the wait ends at its deadline. No Fernet key here: the trigger fires at each new receipt object, and the
    task defers again (its deadline carried) until the deadline."""
    dag_id = "confirm_deadline"
    store = PushStore(tmp_path / "push")
    pushed: dict[str, str] = {}
    lost: list[str] = []

    def push_later() -> None:
        deadline = time.monotonic() + 60
        while len(hanging.messages(task_id=dag_id)) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        first = min(hanging.messages(task_id=dag_id), key=lambda m: m["submitted_at"])  # the first call hung
        lost.append(first["to"])
        time.sleep(3)
        pushed.update(push_receipts(hanging, store, dag_id, skip=frozenset({first["to"]})))

    pusher = threading.Thread(target=push_later, daemon=True)
    pusher.start()
    started = time.monotonic()
    dag_run = run_dag(
        campaign_dag(dag_id, 6, receipts_by_push=True, confirm_within=10), logical_date=WHEN, run_after=WHEN
    )
    pusher.join(5)
    assert task_states(dag_run) == {"send": "failed"}
    assert time.monotonic() - started < 40
    lines = results(dag_run)
    (gone,) = lost
    assert lines[gone]["status"] == "arrived"
    assert not lines[gone].get("message_id")
    assert {to: line["message_id"] for to, line in lines.items() if to != gone} == pushed
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
