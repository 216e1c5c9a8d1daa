"""SendGlobeSmsOperator in real DAG runs (dag.test() on SQLite) against the emulator."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator, default_campaign_id
from airflow_provider_globesms.operators.send_log import warn_if_ledger_is_not_shared
from airflow_provider_globesms.testing import task_states, xcom_values

LOGICAL_DATE = datetime(2026, 11, 21, tzinfo=timezone.utc)

PEOPLE = [
    {"to": "+85291234567", "name": "Ann", "code": "4711"},
    {"to": "+6591234567", "name": "Bo", "code": "0815"},
    {"to": "+447911123456", "name": "Cy", "code": "1234"},
]
TEMPLATE = "Hi {{ recipient.name }}, your code is {{ recipient.code }}"


def run(run_dag: Callable[..., Any], dag: DAG) -> Any:
    return run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)


def results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    with ObjectStoragePath(
        summary["results_uri"] if "://" in summary["results_uri"] else f"file://{summary['results_uri']}"
    ).open("r") as handle:  # type: ignore[no-untyped-call]
        return [json.loads(line) for line in handle]


def sent_texts(emulator: EmulatorServer) -> dict[str, str]:
    return {m["to"]: m["message"] for m in emulator.messages()}


def test_single_send_with_the_task_context(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("op_single", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="notify", to="+85291234567", message="Report for {{ ds }} is ready.")
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"notify": "success"}
    (summary,) = xcom_values(dag_run, "notify")
    assert summary["accepted"] == 1
    assert summary["segments"] == 1
    assert summary["campaign_id"] == default_campaign_id("op_single", dag_run.run_id, "notify", -1)
    (message,) = emulator.messages()
    assert message["message"] == "Report for 2026-11-21 is ready."
    assert message["task_id"] == summary["campaign_id"]
    (line,) = results(summary)
    assert (line["status"], line["to"], line["message_id"]) == ("accepted", "85291234567", message["message_id"])


def test_a_list_of_numbers_with_options(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("op_list", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="notify",
            to=["+85291234567", "+6591234567"],
            message="Maintenance tonight",
            sender="OpsTeam",
            sms_type="NOTIFY",
            validity_period=600,
            campaign_id="maintenance-2026-11",
        )
    assert task_states(run(run_dag, dag)) == {"notify": "success"}
    stored = emulator.messages()
    assert {m["to"] for m in stored} == {"85291234567", "6591234567"}
    assert {(m["from"], m["type"], m["validity_period"], m["task_id"]) for m in stored} == {
        ("OpsTeam", "NOTIFY", 600, "maintenance-2026-11")
    }


def test_templated_bulk_from_a_list(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("op_bulk_list", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="codes", recipients=PEOPLE, message=TEMPLATE)
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"codes": "success"}
    assert sent_texts(emulator) == {
        "85291234567": "Hi Ann, your code is 4711",
        "6591234567": "Hi Bo, your code is 0815",
        "447911123456": "Hi Cy, your code is 1234",
    }
    (summary,) = xcom_values(dag_run, "codes")
    assert summary["accepted"] == 3
    assert len(json.dumps(summary)) < 1000  # a summary, never the recipients


@pytest.mark.parametrize("kind", ["csv", "jsonl", "csv.gz"])
def test_templated_bulk_from_a_local_file(
    run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path, kind: str
) -> None:
    emulator = globesms_conn()
    path = tmp_path / f"people.{kind}"
    if kind.startswith("csv"):
        text = "to,name,code\n" + "".join(f"{p['to']},{p['name']},{p['code']}\n" for p in PEOPLE)
    else:
        text = "".join(json.dumps(p) + "\n" for p in PEOPLE)
    if kind.endswith(".gz"):
        import gzip

        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    with DAG(f"op_file_{kind.replace('.', '_')}", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="codes", recipients=str(path), message=TEMPLATE)
    assert task_states(run(run_dag, dag)) == {"codes": "success"}
    assert sent_texts(emulator)["6591234567"] == "Hi Bo, your code is 0815"  # leading zero kept: CSV is text
    assert len(emulator.messages()) == 3


def test_templated_bulk_from_object_storage(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    """Any ObjectStoragePath works: here fsspec's in-memory filesystem stands in for s3://."""
    emulator = globesms_conn()
    source = ObjectStoragePath("memory://campaigns/2026-11/people.csv")
    with source.open("w") as handle:  # type: ignore[no-untyped-call]
        handle.write("phone,name,code\n" + "".join(f"{p['to']},{p['name']},{p['code']}\n" for p in PEOPLE))
    with DAG("op_object_storage", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="codes",
            recipients="memory://campaigns/{{ ds[:7] }}/people.csv",
            to_field="phone",
            message=TEMPLATE,
            results_uri="memory://campaigns/{{ ds[:7] }}/results.jsonl",
        )
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"codes": "success"}
    assert len(emulator.messages()) == 3
    (summary,) = xcom_values(dag_run, "codes")
    # As Airflow's ObjectStoragePath writes it: memory:/// with universal-pathlib 0.2 (Airflow 3.1), memory:// after.
    assert summary["results_uri"] == str(ObjectStoragePath("memory://campaigns/2026-11/results.jsonl"))
    assert {line["status"] for line in results(summary)} == {"accepted"}


