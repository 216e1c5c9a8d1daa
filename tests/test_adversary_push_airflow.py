"""Adversary: receipts by push through the Airflow paths (dag.test against the emulator over HTTP, no mocks).

The sensor's counts must equal the emulator's truth per MessageId under push faults, a campaign id shared by
two runs and push_grace=0; sends in doubt must be confirmed only by their own receipt (never an earlier run's
of a reused campaign id), never sent twice by a rerun; the operator must defer a bounded number of times;
no full number nor the push secret in any task log line, no number in the trigger's kwargs.

It found one bug, fixed: two messages in doubt to one number (no receipt can say which it confirms) made the
trigger fire at once on their receipts, and the task resumed and deferred again about thirty times before
its deadline; the task now waits only for numbers a receipt can settle, and only for objects it has not read.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms.client.rules.phone import mask_number
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor
from airflow_provider_globesms.testing import task_states, xcom_values
from airflow_provider_globesms.triggers.arrived_receipts import ArrivedReceiptsTrigger
from tests.test_confirm_by_receipts import WHEN, hanging, receiver, results  # noqa: F401 (fixtures)
from tests.test_push_receiver import Served, secret_forms
from tests.test_sensor_push import pushing  # noqa: F401 (fixture)

WAITING = "waiting for their delivery receipts (by push)"


def people(prefix: str, count: int) -> list[dict[str, str]]:
    return [{"to": f"+852{prefix}{n + 100000:06d}", "name": f"C{n}"} for n in range(count)]


def sensor_dag(dag_id: str, campaign: str, recipients: list[dict[str, str]], push_uri: str, **sensor: Any) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        send = SendGlobeSmsOperator(
            task_id="send", recipients=recipients, message="Hi {{ recipient.name }}", campaign_id=campaign
        )
        send >> GlobeSmsDeliverySensor(
            task_id="receipts",
            messages=send.output,
            receipts_by_push=True,
            push_uri=push_uri,
            poke_interval=0.5,
            timeout=90,
            **sensor,
        )
    return dag


def truth(emulator: EmulatorServer, ids: set[str]) -> Counter[str]:
    return Counter(m["status"] for m in emulator.messages() if m["message_id"] in ids)


def check_sensor_run(dag_run: Any, emulator: EmulatorServer, count: int) -> dict[str, Any]:
    assert task_states(dag_run) == {"send": "success", "receipts": "success"}
    (summary,) = xcom_values(dag_run, "receipts")
    records = [json.loads(line) for line in Path(summary["results_uri"]).read_text().splitlines()]
    ids = {r["message_id"] for r in records}
    assert len(ids) == count
    by_id = {m["message_id"]: m for m in emulator.messages()}
    for record in records:  # each line is its own message's truth
        assert record["delivery_status"] == by_id[record["message_id"]]["status"], record
        assert record["receive_date"] == by_id[record["message_id"]]["receive_date"], record
    statuses = truth(emulator, ids)
    assert (summary["delivered"], summary["failed"], summary["pending"], summary["tracked"]) == (
        statuses["delivered"],
        statuses["failed"],
        0,
        count,
    )
    assert summary["receipts_pushed"] <= count
    return dict(summary)


# --- 1. the sensor: a campaign id shared by two runs, under push faults, push_grace 0 ------------------------


@pytest.mark.parametrize("grace", [0, 2], ids=["grace0", "grace2"])
def test_two_runs_sharing_a_campaign_under_push_faults_count_only_their_own(
    run_dag: Callable[..., Any],
    pushing: Callable[..., tuple[EmulatorServer, str]],  # noqa: F811
    grace: float,
) -> None:
    """Run A texts 40 numbers, run B the same 40 and 20 more, both under campaign "shared", with a fifth of
    pushes dropped, half duplicated and reordered. B's sensor reads a campaign folder holding A's receipts
    (the same numbers, other MessageIds): its counts must be its own messages' truth only."""
    emulator, push_uri = pushing(push_drop=0.2, push_duplicate=0.5, push_reorder=0.5)
    first = run_dag(sensor_dag("shared_a", "shared", people("61", 40), push_uri, push_grace=grace))
    check_sensor_run(first, emulator, 40)
    second = run_dag(sensor_dag("shared_b", "shared", people("61", 60), push_uri, push_grace=grace))
    check_sensor_run(second, emulator, 60)
    assert len(emulator.messages(task_id="shared")) == 100
    assert emulator.push_stats()["pushes_dropped"] > 0


# --- 2. sends in doubt: a campaign id reused, its own receipt dropped; a rerun sends nothing twice ----------


def doubt_dag(dag_id: str, campaign: str, recipients: list[dict[str, str]], **options: Any) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send",
            recipients=recipients,
            message="Hi {{ recipient.name }}",
            campaign_id=campaign,
            receipts_by_push=True,
            concurrency=1,
            **options,
        )
    return dag


