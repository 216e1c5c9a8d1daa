"""GlobeSmsDeliverySensor and GlobeSmsDeliveryTrigger in real DAG runs against the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor
from airflow_provider_globesms.testing import task_states, xcom_values
from airflow_provider_globesms.triggers.globesms import GlobeSmsDeliveryTrigger
from tests.conftest import connection_json

PEOPLE = [{"to": f"+8529{n + 1000000:07d}", "name": f"C{n}"} for n in range(40)]


@pytest.fixture
def receipts(
    monkeypatch: pytest.MonkeyPatch, globesms_emulator_factory: Callable[..., EmulatorServer]
) -> Callable[..., EmulatorServer]:
    """An emulator with the given carrier behaviour, set as ``globesms_default``."""

    def start(**settings: Any) -> EmulatorServer:
        emulator = globesms_emulator_factory(seed=3, **settings)
        monkeypatch.setenv("AIRFLOW_CONN_GLOBESMS_DEFAULT", connection_json(emulator.url))
        return emulator

    return start


def campaign(dag_id: str, **sensor_args: Any) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        send = SendGlobeSmsOperator(task_id="send", recipients=PEOPLE, message="Hi {{ recipient.name }}")
        send >> GlobeSmsDeliverySensor(task_id="receipts", messages=send.output, poke_interval=0.3, **sensor_args)
    return dag


def lines(uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(uri).read_text().splitlines()]


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_all_delivered(
    run_dag: Callable[..., Any], receipts: Callable[..., EmulatorServer], mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    receipts(delivery_delay=0.5)
    extra = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
    dag_run = run_dag(campaign(f"rcpt_all_{mode}", **extra))
    assert task_states(dag_run) == {"send": "success", "receipts": "success"}
    (summary,) = xcom_values(dag_run, "receipts")
    assert (summary["tracked"], summary["delivered"], summary["pending"]) == (40, 40, 0)
    assert summary["delivery_rate"] == 1.0
    # Receipt dates have whole seconds, as the API sends them.
    assert 0 <= summary["p50_seconds_to_deliver"] <= summary["p95_seconds_to_deliver"] <= 2
    assert summary["segments"] == 40
    records = lines(summary["results_uri"])
    assert len(records) == 40
    assert {r["delivery_status"] for r in records} == {"delivered"}
    assert all(r["message_id"] and r["receive_date"] for r in records)
    logged = capfd.readouterr().out
    assert "delivery rate" in logged
    assert "time to deliver p50 / p95" in logged


def test_failures_are_reported_by_error_code(
    run_dag: Callable[..., Any], receipts: Callable[..., EmulatorServer], capfd: pytest.CaptureFixture[str]
) -> None:
    receipts(delivery_delay=0.3, failure_rate=0.5)
    dag_run = run_dag(campaign("rcpt_mixed"))
    assert task_states(dag_run) == {"send": "success", "receipts": "success"}
    (summary,) = xcom_values(dag_run, "receipts")
    assert summary["delivered"] + summary["failed"] == 40
    assert 8 <= summary["failed"] <= 32
    assert sum(summary["failed_by_code"].values()) == summary["failed"]
    assert set(summary["failed_by_code"]) <= {"UNDELIV", "EXPIRED", "REJECTD", "BLACKLIST"}
    records = lines(summary["results_uri"])
    failed = [r for r in records if r["delivery_status"] == "failed"]
    assert all(r["error_code"] in summary["failed_by_code"] for r in failed)
    logged = capfd.readouterr().out
    for code in summary["failed_by_code"]:
        assert f"failed: {code}" in logged


@pytest.mark.parametrize("deferrable", [False, True])
def test_min_delivery_rate_fails_the_task_even_with_soft_fail(
    run_dag: Callable[..., Any], receipts: Callable[..., EmulatorServer], deferrable: bool
) -> None:
    receipts(delivery_delay=0.2, failure_rate=0.5)
    dag = campaign(
        f"rcpt_min_rate_{deferrable}", min_delivery_rate=0.9, soft_fail=True, deferrable=deferrable, retries=0
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"send": "success", "receipts": "failed"}
    (summary,) = xcom_values(dag_run, "receipts", key="summary")
    assert summary["delivery_rate"] < 0.9


@pytest.mark.parametrize(
    ("deferrable", "soft_fail", "state"),
    [
        (False, False, "failed"),
        (False, True, "skipped"),
        (True, False, "failed"),
        (True, True, "skipped"),
    ],
)
def test_pending_at_timeout_follows_soft_fail(
    run_dag: Callable[..., Any], receipts: Callable[..., EmulatorServer], deferrable: bool, soft_fail: bool, state: str
) -> None:
    receipts(delivery_delay=3600)  # the carrier never answers within the test
    dag = campaign(
        f"rcpt_timeout_{deferrable}_{soft_fail}", timeout=1.5, soft_fail=soft_fail, deferrable=deferrable, retries=0
    )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"send": "success", "receipts": state}
    (summary,) = xcom_values(dag_run, "receipts", key="summary")
    assert (summary["pending"], summary["delivered"], summary["timed_out"]) == (40, 0, True)
    assert {r["delivery_status"] for r in lines(summary["results_uri"])} == {"pending"}


def test_tracking_a_list_of_message_ids(run_dag: Callable[..., Any], receipts: Callable[..., EmulatorServer]) -> None:
    from airflow_provider_globesms.client import Credentials, GlobeSmsClient

    emulator = receipts(delivery_delay=0.2)
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
    ids = [client.send_message(p["to"], "hello").message_id for p in PEOPLE[:5]]
    with DAG("rcpt_ids", schedule=None) as dag:
        GlobeSmsDeliverySensor(task_id="receipts", messages=ids, poke_interval=0.3)
    dag_run = run_dag(dag)
    (summary,) = xcom_values(dag_run, "receipts")
    assert (summary["tracked"], summary["delivered"]) == (5, 5)
    assert {r["to"] for r in lines(summary["results_uri"])} == {p["to"][1:] for p in PEOPLE[:5]}


def test_messages_without_an_id_are_counted_not_tracked(
    run_dag: Callable[..., Any], receipts: Callable[..., EmulatorServer]
) -> None:
    receipts(delivery_delay=0.2)
    rows = [*PEOPLE[:3], {"to": "+8613800138000", "name": "mainland"}]
    with DAG("rcpt_untracked", schedule=None) as dag:
        send = SendGlobeSmsOperator(task_id="send", recipients=rows, message="Hi", on_invalid="skip")
        send >> GlobeSmsDeliverySensor(task_id="receipts", messages=send.output, poke_interval=0.3)
    (summary,) = xcom_values(run_dag(dag), "receipts")
    assert (summary["tracked"], summary["untracked"], summary["delivered"]) == (3, 1, 3)


def test_a_dry_run_summary_is_refused_clearly() -> None:
    sensor = GlobeSmsDeliverySensor(task_id="r", messages={"dry_run": True, "results_uri": "x"})
    with pytest.raises(ValueError, match="dry run"):
        sensor._source()


def test_trigger_serialization_round_trip() -> None:
    trigger = GlobeSmsDeliveryTrigger(
        source="s3://bucket/results.jsonl",
        results_uri="s3://bucket/receipts.jsonl",
        globesms_conn_id="sms",
        poll_interval=15,
        timeout_at=1_800_000_000.0,
        concurrency=32,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_globesms.triggers.globesms.GlobeSmsDeliveryTrigger"
    json.dumps(kwargs)  # plain JSON: stored in the metadata database
    from importlib import import_module

    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(import_module(module), name)(**kwargs)  # what the triggerer does
    assert rebuilt.serialize() == (classpath, kwargs)
    assert GlobeSmsDeliveryTrigger(source=["1", "2"], results_uri="r").serialize()[1]["source"] == ["1", "2"]


def test_refused_credentials_fail_the_sensor_at_once(
    run_dag: Callable[..., Any],
    receipts: Callable[..., EmulatorServer],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import time

    emulator = receipts(delivery_delay=0.2)
    from airflow_provider_globesms.client import Credentials, GlobeSmsClient

    ids = [
        GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
        .send_message("+85291234567", "x")
        .message_id
    ]
    monkeypatch.setenv("AIRFLOW_CONN_GLOBESMS_DEFAULT", connection_json(emulator.url, password="rotated"))
    with DAG("rcpt_refused", schedule=None) as dag:
        GlobeSmsDeliverySensor(task_id="receipts", messages=ids, poke_interval=0.3, timeout=60, retries=0)
    started = time.monotonic()
    assert task_states(run_dag(dag)) == {"receipts": "failed"}
    assert time.monotonic() - started < 30  # not after the hour of polling
    assert "SignatureDoesNotMatch" in capfd.readouterr().out


def test_a_reloaded_source_adds_messages_and_keeps_receipts(tmp_path: Path) -> None:
    from airflow_provider_globesms.client.receipts.tracker import DeliveryTracker

    with DeliveryTracker(tmp_path / "r.sqlite3") as tracker:
        tracker.load([{"message_id": "1", "to": "85291234567"}, {"to": "8613800138000", "status": "invalid"}], "a")
        tracker._db.execute("UPDATE receipts SET status = 'delivered' WHERE message_id = '1'")
        tracker.load([{"message_id": "1"}, {"message_id": "2"}, {"to": "8613800138000", "status": "invalid"}], "b")
        summary = tracker.summary()
    assert (summary["delivered"], summary["pending"], summary["untracked"]) == (1, 1, 1)


def test_query_failures_are_counted_by_code() -> None:
    from airflow_provider_globesms.client.receipts.tracker import Round

    text = Round(10, 2, 3, 1.5, {"Throttling.User": 2, "ServiceUnavailable": 1}).describe(8)
    assert text == (
        "receipts: queried 10 in 1.5 s, 2 became final, 8 still pending; 3 queries failed and will be "
        "asked again (ServiceUnavailable x1, Throttling.User x2)"
    )
