"""The examples in a real Airflow (issue 11): api-server, scheduler, dag-processor and triggerer, LocalExecutor
on SQLite, in a temporary AIRFLOW_HOME on free loopback ports, with the example DAGs copied into its DAGs folder.

Every example is triggered through the REST API v2, with and without a logical date (the failure-alert DAG in
each `simulate` mode). The test checks final states, that the receipts sensor deferred and the triggerer ran
its trigger, that the fan-out's shards overlapped in time within the account's cap, the emulator's count of
messages per campaign (each recipient exactly once; clearing a finished task resends nothing), and that no log
holds the secret or a full number. The emulator pushes its receipts to the push receiver the provider's plugin
serves inside the api-server (``[globesms] push_secret``); the receipts-by-push example's sensor defers and
completes from them, without one QueryMessage call. About two minutes; `-m "not live"` leaves it out.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import secrets
import shutil
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_globesms.links import campaign_url
from airflow_provider_globesms.operators.globesms import default_campaign_id
from tests.live_airflow import LiveAirflow, reported, storm_spread
from tests_cluster import parts

pytestmark = [pytest.mark.live, pytest.mark.timeout(900)]

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
KEY_ID, SECRET = "LIVEKEYID", "live-Secret-0f9e8d7c6b5a"
DATED = "2026-11-01T08:00:00Z"
FAN_OUT_ROWS, FAN_OUT_SHARDS = 6000, 4
PUSH_SECRET = secrets.token_urlsafe(32)  # 43 characters, as the receipts-push page tells users to make one
PUSH_DAG, PUSH_SEND, PUSH_SENSOR = "globesms_receipts_by_push", "send_updates", "wait_for_pushed_receipts"
QUERIED: Counter[str] = Counter()  # MessageId -> QueryMessage calls the emulator answered about it


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    # Receipts take 24-36 s: the sensor finds them pending on its first look (even when it starts late on a
    # loaded machine, with ten runs at once) and defers to the triggerer; the quiet-hours run takes longer.
    with EmulatorServer(EmulatorConfig(keys={KEY_ID: SECRET}, delivery_delay=30)) as server:
        count_queries(server)
        yield server


def count_queries(server: EmulatorServer) -> None:
    """Count each QueryMessage the emulator (in this process) answers, by MessageId: its stats count calls
    by action only, and the templated campaign's sensors poll while the pushed one must not."""
    operations, lock = server.gateway.operations, threading.Lock()
    answer = operations.query

    def query(key_id: str, params: Any, now: float, request_id: str) -> Any:
        with lock:
            QUERIED[params.get("MessageId", "")] += 1
        return answer(key_id, params, now, request_id)

    operations.query = query  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def airflow(emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    home = tmp_path_factory.mktemp("live-airflow")
    shutil.copytree(EXAMPLES, home / "dags")  # a copied examples folder, as a user would deploy it
    (home / "dags" / "alert_twice.py").write_text(ALERT_TWICE)
    connection = {"conn_type": "globesms", "login": KEY_ID, "password": SECRET, "extra": {"endpoint": emulator.url}}
    env = {
        "AIRFLOW_CONN_GLOBESMS_DEFAULT": json.dumps(connection),
        "AIRFLOW__GLOBESMS__SANDBOX_URL": emulator.url,
        "AIRFLOW__GLOBESMS__ALERT_WINDOW": str(ALERT_WINDOW),
        # The plugin serves the push receiver in the api-server, keeping receipts in globesms/~push under the
        # home. receipts_by_push stays off globally: the templated campaign's sensor polls as before.
        "AIRFLOW__GLOBESMS__PUSH_SECRET": PUSH_SECRET,
    }
    with contextlib.ExitStack() as stack:
        if parts.postgres_installed():
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = stack.enter_context(parts.postgres())
        live = stack.enter_context(LiveAirflow(home, home / "dags", env))
        # Alibaba's HTTP batch push, to the api-server's port; retried within seconds, not minutes.
        push = f"{live.url}/globesms/push/{PUSH_SECRET}/receipts"
        emulator.set_push(push_url=push, push_retry=[2, 5, 10, 20], push_timeout=10)
        live.wait_for_dags([p.stem for p in EXAMPLES.glob("globesms_*.py")] + ["alert_twice"])
        yield live


def campaign_messages(emulator: EmulatorServer, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> int:
    return len(emulator.messages(task_id=default_campaign_id(dag_id, run_id, task_id, map_index)))


def states(airflow: LiveAirflow, dag_id: str, run_id: str) -> dict[str, str]:
    return {
        ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
        for ti in airflow.task_instances(dag_id, run_id)
    }


@pytest.fixture(scope="module")
def runs(airflow: LiveAirflow) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Trigger everything at once (as users do), then wait for every run: name -> (dag_id, run_id, run)."""
    for dag_id in [p.stem for p in EXAMPLES.glob("globesms_*.py")]:
        airflow.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    fan_out = {"sample_rows": FAN_OUT_ROWS, "shards": FAN_OUT_SHARDS}
    plan: dict[str, tuple[str, str | None, dict[str, Any]]] = {
        "promotion-quiet": ("globesms_weekly_promotion", None, quiet_now()),  # first: its window is timed
        "daily-undated": ("globesms_daily_notification", None, {}),
        "daily-dated": ("globesms_daily_notification", DATED, {}),
        "campaign-undated": ("globesms_templated_campaign", None, {}),
        "campaign-dated": ("globesms_templated_campaign", DATED, {}),
        "fan-out-undated": ("globesms_fan_out", None, fan_out),
        "alerts-none": ("globesms_failure_alerts", None, {"simulate": "none"}),
        "alerts-transient": ("globesms_failure_alerts", None, {"simulate": "transient"}),
        "alerts-outage-undated": ("globesms_failure_alerts", None, {"simulate": "outage"}),
        "alerts-outage-dated": ("globesms_failure_alerts", DATED, {"simulate": "outage"}),
        "push": (PUSH_DAG, None, {}),
    }
    triggered = {name: (dag, airflow.trigger(dag, conf, date)) for name, (dag, date, conf) in plan.items()}
    done = {name: (dag, run_id, airflow.wait_for_run(dag, run_id, 300)) for name, (dag, run_id) in triggered.items()}
    # A dated fan-out after the first one: two fan-outs at once would need a pool to share the cap (README).
    small = {"sample_rows": 400, "shards": 2}
    run_id = airflow.trigger("globesms_fan_out", small, DATED)
    done["fan-out-dated"] = ("globesms_fan_out", run_id, airflow.wait_for_run("globesms_fan_out", run_id, 300))
    return done


# Quiet hours that are on when the run is triggered in UTC+8 (Hong Kong, Macau, Perth) and end QUIET_FOR
# seconds later: those customers are held, the rest texted at once; the task defers to the real triggerer.
QUIET_FOR = 100  # the run must start before it ends, with nine others starting at the same time
QUIET_ENDS_AT: list[datetime] = []


def quiet_now() -> dict[str, str]:
    """The promotion's quiet hours, from an hour ago until QUIET_FOR seconds from now, in UTC+8."""
    now = datetime.now(timezone(timedelta(hours=8)))
    QUIET_ENDS_AT[:] = [now + timedelta(seconds=QUIET_FOR)]
    return {
        "quiet_start": (now - timedelta(hours=1)).strftime("%H:%M:%S"),
        "quiet_end": QUIET_ENDS_AT[0].strftime("%H:%M:%S"),
    }


HELD_AT_FIRST = {"85291234567", "85366123456", "61412345679"}  # Hong Kong, Macau, Perth (the row's zone)

EXPECTED = {
    "daily-undated": "success",
    "daily-dated": "success",
    "campaign-undated": "success",
    "campaign-dated": "success",
    "fan-out-undated": "success",
    "fan-out-dated": "success",
    "alerts-none": "success",
    "alerts-transient": "success",
    "alerts-outage-undated": "failed",
    "alerts-outage-dated": "failed",
    "promotion-quiet": "success",
    "push": "success",
}


def test_every_example_ends_as_expected_with_and_without_a_logical_date(
    airflow: LiveAirflow, runs: dict[str, tuple[str, str, dict[str, Any]]]
) -> None:
    ended = {name: run["state"] for name, (_, _, run) in runs.items()}
    details = {
        name: states(airflow, dag, run_id) for name, (dag, run_id, run) in runs.items() if ended[name] != EXPECTED[name]
    }
    assert ended == EXPECTED, f"{details}\n{airflow.report()}"
    assert runs["daily-undated"][2]["logical_date"] is None
    assert runs["daily-dated"][2]["logical_date"].startswith("2026-11-01")


def test_each_recipient_exactly_once_per_run(
    emulator: EmulatorServer, runs: dict[str, tuple[str, str, dict[str, Any]]]
) -> None:
    for name, task_id, expected in [
        ("daily-undated", "report_ready", 3),
        ("daily-dated", "report_ready", 3),
        ("campaign-undated", "send_reminders", 10),
        ("campaign-dated", "send_reminders", 10),
    ]:
        dag_id, run_id, _ = runs[name]
        assert campaign_messages(emulator, dag_id, run_id, task_id) == expected, name
    dag_id, run_id, _ = runs["fan-out-undated"]
    shards = [campaign_messages(emulator, dag_id, run_id, "send_shard", n) for n in range(FAN_OUT_SHARDS)]
    assert shards == [FAN_OUT_ROWS // FAN_OUT_SHARDS] * FAN_OUT_SHARDS
    dag_id, run_id, _ = runs["fan-out-dated"]
    assert [campaign_messages(emulator, dag_id, run_id, "send_shard", n) for n in range(2)] == [200, 200]
    numbers = [m["to"] for m in emulator.messages(limit=100_000)]
    fan_out_numbers = [n for n in numbers if n.startswith("8529100") or n.startswith("8529101")]
    assert len(fan_out_numbers) == FAN_OUT_ROWS + 400  # both runs draw from the same sample numbers
    assert len(set(fan_out_numbers)) == FAN_OUT_ROWS


def texts_to(emulator: EmulatorServer, number: str) -> list[dict[str, Any]]:
    return [m for m in emulator.messages(limit=100_000) if m["to"] == number and m["task_id"] is None]


def test_the_alerts_of_every_simulated_failure_are_reported_once_without_a_storm(
    airflow: LiveAirflow, emulator: EmulatorServer, runs: dict[str, Any]
) -> None:
    """Seven alerts to one phone within the window (3 retries, 2 task and 2 DAG failures): the first at once,
    the other six in one digest, sent by the sweeper DAG's watcher in the triggerer (no later alert came)."""

    def digest_sent() -> list[dict[str, Any]]:
        sent = texts_to(emulator, "85291234567")
        return sent if sum(reported(m["message"]) for m in sent) >= 7 else []

    sent = airflow.wait_for("the failure alerts' digest", digest_sent, timeout=ALERT_WINDOW + 120)
    messages = [m["message"] for m in sent]
    assert sum(map(reported, messages)) == 7, messages  # each alert once, none lost
    # Two texts when the seven fall in one window (as they do unless the machine stalls for minutes).
    assert len(sent) <= 3, messages
    assert messages[-1].startswith("Airflow: +"), messages  # the last is a digest: nothing came after it
    times = [m["submitted_at"] for m in sent]
    assert all(b - a >= ALERT_WINDOW - 1 for a, b in itertools.pairwise(times)), (
        times
    )  # arrival times, give or take a send
    swept = airflow.wait_for("the sweeper DAG's run", lambda: sweeper_lines(airflow), timeout=120)
    assert any("'to': '+852****4567', 'kind': 'digest'" in line for line in swept), swept


def sweeper_lines(airflow: LiveAirflow) -> list[str]:
    """What the digest sweeper DAG's runs logged: one line per digest the watcher's trigger sent."""
    logs = (airflow.home / "logs" / "dag_id=globesms_alert_digests").rglob("attempt=1.log")
    return [line for path in logs for line in path.read_text(errors="replace").splitlines() if "Alert digest:" in line]


# Storm control: each phone one text per window. A short window for the test; the storm's fifty tasks fail
# well within it even on a loaded 2-core machine (eight at a time).
ALERT_WINDOW = 90
STORM, SPACED, TWICE = ["+85291230001", "+85291230002"], "+85291230003", "+85291230004"
ALERT_TWICE = f"""
from datetime import datetime
from airflow.sdk import DAG, task
from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier

alert = GlobeSmsNotifier(to="{TWICE}")
with DAG("alert_twice", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    # The same callback twice for one failure, as Airflow itself may run a callback again.
    @task(retries=0, on_failure_callback=[alert, alert])
    def load():
        raise ConnectionError("warehouse down")

    load()
"""


@pytest.fixture(scope="module")
def storms(airflow: LiveAirflow, emulator: EmulatorServer, runs: dict[str, Any]) -> dict[str, Any]:
    """After the examples: a 50-task storm to two phones, one failure twice in one callback list, and two
    single failures to a third phone a window apart."""
    airflow.api("PATCH", "/dags/alert_twice", {"is_paused": False})
    storm = airflow.trigger("globesms_alert_storm", {"failures": 50, "on_call": STORM})
    twice = airflow.trigger("alert_twice")
    first = airflow.trigger("globesms_alert_storm", {"failures": 1, "on_call": [SPACED]})
    spaced = SPACED.lstrip("+")
    alerted = airflow.wait_for("the first spaced alert", lambda: texts_to(emulator, spaced), timeout=180)
    time.sleep(max(0.0, alerted[0]["submitted_at"] + ALERT_WINDOW + 2 - time.time()))
    second = airflow.trigger("globesms_alert_storm", {"failures": 1, "on_call": [SPACED]})
    ended = {
        "storm": airflow.wait_for_run("globesms_alert_storm", storm, 300),
        "twice": airflow.wait_for_run("alert_twice", twice, 300),
        "first": airflow.wait_for_run("globesms_alert_storm", first, 300),
        "second": airflow.wait_for_run("globesms_alert_storm", second, 300),
    }

    def digests() -> bool:
        return all(sum(reported(m["message"]) for m in texts_to(emulator, n.lstrip("+"))) >= 50 for n in STORM)

    airflow.wait_for("the storm's digests", digests, timeout=2 * ALERT_WINDOW + 120)
    return ended


def test_a_storm_of_fifty_failures_is_one_alert_and_one_digest_per_phone(
    airflow: LiveAirflow, emulator: EmulatorServer, storms: dict[str, Any]
) -> None:
    assert {name: run["state"] for name, run in storms.items()} == dict.fromkeys(storms, "failed")
    spread = storm_spread(airflow, "globesms_alert_storm", storms["storm"]["dag_run_id"])
    for number in STORM:
        sent = [m["message"] for m in texts_to(emulator, number.lstrip("+"))]
        assert sum(map(reported, sent)) == 50, (spread, sent)  # each alert once, none lost
        assert sent[0].startswith("Airflow: globesms_alert_storm.load failed (try 1)")
        assert any(" more since " in text for text in sent[1:]), sent  # the backlog, in a digest or with an alert
        if spread < ALERT_WINDOW - 5:  # all fifty within the window (unless the machine stalled for a minute)
            assert len(sent) == 2, (spread, sent)
            assert sent[1].startswith("Airflow: +"), sent  # the window's backlog, in the sweeper's digest
            assert "+49 more since " in sent[1]
            assert "globesms_alert_storm.load x49" in sent[1]


def test_two_failures_a_window_apart_are_two_alerts_and_no_digest(
    emulator: EmulatorServer, storms: dict[str, Any]
) -> None:
    sent = texts_to(emulator, SPACED.lstrip("+"))
    assert [m["message"].startswith("Airflow: globesms_alert_storm.load failed (try 1)") for m in sent] == [True] * 2
    assert sent[1]["submitted_at"] - sent[0]["submitted_at"] >= ALERT_WINDOW - 1
    assert not any("more since" in m["message"] for m in sent)


def test_a_callback_run_twice_sends_once(emulator: EmulatorServer, storms: dict[str, Any]) -> None:
    (sent,) = texts_to(emulator, TWICE.lstrip("+"))
    assert sent["message"].startswith("Airflow: alert_twice.load failed (try 1)")


def test_the_receipts_sensor_deferred_to_the_triggerer(airflow: LiveAirflow, runs: dict[str, Any]) -> None:
    dag_id, run_id, _ = runs["campaign-undated"]
    folder = airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=wait_for_receipts"
    task_log = (folder / "attempt=1.log").read_text(errors="replace")
    assert "DEFERRED" in task_log, task_log[-3000:]
    trigger_logs = [p.read_text(errors="replace") for p in folder.glob("attempt=1.log.trigger.*.log")]
    assert trigger_logs, f"the triggerer wrote no log for the trigger in {folder}"
    assert "Trigger fired event" in trigger_logs[0]
    assert "receipts: queried" in trigger_logs[0]  # our trigger's own polling, in the triggerer


def test_the_receipts_pushed_to_the_api_server_settle_the_deferred_sensor_without_a_query(
    airflow: LiveAirflow, emulator: EmulatorServer, runs: dict[str, Any]
) -> None:
    """Issue 28: the emulator pushes every receipt to the receiver inside the api-server, which keeps them in
    globesms/~push under the home; the sensor defers, and its trigger settles the campaign from the store."""
    dag_id, run_id, run = runs["push"]
    assert run["state"] == "success", (states(airflow, dag_id, run_id), airflow.report())
    campaign = default_campaign_id(dag_id, run_id, PUSH_SEND, -1)
    sent = {m["message_id"] for m in emulator.messages(task_id=campaign)}
    assert len(sent) == 4
    quoted = urllib.parse.quote(run_id, safe="")
    path = f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{PUSH_SENSOR}/xcomEntries/return_value"
    summary = airflow.api("GET", path)["value"]
    assert (summary["tracked"], summary["receipts_pushed"], summary["pending"]) == (4, 4, 0), summary
    assert not sum(QUERIED[m] for m in sent), {m: QUERIED[m] for m in sent}  # not one QueryMessage about them
    assert sum(QUERIED.values()) > 0  # while the templated campaign's sensors did poll (the spy counts)
    folder = airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={PUSH_SENSOR}"
    task_log = (folder / "attempt=1.log").read_text(errors="replace")
    assert "DEFERRED" in task_log, task_log[-3000:]
    trigger_logs = [p.read_text(errors="replace") for p in folder.glob("attempt=1.log.trigger.*.log")]
    assert trigger_logs, f"the triggerer wrote no log for the trigger in {folder}"
    assert "Trigger fired event" in trigger_logs[0]
    assert "pushed receipts: read" in trigger_logs[0]
    assert "receipts: queried" not in task_log + trigger_logs[0]
    store = PushStore(airflow.home / "globesms" / "~push")
    stored = {r.message_id for _, batch in store.receipts(campaign) for r in batch}
    assert stored == sent
    stats = emulator.push_stats()
    assert stats["pushes_ok"] > 0, stats
    assert stats["pushes_given_up"] == 0, stats


def test_quiet_hours_defer_to_the_triggerer_and_each_customer_gets_one_text(
    airflow: LiveAirflow, emulator: EmulatorServer, runs: dict[str, Any]
) -> None:
    """Issue 14: the customers in quiet hours are texted after the window ends (in real time), by the resumed
    task, after a DateTimeTrigger in the real triggerer; each customer once; opt-outs never."""
    dag_id, run_id, _ = runs["promotion-quiet"]
    campaign = default_campaign_id(dag_id, run_id, "send_promotion", -1)
    messages = emulator.messages(task_id=campaign)
    assert Counter(m["to"] for m in messages) == Counter(
        {n: 1 for n in [*HELD_AT_FIRST, "447400123456", "12125550123", "13105550142", "61412345678"]}
    )
    ended = QUIET_ENDS_AT[0].timestamp()
    sent = {m["to"]: round(m["submitted_at"] - ended, 1) for m in messages}  # seconds after the window ended
    assert all(sent[n] >= 0 for n in HELD_AT_FIRST), sent
    assert all(s < 0 for n, s in sent.items() if n not in HELD_AT_FIRST), sent
    folder = airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=send_promotion"
    assert "DEFERRED" in (folder / "attempt=1.log").read_text(errors="replace")
    trigger_logs = [p.read_text(errors="replace") for p in folder.glob("attempt=1.log.trigger.*.log")]
    assert trigger_logs, f"the triggerer wrote no log for the trigger in {folder}"
    assert "held by quiet hours; deferring until" in (folder / "attempt=1.log").read_text(errors="replace")


def test_the_fan_out_shards_overlapped_within_the_account_cap(
    airflow: LiveAirflow, emulator: EmulatorServer, runs: dict[str, Any]
) -> None:
    dag_id, run_id, _ = runs["fan-out-undated"]
    shards = [ti for ti in airflow.task_instances(dag_id, run_id) if ti["task_id"] == "send_shard"]
    spans = [(datetime.fromisoformat(t["start_date"]), datetime.fromisoformat(t["end_date"])) for t in shards]
    most_at_once = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert 2 <= most_at_once <= FAN_OUT_SHARDS, spans
    # The shards pace at 450/s each (1,800/s together) by the time they write; the gateway counts by the time
    # requests arrive. On a busy 2-core machine a stall of over 0.1 s in the emulator's process lets a few
    # more than 2,000 arrive within one second (it happened in about 1 run in 3, before and after issue 12),
    # so a handful of throttled calls is weather, and they are retried. Shards that ignored the shared cap
    # (each at the account's 2,000/s) would have most calls throttled.
    stats = emulator.stats()
    calls = stats["actions"]["SendMessageToGlobe"]["requests"]
    assert stats["codes"].get("Throttling.User", 0) <= 0.05 * calls, stats
    assert stats["windows"]["SendMessageToGlobe"][KEY_ID]["peak_offered_1s"] <= 2500, stats


def test_clearing_a_finished_task_resends_nothing(
    airflow: LiveAirflow, emulator: EmulatorServer, runs: dict[str, Any]
) -> None:
    dag_id, run_id, _ = runs["daily-undated"]
    before = campaign_messages(emulator, dag_id, run_id, "report_ready")
    body = {"dry_run": False, "task_ids": ["report_ready"], "dag_run_id": run_id, "only_failed": False}
    airflow.api("POST", f"/dags/{dag_id}/clearTaskInstances", body)

    def second_try_ended() -> list[tuple[int, str]]:  # not the run's state: it reads "success" until requeued
        tries = [(ti["try_number"], ti["state"]) for ti in airflow.task_instances(dag_id, run_id)]
        return tries if tries[0][0] == 2 and tries[0][1] in ("success", "failed", "upstream_failed") else []

    assert airflow.wait_for("the cleared task's second try", second_try_ended, timeout=120) == [(2, "success")]
    run = airflow.wait_for_run(dag_id, run_id, 120)
    assert run["state"] == "success"
    assert campaign_messages(emulator, dag_id, run_id, "report_ready") == before == 3


def test_the_ui_shows_the_sandbox_and_each_send_task_links_to_its_campaign(
    airflow: LiveAirflow, emulator: EmulatorServer, runs: dict[str, Any]
) -> None:
    """Issue 13: the plugin's view in the REST API's plugin listing, and the send task's extra link."""
    (ours,) = [p for p in airflow.api("GET", "/plugins")["plugins"] if p["name"] == "globesms_sandbox"]
    (view,) = ours["external_views"]
    assert (view["name"], view["href"], view["url_route"]) == (
        "SMS sandbox",
        f"{emulator.url}/_emulator/ui",
        "sms-sandbox",
    )
    assert any("SandboxCampaignLink" in link for link in ours["operator_extra_links"]), ours
    dag_id, run_id, _ = runs["campaign-dated"]
    links = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/send_reminders/links")
    campaign = default_campaign_id(dag_id, run_id, "send_reminders", -1)
    assert links["extra_links"] == {"SMS sandbox": campaign_url(emulator.url, campaign)}
    page = urllib.request.urlopen(links["extra_links"]["SMS sandbox"], timeout=10).read().decode()
    assert '<dd id="c-messages">10</dd>' in page
    dag_id, run_id, _ = runs["fan-out-undated"]
    shard = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/send_shard/links?map_index=2")
    shard_campaign = default_campaign_id(dag_id, run_id, "send_shard", 2)
    assert shard["extra_links"] == {"SMS sandbox": campaign_url(emulator.url, shard_campaign)}


def test_the_connection_is_tested_through_the_cli_and_the_rest_api(airflow: LiveAirflow) -> None:
    assert "Connection success!" in airflow.cli("connections", "test", "globesms_default").stdout
    answer = airflow.api("POST", "/connections/test", {"connection_id": "globesms_default", "conn_type": "globesms"})
    assert answer["status"] is True, answer
    # What Airflow 3.3.2's UI Test button posts for a connection without a port: port 0, refused (README).
    airflow.api(
        "POST",
        "/connections/test",
        {"connection_id": "globesms_default", "conn_type": "globesms", "port": 0},
        expect=(400,),
    )
    providers = {p["package_name"] for p in airflow.api("GET", "/providers?limit=500")["providers"]}
    assert "airflow-provider-globesms" in providers


def test_no_log_holds_the_secret_or_a_full_number(
    airflow: LiveAirflow, emulator: EmulatorServer, runs: dict[str, Any]
) -> None:
    numbers = {m["to"].lstrip("+") for m in emulator.messages(limit=100_000)}
    assert numbers
    found: dict[str, list[str]] = {}
    for path in [*(airflow.home / "logs").rglob("*"), *(airflow.home / "component-logs").glob("*.log")]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        digits = set(re.findall(r"\d{8,}", text))
        leaked = sorted(digits & numbers) + [name for name, secret in SECRETS.items() if secret in text]
        if leaked:
            found[str(path.relative_to(airflow.home))] = leaked[:5]
    assert not found
    # The pushes did reach the api-server, and its request log shows their path with the secret masked.
    served = (airflow.home / "component-logs" / "api-server.log").read_text(errors="replace")
    assert "/globesms/push/***/receipts" in served, served[-3000:]


SECRETS = {"the secret": SECRET, "the push secret": PUSH_SECRET}
