"""GlobeSmsNotifier's storm control against the emulator and in dag.test(): a callback run twice sends once,
a storm sends one alert and one digest, the store unavailable still sends every alert, the sweeper trigger
sends a digest once, and the deadline (async) path folds too. Numbers are masked in every log line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_provider_globesms.alerting import storm_control
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier
from airflow_provider_globesms.testing import task_states
from airflow_provider_globesms.triggers.alert_digests import AlertDigestTrigger

ON_CALL = "+85291234567"


def texts(emulator: EmulatorServer) -> list[str]:
    return [m["message"] for m in emulator.messages()]


def failure(task_id: str, try_number: int = 1, dag_id: str = "etl") -> dict[str, Any]:
    """A task failure callback's context, as Airflow gives it (the parts the notifier reads)."""
    log_url = f"http://airflow.example.com/dags/{dag_id}/runs/r1/tasks/{task_id}?try_number={try_number}"
    ti = {"dag_id": dag_id, "task_id": task_id, "run_id": "r1", "try_number": try_number, "map_index": -1}
    return {"ti": {**ti, "state": "failed", "log_url": log_url}}


def test_a_callback_that_airflow_runs_twice_sends_once(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    """The same notifier twice in the callback list: Airflow calls it twice for one failure."""
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL)
    with DAG("ntf_twice", schedule=None) as dag:

        @task(on_failure_callback=[alert, alert], retries=0)
        def load() -> None:
            raise RuntimeError("warehouse unreachable")

        load()
    assert task_states(run_dag(dag)) == {"load": "failed"}
    (text,) = texts(emulator)
    assert text.startswith("Airflow: ntf_twice.load failed (try 1)")


def test_a_storm_in_one_window_is_one_alert_then_one_digest(
    globesms_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=[ON_CALL, "+85291234568"], storm_window=1.5)
    for n in range(20):
        alert.notify(failure(f"load_{n % 4}", try_number=n // 4 + 1))  # type: ignore[arg-type]
    assert len(texts(emulator)) == 2  # the first alert, to each
    time.sleep(1.6)
    GlobeSmsNotifier(to="+447911123456", storm_window=1.5).notify(failure("other"))  # type: ignore[arg-type]
    digests = [t for t in texts(emulator)[2:] if "more since" in t]
    assert len(digests) == 2  # swept by the next callback, though it alerts someone else
    assert all(d.startswith("Airflow: +19 more since ") for d in digests), digests
    assert "etl.load_1 x5, etl.load_2 x5, etl.load_3 x5, etl.load_0 x4 airflow.example.com/dags/etl" in digests[0]
    logged = capfd.readouterr().out
    assert logged.count("not sent now: folded into the digest of the window until ") == 38
    assert "85291234567" not in logged.replace("+852****4567", "")  # every number masked
    assert "91234567" not in logged


def test_a_failure_read_as_still_running_is_the_same_alert(globesms_conn: Any) -> None:
    """The dag-processor's failure callback for a task whose heartbeat timed out may see the state it had
    (running) while the worker's own callback sees failed: one failure, one alert."""
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL, storm_window=0)
    alert.notify(failure("load"))  # type: ignore[arg-type]
    stale = failure("load")
    stale["ti"]["state"] = "running"
    alert.notify(stale)  # type: ignore[arg-type]
    retry = failure("load")
    retry["ti"]["state"] = "up_for_retry"
    alert.notify(retry)  # type: ignore[arg-type]  # a retry alert is another kind: sent
    assert len(texts(emulator)) == 2


def test_the_store_unavailable_still_sends_every_alert(
    tmp_path: Path, globesms_conn: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = globesms_conn()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    alert = GlobeSmsNotifier(to=ON_CALL, alerts_uri=str(blocker / "alerts"))
    for n in range(3):
        alert.notify(failure(f"load_{n}"))  # type: ignore[arg-type]
    assert len(texts(emulator)) == 3  # never silenced
    logged = capfd.readouterr().out
    assert logged.count("Alert storm control unavailable (NotADirectoryError") == 3
    assert logged.count("sending the alert to +852****4567 as it is") == 3


def test_an_alerts_uri_airflow_cannot_open_still_sends(globesms_conn: Any, capfd: pytest.CaptureFixture[str]) -> None:
    emulator = globesms_conn()
    GlobeSmsNotifier(to=ON_CALL, alerts_uri="nosuch://bucket/alerts").notify(failure("load"))  # type: ignore[arg-type]
    assert len(texts(emulator)) == 1
    assert "Alert storm control unavailable" in capfd.readouterr().out


def test_storm_control_off_texts_every_call(globesms_conn: Any, own_alert_windows: Path) -> None:
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL, storm_window=None)
    for _ in range(3):
        alert.notify(failure("load"))  # type: ignore[arg-type]
    assert len(texts(emulator)) == 3
    assert list(own_alert_windows.iterdir()) == []  # nothing stored


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("storm_window", -1, "storm_window must be between 0 and 1 day"),
        ("storm_window", 86401, "storm_window must be between 0 and 1 day"),
        ("storm_window", True, "storm_window must be between 0 and 1 day"),
        ("daily_cap", 0, "daily_cap must be a whole number of texts"),
        ("daily_cap", 2.5, "daily_cap must be a whole number of texts"),
    ],
)
def test_bad_settings_are_refused_when_the_dag_is_parsed(field: str, value: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        GlobeSmsNotifier(to=ON_CALL, **{field: value})


def test_the_window_comes_from_the_configuration_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__GLOBESMS__ALERT_WINDOW", "42")
    assert GlobeSmsNotifier(to=ON_CALL)._route(ON_CALL).window == 42
    assert GlobeSmsNotifier(to=ON_CALL, storm_window=7)._route(ON_CALL).window == 7
    monkeypatch.delenv("AIRFLOW__GLOBESMS__ALERT_WINDOW")
    assert GlobeSmsNotifier(to=ON_CALL)._route(ON_CALL).window == 600


def test_the_async_path_folds_too(globesms_conn: Any) -> None:
    """Deadline alerts run ``async_notify`` in the triggerer: the same windows, without blocking the loop."""
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL, storm_window=1)

    async def storm() -> None:
        for n in range(5):
            await alert.async_notify(failure(f"load_{n}"))  # type: ignore[arg-type]
        await asyncio.sleep(1.1)
        await alert.async_notify(failure("late"))  # type: ignore[arg-type]

    asyncio.run(storm())
    sent = texts(emulator)
    assert len(sent) == 2
    assert sent[1].startswith("Airflow: etl.late failed (try 1) +4 more since ")


