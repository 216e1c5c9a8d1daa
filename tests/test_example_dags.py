"""The example DAGs import cleanly and run to success against the emulator, as the demo runs them."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms._compat import conf, dag_bag
from airflow_provider_globesms.alerting import storm_control
from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.test_push_receiver import SECRET, serve_receiver

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"


def load(name: str) -> DAG:
    """The DAG of one example file, collected the way the dag processor collects it."""
    DagBag, _ = dag_bag()

    bag = DagBag(dag_folder=str(EXAMPLES / f"{name}.py"))
    assert bag.import_errors == {}
    dag: DAG = bag.dags[name]
    return dag


def test_every_example_imports_without_dagbag_errors() -> None:
    DagBag, _ = dag_bag()

    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "globesms_daily_notification",
        "globesms_templated_campaign",
        "globesms_failure_alerts",
        "globesms_fan_out",
        "globesms_weekly_promotion",
        "globesms_alert_storm",
        "globesms_alert_digests",
        "globesms_receipts_by_push",
    }


def test_daily_notification(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    dag_run = run_dag(load("globesms_daily_notification"))
    assert task_states(dag_run) == {"report_ready": "success"}
    assert len(emulator.messages()) == 3
    assert all(m["from"] == "Reports" for m in emulator.messages())


def test_templated_campaign_with_receipts(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    emulator = globesms_conn()
    dag_run = run_dag(load("globesms_templated_campaign"))
    assert task_states(dag_run) == {
        "send_reminders": "success",
        "wait_for_receipts": "success",
        "summarize": "success",
    }
    (sent,) = xcom_values(dag_run, "send_reminders")
    assert (sent["accepted"], sent["invalid"]) == (10, 2)  # the mainland and the unallocated number
    assert {m["to"] for m in emulator.messages()} >= {"85291234567", "886912345678"}
    (delivered,) = xcom_values(dag_run, "wait_for_receipts")
    assert delivered["delivered"] == 10


def test_receipts_by_push(
    run_dag: Callable[..., Any], globesms_conn: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The receiver on 127.0.0.1 (as the api-server serves it) keeps what the emulator pushes in
    ``[globesms] push_uri``; the deferred sensor settles the campaign from there: no QueryMessage call."""
    emulator = globesms_conn()
    store = tmp_path / "push"
    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_URI", str(store))
    with serve_receiver(PushStore(store)) as served:
        emulator.set_push(
            push_url=f"http://127.0.0.1:{served.port}/globesms/push/{SECRET}/receipts", push_retry=[0.2, 0.5]
        )
        dag_run = run_dag(load("globesms_receipts_by_push"))
    assert task_states(dag_run) == {
        "send_updates": "success",
        "wait_for_pushed_receipts": "success",
        "report": "success",
    }
    (receipts,) = xcom_values(dag_run, "wait_for_pushed_receipts")
    assert (receipts["tracked"], receipts["receipts_pushed"], receipts["pending"]) == (4, 4, 0)
    assert emulator.stats()["actions"].get("QueryMessage", {}).get("requests", 0) == 0
    assert len(emulator.messages()) == 4


@pytest.mark.parametrize(
    ("simulate", "state", "alerts"),
    [
        ("none", "success", 0),
        ("transient", "success", 1),  # the retry alert
        # The retry alert goes at once; the task's and the DAG's failure alerts come within the window (storm
        # control, on by default): they fold into its digest, sent when it ends.
        ("outage", "failed", 1),
    ],
)
def test_failure_alerts(
    run_dag: Callable[..., Any],
    globesms_conn: Any,
    monkeypatch: pytest.MonkeyPatch,
    simulate: str,
    state: str,
    alerts: int,
) -> None:
    emulator = globesms_conn()
    monkeypatch.setenv("AIRFLOW__GLOBESMS__ALERT_WINDOW", "2")
    dag_run = run_dag(load("globesms_failure_alerts"), run_conf={"simulate": simulate})
    assert dag_run.state == state
    texts = [m["message"] for m in emulator.messages()]
    if simulate != "outage":
        assert len(texts) == alerts
        return
    # The window is 2 s: on a slow machine the later alerts may come after it, carried by a text of their own.
    assert texts[0] == "globesms_failure_alerts.load failed, retrying (try 1)"
    time.sleep(2.5)  # the last window ends; the sweeper's work, done here by hand
    texts += [v.text.body for v in storm_control().sweep() if v.text]
    assert sum(map(reported, texts)) == 3, texts  # the retry, the task's failure, the DAG's failure: once each
    if len(texts) == 2 and texts[1].startswith("Airflow: +"):  # both later alerts folded into the sweeper's digest
        assert texts[1].startswith("Airflow: +2 more since ")
        assert "globesms_failure_alerts x1, globesms_failure_alerts.load x1" in texts[1]