def test_an_earlier_run_s_receipt_never_confirms_a_later_run_s_send_in_doubt(
    run_dag: Callable[..., Any],
    hanging: EmulatorServer,  # noqa: F811
    receiver: Served,  # noqa: F811
    tmp_path: Path,
    capfd: Any,
) -> None:
    """Run 1 (campaign "reuse") texts six numbers, all answered, their receipts pushed. Run 2 (another DAG,
    the same campaign id) texts the same six; its first send hangs (arrived) and every push of run 2 is
    dropped: only run 1's receipt for that number is in the store, sent before run 2 signed. It must not
    confirm it: the message stays arrived, the task fails at confirm_within naming it (masked), and a rerun
    of run 2 sends nobody a second text."""
    recipients = people("73", 6)
    hanging.set_faults(script=[])
    with receiver:
        one = run_dag(doubt_dag("reuse_one", "reuse", recipients), logical_date=WHEN, run_after=WHEN)
        assert task_states(one) == {"send": "success"}
        stats = hanging.wait_for_pushes(timeout=30)
        assert stats["receipts_pushed"] == 6
        time.sleep(3.5)  # past SEND_DATE_SLACK
        hanging.set_faults(script=["hang"], hang_seconds=4, push_drop=1)
        started = time.monotonic()
        two = run_dag(doubt_dag("reuse_two", "reuse", recipients, confirm_within=6), logical_date=WHEN, run_after=WHEN)
        took = time.monotonic() - started
        assert task_states(two) == {"send": "failed"}
        lines = results(two)
        doubted = [to for to, line in lines.items() if line["status"] == "arrived"]
        assert len(doubted) == 1, lines
        (gone,) = doubted
        assert not lines[gone].get("message_id")
        logged = capfd.readouterr().out
        assert mask_number(gone) in logged
        assert took < 40
        again = run_dag(
            doubt_dag("reuse_two", "reuse", recipients, confirm_within=6), logical_date=WHEN, run_after=WHEN
        )
        assert task_states(again) == {"send": "failed"}
        assert results(again)[gone]["status"] == "arrived"
    per_number = Counter(m["to"] for m in hanging.messages(task_id="reuse"))
    assert per_number == {r["to"].lstrip("+"): 2 for r in recipients} or per_number == {r["to"]: 2 for r in recipients}


# --- 3. deferral loops --------------------------------------------------------------------------------------


def count_deferrals(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ArrivedReceiptsTrigger the task deferred to, as its serialized kwargs."""
    made: list[dict[str, Any]] = []
    real = ArrivedReceiptsTrigger.serialize

    def serialize(trigger: ArrivedReceiptsTrigger) -> tuple[str, dict[str, Any]]:
        path, kwargs = real(trigger)
        made.append(dict(kwargs))
        return path, kwargs

    monkeypatch.setattr(ArrivedReceiptsTrigger, "serialize", serialize)
    return made


def test_no_receipt_ever_the_task_defers_a_bounded_number_of_times_and_leaks_nothing(
    run_dag: Callable[..., Any],
    hanging: EmulatorServer,  # noqa: F811
    receiver: Served,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capfd: Any,
    caplog: Any,
) -> None:
    """Two sends in doubt, every push dropped: the wait ends at its deadline, after few deferrals, and no
    task log line holds a full number or the push secret; the trigger's kwargs hold no number in any form."""
    recipients = people("64", 5)
    hanging.set_faults(script=["hang", "hang"], hang_seconds=3, push_drop=1)
    made = count_deferrals(monkeypatch)
    started = time.monotonic()
    with receiver:
        dag_run = run_dag(doubt_dag("never", "never", recipients, confirm_within=6), logical_date=WHEN, run_after=WHEN)
    took = time.monotonic() - started
    assert task_states(dag_run) == {"send": "failed"}
    logged = capfd.readouterr()
    text = logged.out + logged.err + caplog.text
    waits = text.count(WAITING)
    assert 1 <= waits <= 2, waits
    assert took < 40
    assert_no_leak(text, recipients, made)


def assert_no_leak(text: str, recipients: list[dict[str, str]], made: list[dict[str, Any]]) -> None:
    for form in secret_forms():
        assert form not in text
    kwargs = json.dumps(made)
    for person in recipients:
        number = person["to"]
        digits = number.lstrip("+")
        assert digits not in text, f"a full number in the logs: {mask_number(number)}"
        assert digits[3:] not in text
        for form in (number, digits, mask_number(number), digits[-4:] + '"', digits[3:]):
            assert form not in kwargs
    assert made, "no deferral seen"


def test_one_number_twice_in_doubt_never_loops_deferrals(
    run_dag: Callable[..., Any],
    hanging: EmulatorServer,  # noqa: F811
    receiver: Served,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capfd: Any,
) -> None:
    """The same number twice in the recipients (two texts, allowed), both sends hang: two messages in doubt
    to one number are never confirmed (a receipt cannot say which it is). Their receipts come, so the
    trigger (which waits per number digest) fires at once each time: the task must not resume and defer
    again in a tight loop until the deadline."""
    recipients = [{"to": "+85265100000", "name": "A"}, {"to": "+85265100000", "name": "B"}, *people("65", 4)[1:]]
    hanging.set_faults(script=["hang", "hang"], hang_seconds=3)
    made = count_deferrals(monkeypatch)
    with receiver:
        dag_run = run_dag(doubt_dag("twice", "twice", recipients, confirm_within=8), logical_date=WHEN, run_after=WHEN)
    assert task_states(dag_run) == {"send": "failed"}  # the two in doubt to one number: never confirmed
    assert results(dag_run)["85265100000"]["status"] == "arrived"  # results files write numbers as sent
    assert len(hanging.messages(task_id="twice")) == 5  # nobody texted more than asked
    assert capfd.readouterr().out.count(WAITING) <= 3
    assert len(made) <= 3, f"{len(made)} deferrals within 8 s"