def test_the_sweeper_trigger_sends_each_digest_once(globesms_conn: Any) -> None:
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL, storm_window=0.5)
    for n in range(4):
        alert.notify(failure(f"load_{n}"))  # type: ignore[arg-type]
    time.sleep(0.6)
    trigger = AlertDigestTrigger(every=0.1)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_globesms.triggers.alert_digests.AlertDigestTrigger"

    async def two_sweepers() -> list[Any]:
        first, second = AlertDigestTrigger(**kwargs).run(), AlertDigestTrigger(**kwargs).run()
        event = await asyncio.wait_for(anext(first), 10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(second), 1)  # the second sweeper finds nothing to send
        await first.aclose()  # type: ignore[attr-defined]  # run() is an async generator
        return [event]

    (event,) = asyncio.run(two_sweepers())
    assert event.payload["to"] == "+852****4567"
    assert event.payload["kind"] == "digest"
    assert event.payload["alerts"] == 3
    sent = texts(emulator)
    assert len(sent) == 2
    assert sent[1].startswith("Airflow: +3 more since ")
    assert storm_control().sweep() == []


def test_dag_callbacks_with_the_minimal_context_are_one_alert_per_run(globesms_conn: Any) -> None:
    """Airflow gives a DAG callback only the DAG, run id and reason when no task instance is left."""
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL, storm_window=0)
    for run_id in ("scheduled__2026-11-20", "scheduled__2026-11-21", "scheduled__2026-11-21"):
        alert.notify({"dag": None, "run_id": run_id, "reason": "task_failure"})  # type: ignore[typeddict-item]
    assert len(texts(emulator)) == 2  # two runs; the second run's callback ran twice


def test_a_muted_digest_is_logged(globesms_conn: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """A cap of one text a day: the first alert; the next window's digest becomes the muted notice; the one
    after that is silent, and the log says so."""
    emulator = globesms_conn()
    alert = GlobeSmsNotifier(to=ON_CALL, storm_window=0.5, daily_cap=1)
    other = GlobeSmsNotifier(to="+447911123456", storm_window=0)
    for batch in (range(3), range(3, 6)):
        for n in batch:
            alert.notify(failure(f"load_{n}"))  # type: ignore[arg-type]
        time.sleep(0.6)
        other.notify(failure(f"other_{batch[0]}"))  # type: ignore[arg-type]  # sweeps on the side
    to_on_call = [m["message"] for m in emulator.messages() if m["to"] == ON_CALL.lstrip("+")]
    assert len(to_on_call) == 2
    assert "muted until" in to_on_call[1]
    assert "Alert window closed with no text: muted: the daily cap of 1 texts was reached" in capfd.readouterr().out