def reported(text: str) -> int:
    """How many alerts a text reports: itself (unless a digest), and a digest's "+N more"."""
    more = re.search(r"\+(\d+) more since \d\d:\d\d UTC", text)
    return (0 if text.startswith("Airflow: +") else 1) + (int(more.group(1)) if more else 0)


def test_alert_storm(run_dag: Callable[..., Any], globesms_conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve shards fail: each on-call phone gets the first alert, then the others in a digest. Each alert is
    reported once; a slow machine may spread the failures over two windows (a text carries the backlog)."""
    emulator = globesms_conn()
    monkeypatch.setenv("AIRFLOW__GLOBESMS__ALERT_WINDOW", "2")
    dag_run = run_dag(load("globesms_alert_storm"), run_conf={"failures": 12})
    assert dag_run.state == "failed"
    sent: dict[str, list[str]] = {}
    for message in emulator.messages():
        sent.setdefault(message["to"], []).append(message["message"])
    assert sorted(sent) == ["85291234567", "85291234568"]  # the emulator keeps numbers as sent: no "+"
    assert all(t[0].startswith("Airflow: globesms_alert_storm.load failed (try 1)") for t in sent.values())
    time.sleep(2.5)  # the last window ends; the sweeper's work, done here by hand
    for digest in [v.text for v in storm_control().sweep() if v.text]:
        sent[digest.route.to].append(digest.body)
    for texts in sent.values():
        assert sum(map(reported, texts)) == 12, texts
        # The backlog goes in the sweeper's digest, or with the next alert when a slow run crosses a window's end.
        digests = [t for t in texts if " more since " in t]
        assert digests, texts
        assert len(texts) < 12, texts
        assert all("globesms_alert_storm.load x" in t for t in digests), texts
    assert storm_control().sweep() == []  # once


def test_fan_out(run_dag: Callable[..., Any], globesms_conn: Any) -> None:
    """No pool to create, no file to prepare: it writes its own sample beside the ledgers and removes it."""
    emulator = globesms_conn()
    examples_before = sorted(p.name for p in EXAMPLES.rglob("*"))
    dag_run = run_dag(load("globesms_fan_out"), run_conf={"sample_rows": 600, "shards": 3})
    states = task_states(dag_run)
    assert states == {
        "split": "success",
        "send_shard[0]": "success",
        "send_shard[1]": "success",
        "send_shard[2]": "success",
        "total": "success",
    }
    (total,) = xcom_values(dag_run, "total")
    assert total["accepted"] == 600
    assert len(emulator.messages()) == 600
    assert sorted(p.name for p in EXAMPLES.rglob("*")) == examples_before  # nothing written beside the DAGs
    work = Path(conf.get("core", "dags_folder")).parent / "globesms" / "examples-data" / "globesms_fan_out"
    assert work.is_dir()
    assert not any(work.rglob("*.csv"))  # the run's input and shards are gone once every shard succeeded


def test_weekly_promotion_keeps_quiet_hours_opt_outs_and_budget(
    run_dag: Callable[..., Any], globesms_conn: Any, quiet_hours_clock: Callable[[Any], Any]
) -> None:
    """At 02:00 UTC: Hong Kong (10:00) and Australia are awake, London and the US are not; the run defers
    to the triggerer until each wakes (the clock jumps to each moment, which lies in the past), and ends
    with every allowed customer texted once."""
    from datetime import datetime, timezone

    quiet_hours_clock(datetime(2026, 11, 16, 2, tzinfo=timezone.utc))
    emulator = globesms_conn()
    dag_run = run_dag(load("globesms_weekly_promotion"))
    assert task_states(dag_run) == {"send_promotion": "success"}
    (summary,) = xcom_values(dag_run, "send_promotion")
    assert (summary["accepted"], summary["suppressed"], summary["invalid"], summary["held"]) == (7, 2, 1, 0)
    assert len(summary["quiet_hours_rounds"]) > 1  # it deferred at least once
    assert sorted(m["to"] for m in emulator.messages()) == sorted(
        {"85291234567", "447400123456", "12125550123", "13105550142", "61412345678", "61412345679", "85366123456"}
    )
    assert summary["estimated_cost"] > 0
