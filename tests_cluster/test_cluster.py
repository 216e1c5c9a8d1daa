"""A distributed Airflow (issue 11), what users run when one machine is not enough: CeleryExecutor with Redis,
PostgreSQL, two Celery workers, the send ledger on an S3-compatible server (moto) through
``[globesms] ledger_uri = s3://...``, and the emulator as the SMS API.

The fan-out example sends to a generated file in shards. In the middle of sending, the worker that runs a
shard is SIGKILLed with its whole process group. The scheduler notices (heartbeat timeout lowered for the
test), the shard is retried on the surviving worker, and every recipient still receives exactly one message.
The messages the killed worker had in flight are reported ``arrived`` (the API has them; whether it accepted
them is not known without a receipt), never counted as accepted, and their shard fails for someone to decide.

Receipts by push (issue 28): the standalone receiver (``globesms-receiver``) keeps what the emulator pushes in
the bucket (``--store s3://...``); a send task on one worker and a delivery sensor on the other (each worker
has a queue of its own) settle the campaign from there, without one QueryMessage call.
Run with ``make test-cluster`` (it installs what it needs; see the README).
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_globesms.client.receipts.push_store import campaign_folder
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_globesms.operators.globesms import default_campaign_id
from tests.live_airflow import LiveAirflow, free_port, parent_pid, reported, storm_spread
from tests_cluster import parts

pytest.importorskip("airflow.providers.celery", reason="make test-cluster installs the Celery provider")
pytest.importorskip("moto", reason="make test-cluster installs moto")
pytestmark = pytest.mark.timeout(1200)

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
DAG_ID, BUCKET = "globesms_fan_out", "globesms-ledgers"
STORM_DAG, SWEEPER_DAG, ALERT_WINDOW = "globesms_alert_storm", "globesms_alert_digests", 90
ON_CALL = ["+85291230011", "+85291230012"]
KEY_ID, SECRET = "CLUSTERKEY", "cluster-Secret-5a4b3c2d1e"
PUSH_DAG, PUSH_PREFIX = "receipts_on_two_workers", "push"  # the receipts in s3://BUCKET/push
PUSH_SECRET = secrets.token_urlsafe(32)
PUSH_TO = [f"+8529200{n:04d}" for n in range(20)]
# Each task on a queue only one worker serves: the receipts are read on another machine than the send's.
PUSH_DAG_FILE = f"""
from airflow.sdk import DAG
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor

with DAG("{PUSH_DAG}", schedule=None):
    send = SendGlobeSmsOperator(task_id="send", queue="worker-1", to={PUSH_TO!r}, message="Your order ships today")
    send >> GlobeSmsDeliverySensor(
        task_id="receipts",
        queue="worker-2",
        messages=send.output,
        receipts_by_push=True,  # from [globesms] push_uri: s3://{BUCKET}/{PUSH_PREFIX}
        push_grace=600,
        poke_interval=2,
        timeout=300,
    )
