"""GlobeSmsNotifier in real DAG runs: one alert per event, rendered, and never hiding the real error."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_provider_globesms.client.rules.segments import count_segments
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.notifications.globesms import (
    GlobeSmsNotifier,
    default_message,
    send_globe_sms_notification,
)
from airflow_provider_globesms.testing import task_states
from tests.airflow_compat import NOTIFIER_ASKS_ITSELF_FIRST, async_callback, serialize_dag

ON_CALL = "+85291234567"


def texts(emulator: EmulatorServer) -> list[str]:
    return [m["message"] for m in emulator.messages()]


def test_a_failing_task_sends_exactly_one_rendered_alert(
    run_dag: Callable[..., Any], globesms_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL, message="{{ dag.dag_id }}.{{ ti.task_id }} failed on {{ ds }}")
    with DAG("ntf_task_failure", schedule=None) as dag:

        @task(on_failure_callback=alert, retries=0)
        def load() -> None:
            raise RuntimeError("warehouse unreachable")

        load()
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"load": "failed"}
    (text,) = texts(emulator)
    assert text.startswith("ntf_task_failure.load failed on ")
    logged = capfd.readouterr().out
    assert "warehouse unreachable" in logged  # the original error is what the task reports
    assert "Alert SMS to +852****4567 accepted" in logged


def test_a_dag_level_failure_callback_sends_one_alert(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    alert = send_globe_sms_notification(to=[ON_CALL], message="DAG {{ dag.dag_id }} failed: {{ reason }}")
    with DAG("ntf_dag_failure", schedule=None, on_failure_callback=alert) as dag:

        @task(retries=0)
        def extract() -> None:
            raise ValueError("bad input")

        extract()
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"extract": "failed"}
    (text,) = texts(emulator)
    assert text.startswith("DAG ntf_dag_failure failed:")


def test_retry_and_success_callbacks(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    attempts: list[int] = []
    with DAG("ntf_retry_success", schedule=None) as dag:

        @task(
            retries=1,
            retry_delay=0,
            # storm_window=None: every callback texts (the recovery would otherwise fold into a digest)
            on_retry_callback=GlobeSmsNotifier(to=ON_CALL, message="{{ ti.task_id }} retrying", storm_window=None),
            on_success_callback=GlobeSmsNotifier(to=ON_CALL, message="{{ ti.task_id }} recovered", storm_window=None),
        )
        def flaky() -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("first try fails")

        flaky()
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"flaky": "success"}
    assert texts(emulator) == ["flaky retrying", "flaky recovered"]


def test_the_default_message_fits_one_segment(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    with DAG("ntf_default", schedule=None) as dag:

        @task(on_failure_callback=GlobeSmsNotifier(to=ON_CALL), retries=0)
        def transform() -> None:
            raise RuntimeError("boom")

        transform()
    run_dag(dag)
    (text,) = texts(emulator)
    assert text.startswith("Airflow: ntf_default.transform failed (try 1)")
    assert count_segments(text).segments == 1
    assert count_segments(text).encoding == "GSM-7"


def test_default_message_shortens_in_steps() -> None:
    ti = {
        "dag_id": "etl",
        "task_id": "load",
        "run_id": "scheduled__2026-11-21T00:00:00+00:00",
        "try_number": 2,
        "state": "failed",
        "log_url": "http://airflow.example.com/dags/etl/runs/x/tasks/load?try_number=2",
    }
    assert default_message({"ti": ti}) == (
        "Airflow: etl.load failed (try 2) run scheduled__2026-11-21T00:00:00+00:00 "
        "airflow.example.com/dags/etl/runs/x/tasks/load?try_number=2"
    )
    long_ti = {**ti, "dag_id": "d" * 60, "log_url": "https://airflow.example.com/" + "x" * 120}
    text = default_message({"ti": long_ti})
    assert len(text) <= 160
    assert text.startswith(f"Airflow: {'d' * 60}.load failed (try 2)")
    dag_level = default_message({"dag_run": {"dag_id": "etl", "run_id": "r1", "state": "failed"}})
    assert dag_level == "Airflow: etl failed run r1"


def test_a_failed_alert_is_logged_and_never_hides_the_task_error(
    run_dag: Callable[..., Any], globesms_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=["+8613800138000", ON_CALL], message="load failed")
    emulator.set_faults(script=["unavailable"] * 8)  # every try refused: the client gives up
    with DAG("ntf_alert_fails", schedule=None) as dag:

        @task(on_failure_callback=alert, retries=0)
        def load() -> None:
            raise RuntimeError("the real problem")

        load()
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"load": "failed"}
    logged = capfd.readouterr().out
    assert "the real problem" in logged
    assert "Alert SMS to +86****8000 not sent" in logged
    assert "Chinese mainland" in logged
    assert "Alert SMS to +852****4567 not sent" in logged
    assert "ServiceUnavailable" in logged


def test_an_alert_whose_answer_was_lost_is_reported_arrived_not_failed(
    run_dag: Callable[..., Any], globesms_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = globesms_conn()
    emulator.set_faults(script=["internal_error"])  # accepted and stored, yet answered with a 500
    with DAG("ntf_alert_answer_lost", schedule=None) as dag:

        @task(on_failure_callback=GlobeSmsNotifier(to=ON_CALL, message="load failed"), retries=0)
        def load() -> None:
            raise RuntimeError("the real problem")

        load()
    run_dag(dag)
    logged = capfd.readouterr().out
    assert "Alert SMS to +852****4567 arrived at the API" in logged
    assert len(emulator.messages()) == 1  # the replay proved it arrived; no second alert


def test_an_unreachable_api_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_GLOBESMS_DEFAULT",
        json.dumps(
            {
                "conn_type": "globesms",
                "login": "AKID",
                "password": "SECRET",
                "extra": {"endpoint": "http://127.0.0.1:9"},
            }
        ),
    )
    GlobeSmsNotifier(to=ON_CALL, message="hi").notify({})  # returns, having logged
    logged = capfd.readouterr().out
    assert "Alert SMS to +852****4567 not sent" in logged
    assert "could not connect" in logged


def test_the_deadline_alert_path_awaits_the_notifier(globesms_conn: Any) -> None:
    """Deadline alerts run ``await Notifier(**kwargs, context=...)`` in the triggerer."""
    emulator = globesms_conn()
    assert "context" in inspect.signature(GlobeSmsNotifier).parameters  # what Airflow checks
    context = {"dag_run": {"dag_id": "nightly", "run_id": "scheduled__2026-11-21"}, "deadline": {"id": 1}}

    async def missed_deadline() -> None:
        await GlobeSmsNotifier(to=ON_CALL, context=context)  # type: ignore[arg-type]

    asyncio.run(missed_deadline())
    assert texts(emulator) == ["Airflow: nightly missed its deadline run scheduled__2026-11-21"]


def test_templated_recipients(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to="{{ params.on_call }}", message="{{ ti.task_id }} failed")
    with DAG("ntf_templated_to", schedule=None, params={"on_call": "+6591234567"}) as dag:

        @task(on_failure_callback=alert, retries=0)
        def publish() -> None:
            raise RuntimeError("x")

        publish()
    run_dag(dag)
    assert [m["to"] for m in emulator.messages()] == ["6591234567"]


def test_airflow_accepts_the_notifier_as_a_deadline_alert_callback() -> None:
    from datetime import timedelta

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    alert = DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(hours=1),
        callback=async_callback()(GlobeSmsNotifier, kwargs={"to": [ON_CALL], "message": "nightly is late"}),
    )
    with DAG("ntf_deadline", schedule=None, deadline=alert) as dag:
        EmptyOperator(task_id="noop")
    serialized = serialize_dag(dag)
    assert "airflow_provider_globesms.notifications.globesms.GlobeSmsNotifier" in str(serialized)


def test_an_alert_whose_template_fails_still_goes_out_with_the_default_text(
    run_dag: Callable[..., Any], globesms_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """`{{ ds }}` in a run without a logical date (REST API, assets) used to lose the DAG-level alert."""
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL, message="DAG {{ dag.dag_id }} failed on {{ no_such_variable.day }}")
    with DAG("ntf_broken_template", schedule=None, on_failure_callback=alert) as dag:

        @task(retries=0)
        def extract() -> None:
            raise ValueError("bad input")

        extract()
    run_dag(dag)
    (text,) = texts(emulator)
    assert text.startswith("Airflow: ntf_broken_template")
    assert "Alert message template failed (UndefinedError" in capfd.readouterr().out


class SchedulersDag:
    """What a DAG-level callback may get from the scheduler: a serialized DAG, with no Jinja environment and no
    ``render_template_as_native_obj``."""

    dag_id = "nightly"


@pytest.mark.parametrize(
    ("dag", "to", "expected_to"),
    [
        pytest.param(
            SchedulersDag(),
            "{{ params.on_call }}",
            ["6591234567"],
            marks=pytest.mark.skipif(
                not NOTIFIER_ASKS_ITSELF_FIRST,
                reason="Airflow 3.1's BaseNotifier reads render_template_as_native_obj from the DAG itself (3.2 asks "
                "the notifier first); 3.1's own serialized DAG has the attribute",
            ),
        ),
        (
            DAG("ntf_native", schedule=None, render_template_as_native_obj=True),
            "{{ params.pair }}",
            ["6591234567", "85291234567"],
        ),
        (DAG("ntf_text", schedule=None), "{{ params.on_call }}", ["6591234567"]),
    ],
)
def test_the_alert_renders_with_what_the_callbacks_dag_can_give(
    globesms_conn: Any, dag: Any, to: str, expected_to: list[str]
) -> None:
    """The DAG's native-object setting is followed when it has one (a list stays a list); a DAG that has no
    Jinja environment and no setting gets the defaults, and the alert still goes out."""
    emulator = globesms_conn()
    params = {"on_call": "+6591234567", "pair": ["+6591234567", ON_CALL]}
    context = {"dag": dag, "params": params, "dag_run": {"dag_id": "nightly", "run_id": "r1", "state": "failed"}}
    GlobeSmsNotifier(to=to, message="{{ dag.dag_id }} failed")(context)
    assert sorted(m["to"] for m in emulator.messages()) == expected_to
    assert set(texts(emulator)) == {f"{dag.dag_id} failed"}
