"""The delivery sensor settled by pushed receipts: the emulator pushes (as Alibaba does) to the receiver on
127.0.0.1, which stores them; the sensor reads them first and asks QueryMessage only about what never came."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.emulator import EmulatorServer, Faults
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.conftest import connection_json
from tests.test_push_receiver import SECRET, serve_receiver

COUNT = 300
PEOPLE = [{"to": f"+8529{n + 1000000:07d}", "name": f"C{n}"} for n in range(COUNT)]


@pytest.fixture
def pushing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, globesms_emulator_factory: Callable[..., EmulatorServer]
) -> Iterator[Callable[..., tuple[EmulatorServer, str]]]:
    """An emulator pushing its receipts to a receiver on 127.0.0.1 that keeps them in a store under tmp_path;
    gives the emulator and the store's location."""
    location = tmp_path / "push"
    with serve_receiver(PushStore(location)) as served:

        def start(**faults: float) -> tuple[EmulatorServer, str]:
            shares = Faults()
            shares.update(faults)
            emulator = globesms_emulator_factory(
                seed=11,
                delivery_delay=0.2,
                failure_rate=0.2,
                faults=shares,
                push_url=f"http://127.0.0.1:{served.port}/globesms/push/{SECRET}/receipts",
                push_retry=(0.2, 0.4),
                push_batch=10,
            )
            monkeypatch.setenv("AIRFLOW_CONN_GLOBESMS_DEFAULT", connection_json(emulator.url))
            return emulator, str(location)

        yield start


def campaign(dag_id: str, push_uri: str, **sensor_args: Any) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        send = SendGlobeSmsOperator(task_id="send", recipients=PEOPLE, message="Hi {{ recipient.name }}")
        sensor = GlobeSmsDeliverySensor(
            task_id="receipts",
            messages=send.output,
            receipts_by_push=True,
            push_uri=push_uri,
            poke_interval=0.5,
            timeout=120,
            **sensor_args,
        )
        send >> sensor
    return dag


def query_calls(emulator: EmulatorServer) -> int:
    return int(emulator.stats()["actions"].get("QueryMessage", {}).get("requests", 0))


def lines(uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(uri).read_text().splitlines()]


def expected_statuses(emulator: EmulatorServer) -> Counter[str]:
    return Counter(m["status"] for m in emulator.messages())


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_the_sensor_completes_from_pushed_receipts_without_one_query(
    run_dag: Callable[..., Any], pushing: Callable[..., tuple[EmulatorServer, str]], mode: str
) -> None:
    emulator, push_uri = pushing()
    extra = {"deferrable": True} if mode == "deferrable" else {}
    dag_run = run_dag(campaign(f"push_all_{mode}", push_uri, push_grace=600, **extra))
    assert task_states(dag_run) == {"send": "success", "receipts": "success"}
    (summary,) = xcom_values(dag_run, "receipts")
    statuses = expected_statuses(emulator)
    assert (summary["delivered"], summary["failed"]) == (statuses["delivered"], statuses["failed"])
    assert (summary["pending"], summary["receipts_pushed"], summary["tracked"]) == (0, COUNT, COUNT)
    assert query_calls(emulator) == 0
    assert all(line["checks"] == 0 for line in lines(summary["results_uri"]))


def test_with_a_tenth_of_pushes_dropped_exactly_those_are_polled(
    run_dag: Callable[..., Any], pushing: Callable[..., tuple[EmulatorServer, str]]
) -> None:
    emulator, push_uri = pushing(push_drop=0.1)
    dag_run = run_dag(campaign("push_dropped", push_uri, push_grace=2))
    assert task_states(dag_run) == {"send": "success", "receipts": "success"}
    dropped = set(emulator.push_stats()["dropped_message_ids"])
    assert dropped, "the seed dropped no push; pick another"
    (summary,) = xcom_values(dag_run, "receipts")
    records = lines(summary["results_uri"])
    polled = {r["message_id"] for r in records if r["checks"]}
    assert polled == dropped
    assert query_calls(emulator) == len(dropped)  # each asked once, and nothing else
    assert summary["receipts_pushed"] == COUNT - len(dropped)
    statuses = expected_statuses(emulator)
    assert (summary["delivered"], summary["failed"], summary["pending"]) == (
        statuses["delivered"],
        statuses["failed"],
        0,
    )


def test_duplicates_and_reordering_change_no_count(
    run_dag: Callable[..., Any], pushing: Callable[..., tuple[EmulatorServer, str]]
) -> None:
    emulator, push_uri = pushing(push_duplicate=0.5, push_reorder=0.5)
    dag_run = run_dag(campaign("push_dup", push_uri, push_grace=600))
    assert task_states(dag_run) == {"send": "success", "receipts": "success"}
    stats = emulator.push_stats()
    assert stats["pushes_duplicated"] > 0
    assert stats["pushes_reordered"] > 0
    (summary,) = xcom_values(dag_run, "receipts")
    statuses = expected_statuses(emulator)
    assert (summary["delivered"], summary["failed"], summary["tracked"]) == (
        statuses["delivered"],
        statuses["failed"],
        COUNT,
    )
    assert summary["receipts_pushed"] == COUNT
    assert query_calls(emulator) == 0
    by_id = {m["message_id"]: m for m in emulator.messages()}
    for record in lines(summary["results_uri"]):  # each message's own receipt, not another's
        assert record["delivery_status"] == by_id[record["message_id"]]["status"]
        assert record["receive_date"] == by_id[record["message_id"]]["receive_date"]


def test_without_push_the_sensor_polls_as_before(
    run_dag: Callable[..., Any], pushing: Callable[..., tuple[EmulatorServer, str]]
) -> None:
    emulator, push_uri = pushing()
    dag_run = run_dag(_poll_only(push_uri))
    assert task_states(dag_run) == {"send": "success", "receipts": "success"}
    (summary,) = xcom_values(dag_run, "receipts")
    assert summary["receipts_pushed"] == 0
    assert query_calls(emulator) >= COUNT


def _poll_only(push_uri: str) -> DAG:
    with DAG("push_off", schedule=None) as dag:
        send = SendGlobeSmsOperator(task_id="send", recipients=PEOPLE, message="Hi {{ recipient.name }}")
        send >> GlobeSmsDeliverySensor(
            task_id="receipts", messages=send.output, receipts_by_push=False, push_uri=push_uri, poke_interval=0.5
        )
    return dag