"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    # 400 ms per reply holds each shard's 64 connections to about 160 sends/s instead of its 450/s cap: the
    # middle of a shard then lasts seconds, long enough to be seen by a poll that shares a loaded 2-core CI
    # machine (and this process's GIL, with the emulator thread) with two workers, a scheduler and Postgres.
    config = EmulatorConfig(keys={KEY_ID: SECRET}, delivery_delay=0.5, latency_ms=400)
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 server with the bucket; its endpoint URL."""
    with parts.s3_server(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def cluster(emulator: EmulatorServer, s3: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    home = tmp_path_factory.mktemp("cluster")
    shutil.copytree(EXAMPLES, home / "dags")
    (home / "dags" / f"{PUSH_DAG}.py").write_text(PUSH_DAG_FILE)
    with (
        parts.postgres() as database,
        parts.redis(home) as broker,
    ):
        aws = {"conn_type": "aws", "login": "testing", "password": "testing",
               "extra": {"endpoint_url": s3, "region_name": "us-east-1"}}  # fmt: skip
        sms = {"conn_type": "globesms", "login": KEY_ID, "password": SECRET, "extra": {"endpoint": emulator.url}}
        env = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            "AIRFLOW__GLOBESMS__LEDGER_URI": f"s3://{BUCKET}/globesms",
            "AIRFLOW__GLOBESMS__PUSH_URI": f"s3://{BUCKET}/{PUSH_PREFIX}",
            "AIRFLOW__GLOBESMS__ALERT_WINDOW": str(ALERT_WINDOW),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
            "AIRFLOW_CONN_GLOBESMS_DEFAULT": json.dumps(sms),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            # Every S3 client, with or without an Airflow connection, talks to moto on loopback only.
            "AWS_ENDPOINT_URL": s3,
            "AWS_ENDPOINT_URL_S3": s3,
        }
        workers = {  # both serve the default queue, and each a queue of its own
            f"worker-{n}": [
                "celery",
                "worker",
                "--celery-hostname",
                f"worker{n}@%h",
                "--skip-serve-logs",
                "--queues",
                f"default,worker-{n}",
            ]
            for n in (1, 2)
        }
        with LiveAirflow(home, home / "dags", env, extra_components=workers) as airflow:
            airflow.wait_for_dags([DAG_ID, STORM_DAG, SWEEPER_DAG, PUSH_DAG], timeout=180)
            for dag_id in (DAG_ID, STORM_DAG, SWEEPER_DAG, PUSH_DAG):
                airflow.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
            yield airflow


def shard_counts(emulator: EmulatorServer, run_id: str, shards: int) -> list[int]:
    return [len(emulator.messages(task_id=default_campaign_id(DAG_ID, run_id, "send_shard", n))) for n in range(shards)]


def kill_the_worker_of_a_sending_shard(
    airflow: LiveAirflow, emulator: EmulatorServer, run_id: str, shards: int, per_shard: int
) -> str:
    """Wait until a shard has sent part of its messages, then SIGKILL the worker running it (process group)."""
    seen: list[list[int]] = []

    def sending() -> dict[str, Any] | None:
        counts = shard_counts(emulator, run_id, shards)
        seen.append(counts)
        tis = [ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == "send_shard"]
        for ti in tis:
            running = ti["state"] == "running" and ti.get("pid")
            if running and 200 <= counts[ti["map_index"]] <= per_shard - 400:
                return ti
        if len(tis) == shards and all(ti["state"] == "success" for ti in tis):
            raise AssertionError(f"every shard finished before one was seen mid-send; counts polled: {seen[-20:]}")
        return None

    ti = airflow.wait_for("a shard in the middle of sending", sending, timeout=240, every=0.2)
    workers = {p.pid: name for name, p in airflow.processes.items() if name.startswith("worker-")}
    pid = int(ti["pid"])
    while pid not in workers and pid > 1:  # up from the task's process to the worker that runs it
        pid = parent_pid(pid)
    victim = workers[pid]
    airflow.kill(victim)  # the whole machine's share: worker, pool, supervisor, task
    print(f"killed {victim} with its shard {ti['map_index']} at {seen[-1]} of {per_shard} each, poll {len(seen)}")
    return victim


def shard_summary(airflow: LiveAirflow, run_id: str, map_index: int, key: str) -> dict[str, Any]:
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/send_shard/xcomEntries/{key}?map_index={map_index}"
    return dict(airflow.api("GET", path)["value"])


def alerts_to(emulator: EmulatorServer, number: str) -> list[dict[str, Any]]:
    return [m for m in emulator.messages(limit=100_000) if m["to"] == number.lstrip("+") and m["task_id"] is None]


def test_a_storm_on_two_workers_is_one_alert_and_one_digest_per_phone(
    cluster: LiveAirflow, emulator: EmulatorServer
) -> None:
    """Fifty tasks fail on two Celery workers at once, their callbacks sharing the alert windows in S3 (moto):
    each phone gets the first alert, then the others in one digest from the sweeper in the triggerer (in two,
    should the failures spread over more than a window). Runs before the kill test, while both workers are up."""
    run_id = cluster.trigger(STORM_DAG, {"failures": 50, "on_call": ON_CALL})
    assert cluster.wait_for_run(STORM_DAG, run_id, timeout=300)["state"] == "failed"
    spread = storm_spread(cluster, STORM_DAG, run_id)

    def all_reported() -> bool:
        return all(sum(reported(m["message"]) for m in alerts_to(emulator, n)) >= 50 for n in ON_CALL)

    cluster.wait_for("every alert reported", all_reported, timeout=2 * ALERT_WINDOW + 120)
    time.sleep(20)  # a text too many, were one to come, would come by the next sweeps
    for number in ON_CALL:
        sent = alerts_to(emulator, number)
        messages = [m["message"] for m in sent]
        assert sum(map(reported, messages)) == 50, (spread, messages)  # each alert once, none lost
        assert messages[0].startswith("Airflow: globesms_alert_storm.load failed (try 1)"), messages
        assert messages[-1].startswith("Airflow: +"), messages  # the last window's backlog, in its digest
        assert len(sent) <= 3, (spread, messages)
        if spread < ALERT_WINDOW - 5:  # all fifty within one window: one alert, one digest
            assert len(sent) == 2, (spread, messages)
        times = [m["submitted_at"] for m in sent]
        assert all(b - a >= ALERT_WINDOW - 1 for a, b in itertools.pairwise(times)), times
    assert not (cluster.home / "globesms" / "alerts").exists()  # the windows are in S3, shared
    texts = [len(alerts_to(emulator, n)) for n in ON_CALL]
    print(f"cluster storm: 50 failures within {spread:.0f} s; texts per phone {texts}")


@pytest.fixture
def receiver(emulator: EmulatorServer, s3: str, tmp_path: Path) -> Iterator[Path]:
    """``globesms-receiver`` in its own process, keeping pushes in s3://BUCKET/push (moto), the emulator pushing
    to it; yields its log. Pushes stop with it (the kill test's thousands of receipts are not pushed)."""
    port, log = free_port(), tmp_path / "receiver.log"
    options = {"endpoint_url": s3, "key": "testing", "secret": "testing"}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS"))},
        "GLOBESMS_PUSH_SECRET": PUSH_SECRET,
        "GLOBESMS_PUSH_STORAGE_OPTIONS": json.dumps(options),
    }
    command = [sys.executable, "-m", "airflow_provider_globesms.receiver.cli", "--port", str(port),
               "--store", f"s3://{BUCKET}/{PUSH_PREFIX}"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        parts._wait("the receiver", lambda: answers(f"http://127.0.0.1:{port}/") or process.poll() is not None)
        assert process.poll() is None, log.read_text()
        emulator.set_push(push_url=f"http://127.0.0.1:{port}/globesms/push/{PUSH_SECRET}/receipts", push_retry=[1, 2])
        yield log
    finally:
        emulator.set_push(push_url=None)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def answers(url: str) -> bool:
    """Whether a server answers at ``url`` (any status: the receiver has no page there, and says 404)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def test_receipts_pushed_to_the_standalone_receiver_reach_a_sensor_on_the_other_worker(
    cluster: LiveAirflow, emulator: EmulatorServer, receiver: Path, s3: str
) -> None:
    """The send task on worker-1, the sensor on worker-2; the receipts only in the bucket, written by the
    standalone receiver: the sensor settles the campaign from them, and nothing is polled. Runs before the kill
    test, while both workers are up."""
    import boto3

    run_id = cluster.trigger(PUSH_DAG)
    run = cluster.wait_for_run(PUSH_DAG, run_id, timeout=240)
    tis = {ti["task_id"]: ti for ti in cluster.task_instances(PUSH_DAG, run_id)}
    assert run["state"] == "success", (tis, cluster.report())
    assert {t: (ti["state"], ti["queue"]) for t, ti in tis.items()} == {
        "send": ("success", "worker-1"),
        "receipts": ("success", "worker-2"),
    }
    for task_id, worker in (("send", "worker-1"), ("receipts", "worker-2")):  # who ran each, by its own log
        ran = [n for n in ("worker-1", "worker-2") if f"task_id='{task_id}'" in worker_log(cluster, n, run_id)]
        assert ran == [worker], (task_id, ran)
    path = f"/dags/{PUSH_DAG}/dagRuns/{run_id}/taskInstances/receipts/xcomEntries/return_value"
    summary = cluster.api("GET", path)["value"]
    assert (summary["tracked"], summary["receipts_pushed"], summary["pending"]) == (20, 20, 0), summary
    assert emulator.stats()["actions"].get("QueryMessage", {}).get("requests", 0) == 0  # no sensor polled, ever
    campaign = default_campaign_id(PUSH_DAG, run_id, "send", -1)
    sent = {m["message_id"] for m in emulator.messages(task_id=campaign)}
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    prefix = f"{PUSH_PREFIX}/receipts/{campaign_folder(campaign)}/"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
    stored = {r[0] for key in keys for r in json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())}
    assert keys
    assert stored == sent
    log = receiver.read_text(errors="replace")
    assert PUSH_SECRET not in log
    assert "/globesms/push/***/receipts" in log
    pushes = emulator.push_stats()
    print(
        f"cluster push: {summary['receipts_pushed']} of {summary['tracked']} receipts by push, {len(keys)} objects "
        f"in s3://{BUCKET}/{prefix}, {pushes['pushes_ok']} pushes, 0 QueryMessage calls"
    )


def worker_log(cluster: LiveAirflow, name: str, run_id: str) -> str:
    """The lines of a worker's log about a run."""
    text = (cluster.home / "component-logs" / f"{name}.log").read_text(errors="replace")
    return "\n".join(line for line in text.splitlines() if run_id in line)


@pytest.mark.parametrize("shards", [4])
def test_a_killed_worker_costs_no_message_and_sends_none_twice(
    cluster: LiveAirflow, emulator: EmulatorServer, shards: int
) -> None:
    """Every recipient gets exactly one message, and no status claims more than its evidence: a message the
    killed worker had in flight is ``arrived`` (its replay was refused as seen), never ``accepted``, and a shard
    left with arrivals fails at once, for someone to decide (no retry can settle them)."""
    rows = 2400 * shards
    started = time.monotonic()
    run_id = cluster.trigger(DAG_ID, {"sample_rows": rows, "shards": shards})
    victim = kill_the_worker_of_a_sending_shard(cluster, emulator, run_id, shards, rows // shards)
    run = cluster.wait_for_run(DAG_ID, run_id, timeout=600)
    tis = {(t["task_id"], t["map_index"]): t for t in cluster.task_instances(DAG_ID, run_id)}
    retried = sorted(n for (task, n), t in tis.items() if task == "send_shard" and t["try_number"] > 1)
    assert retried, "the killed shard should have been retried"
    assert shard_counts(emulator, run_id, shards) == [rows // shards] * shards  # nobody lost
    # This module's emulator: this run's messages, the storm test's alerts (no TaskId) and the push test's.
    fan_out = [m for m in emulator.messages(limit=100_000) if (m["task_id"] or "").startswith(f"{DAG_ID}.")]
    numbers = Counter(m["to"] for m in fan_out)
    assert len(numbers) == rows
    assert max(numbers.values()) == 1  # every recipient exactly once, whichever try and worker sent it
    arrived = {}
    for n in range(shards):
        ti = tis[("send_shard", n)]
        if n not in retried:
            assert (ti["state"], ti["try_number"]) == ("success", 1), (ti, cluster.report())
            continue
        assert ti["try_number"] == 2, (ti, cluster.report())  # one retry: nothing is left that another settles
        key = "return_value" if ti["state"] == "success" else "summary"
        summary = shard_summary(cluster, run_id, n, key)
        assert (summary["unknown"], summary["failed"]) == (0, 0), summary
        assert summary["accepted"] + summary["arrived"] == rows // shards, summary
        assert ti["state"] == ("failed" if summary["arrived"] else "success"), (ti, summary)
        arrived[n] = summary["arrived"]
    assert run["state"] == ("failed" if any(arrived.values()) else "success"), (tis, cluster.report())
    print(
        f"cluster: {rows} recipients in {shards} shards, killed {victim}, retried {retried}, arrived {arrived}, "
        f"{time.monotonic() - started:.0f} s, emulator {emulator.stats()['codes']}"
    )