def test_recipients_from_an_upstream_task(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("op_xcom", schedule=None) as dag:

        @task
        def who_is_on_call() -> list[dict[str, str]]:
            return PEOPLE[:2]

        SendGlobeSmsOperator(task_id="page", recipients=who_is_on_call(), message="{{ recipient.name }}: disk full")
    assert task_states(run(run_dag, dag)) == {"who_is_on_call": "success", "page": "success"}
    assert sorted(sent_texts(emulator).values()) == ["Ann: disk full", "Bo: disk full"]


def test_message_from_a_template_file(run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path) -> None:
    emulator = globesms_conn()
    (tmp_path / "welcome.j2").write_text(
        "Welcome {{ recipient.name }}! Your trial ends on {{ macros.ds_add(ds, 14) }}."
    )
    with DAG("op_template_file", schedule=None, template_searchpath=[str(tmp_path)]) as dag:
        SendGlobeSmsOperator(task_id="welcome", recipients=PEOPLE[:1], message="welcome.j2")
    assert task_states(run(run_dag, dag)) == {"welcome": "success"}
    assert sent_texts(emulator) == {"85291234567": "Welcome Ann! Your trial ends on 2026-12-05."}


def test_dry_run_validates_and_counts_but_sends_nothing(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    rows = [*PEOPLE, {"to": "+85291234568", "name": "Dee 😀", "code": "1"}, {"to": "+8613800138000", "name": "X"}]
    with DAG("op_dry_run", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="preview", recipients=rows, message=TEMPLATE, dry_run=True)
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"preview": "success"}
    (summary,) = xcom_values(dag_run, "preview")
    assert summary["dry_run"] is True
    assert (summary["valid"], summary["invalid"], summary["segments"]) == (4, 1, 4)
    assert summary["encodings"] == {"GSM-7": 3, "UCS-2": 1}
    assert emulator.stats()["actions"] == {}
    assert Counter(line["status"] for line in results(summary)) == {"dry_run": 4, "invalid": 1}


BAD_ROWS = [
    PEOPLE[0],
    {"to": "+8613800138000", "name": "Mainland", "code": "1"},
    {"to": "12345", "name": "Short", "code": "1"},
    {"to": "+6591234567", "name": "No code"},
    PEOPLE[0],
    {"name": "Nobody", "code": "1"},
]


def test_invalid_rows_fail_the_task_before_anything_is_sent(
    run_dag: Callable[..., Any], globesms_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = globesms_conn()
    with DAG("op_strict", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="codes", recipients=BAD_ROWS, message=TEMPLATE, retries=0)
    assert task_states(run(run_dag, dag)) == {"codes": "failed"}
    assert emulator.stats()["actions"] == {}
    logged = capfd.readouterr().out
    for expected in (
        "5 of 6 recipients are invalid; nothing was sent",
        "Chinese mainland",
        "+86****8000",
        "include the country dialing code",
        "'dict object' has no attribute 'code'",
        "same number and text as row 1",
        "no phone number",
    ):
        assert expected in logged, expected
    assert "13800138000" not in logged


def test_skip_mode_sends_the_valid_rows_and_reports_the_rest(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("op_skip", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="codes", recipients=BAD_ROWS, message=TEMPLATE, on_invalid="skip")
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"codes": "success"}
    (summary,) = xcom_values(dag_run, "codes")
    assert (summary["accepted"], summary["invalid"]) == (1, 5)
    assert list(sent_texts(emulator).values()) == ["Hi Ann, your code is 4711"]
    invalid = [line for line in results(summary) if line["status"] == "invalid"]
    assert sorted(line["row"] for line in invalid) == [2, 3, 4, 5, 6]
    assert {line["field"] for line in invalid} == {"to", "message"}


def test_a_bad_option_fails_once_before_reading_rows(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("op_bad_sender", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="codes", recipients=PEOPLE, message=TEMPLATE, sender="Not-Valid!", retries=0)
    assert task_states(run(run_dag, dag)) == {"codes": "failed"}
    assert emulator.stats()["actions"] == {}


def test_mapped_fan_out_over_shards_in_a_pool(run_dag: Callable[..., Any], globesms_conn: Any, tmp_path: Path) -> None:
    from airflow.models.pool import Pool

    emulator = globesms_conn()
    Pool.create_or_update_pool("sms_shards", slots=2, description="splits the account's QPS", include_deferred=False)
    shards = []
    for shard in range(3):
        path = tmp_path / f"shard-{shard}.csv"
        path.write_text("to,name\n" + "".join(f"+8529{shard + 1}{n:06d},C{shard}-{n}\n" for n in range(40)))
        shards.append(str(path))
    with DAG("op_fan_out", schedule=None) as dag:
        SendGlobeSmsOperator.partial(
            task_id="send",
            message="Hi {{ recipient.name }}",
            max_qps=100,  # 3 shards x 100/s, two at a time by the pool: the account sees at most 200/s
            pool="sms_shards",
            map_index_template="{{ task.recipients.rsplit('/', 1)[-1] }}",
        ).expand(recipients=shards)
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"send[0]": "success", "send[1]": "success", "send[2]": "success"}
    summaries = xcom_values(dag_run, "send")
    assert [s["accepted"] for s in summaries] == [40, 40, 40]
    assert len({s["results_uri"] for s in summaries}) == 3
    assert len({s["campaign_id"] for s in summaries}) == 3
    assert len(emulator.messages()) == 120
    assert emulator.stats()["windows"]["SendMessageToGlobe"]["AKID"]["peak_offered_1s"] <= 200


def test_running_the_same_run_again_sends_nothing_twice(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("op_rerun", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="codes", recipients=PEOPLE, message=TEMPLATE)
    first = run(run_dag, dag)
    second = run(run_dag, dag)  # the same run id: what clearing the task does
    assert first.run_id == second.run_id
    (summary,) = xcom_values(second, "codes")
    # The summary gives every recipient's final status; none was sent again.
    assert (summary["accepted"], summary["skipped_already_sent"], summary["sent"]) == (3, 3, 0)
    assert len(emulator.messages()) == 3
    assert {line["status"] for line in results(summary)} == {"accepted"}  # with the first run's MessageIds
    assert {line["message_id"] for line in results(summary)} == {m["message_id"] for m in emulator.messages()}


def test_a_changed_text_is_a_new_message(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    """The ledger keys on the text too: a corrected template is sent, an unchanged one is not."""
    emulator = globesms_conn()
    for text in ("Hi {{ recipient.name }}", "Hi {{ recipient.name }}!", "Hi {{ recipient.name }}"):
        with DAG("op_changed_text", schedule=None) as dag:
            SendGlobeSmsOperator(task_id="codes", recipients=PEOPLE[:1], message=text)
        run(run_dag, dag)
    assert sorted(m["message"] for m in emulator.messages()) == ["Hi Ann", "Hi Ann!"]


def test_constructor_rejects_contradictions() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        SendGlobeSmsOperator(task_id="x", message="m", to="+85291234567", recipients=PEOPLE)
    with pytest.raises(ValueError, match="exactly one of"):
        SendGlobeSmsOperator(task_id="x", message="m")
    with pytest.raises(ValueError, match="on_invalid"):
        SendGlobeSmsOperator(task_id="x", message="m", to="+85291234567", on_invalid="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("executor", "ledger", "warned"),
    [
        ("CeleryExecutor", "/var/airflow/globesms/x", True),
        ("KubernetesExecutor,LocalExecutor", "/var/airflow/globesms/x", True),
        ("CeleryExecutor", "s3://shared/globesms/x", False),
        ("LocalExecutor", "/var/airflow/globesms/x", False),
    ],
)
def test_a_ledger_other_workers_cannot_see_is_flagged(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    executor: str,
    ledger: str,
    warned: bool,
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    warn_if_ledger_is_not_shared(SendGlobeSmsOperator(task_id="x", to="+85291234567", message="m").log, ledger)
    logged = capfd.readouterr().out + caplog.text
    assert ("a retry on another worker cannot see it" in logged) is warned


def test_the_connection_id_is_templated_in_the_operator_sensor_and_notifier(
    run_dag: Callable[..., Any], globesms_conn: Any
) -> None:
    """As in every official provider: `globesms_conn_id="{{ params.sms_conn }}"` picks the connection per run."""
    from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier
    from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor

    emulator = globesms_conn("sms_from_params")
    conn = "{{ params.sms_conn }}"
    alert = GlobeSmsNotifier(to="+85291234567", message="{{ ti.task_id }} failed", globesms_conn_id=conn)
    with DAG("conn_id_templated", schedule=None, params={"sms_conn": "sms_from_params"}) as dag:
        send = SendGlobeSmsOperator(task_id="send", to="+85291234568", message="hi", globesms_conn_id=conn)
        GlobeSmsDeliverySensor(task_id="receipts", messages=send.output, globesms_conn_id=conn, poke_interval=0.2)

        @task(on_failure_callback=alert, retries=0)
        def broken() -> None:
            raise RuntimeError("x")

        send >> broken()
    assert task_states(run_dag(dag)) == {"send": "success", "receipts": "success", "broken": "failed"}
    assert sorted(m["message"] for m in emulator.messages()) == ["broken failed", "hi"]
