"""Exactly once under faults, retries and killed workers: every recipient counted in the emulator."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer, Faults
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.storage import location_segment
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.conftest import AIRFLOW_HOME, connection_json
from tests.test_push_receiver import SECRET, serve_receiver

LOGICAL_DATE = datetime(2026, 11, 21, tzinfo=timezone.utc)
COUNT_PUSHED = 1200  # the five-kill run with receipts by push: its five attempts send about 750 before the kills


def people(count: int, prefix: str = "9") -> list[dict[str, str]]:
    return [{"to": f"+852{prefix}{n + 1000000:07d}", "name": f"Customer {n}"} for n in range(count)]


def run(run_dag: Callable[..., Any], dag: DAG) -> Any:
    return run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)


def per_number(emulator: EmulatorServer) -> Counter[str]:
    return Counter(m["to"] for m in emulator.messages())


@pytest.fixture
def faulty(
    monkeypatch: pytest.MonkeyPatch, globesms_emulator_factory: Callable[..., EmulatorServer]
) -> Callable[..., EmulatorServer]:
    """An emulator with the given faults, set as ``globesms_default``."""

    def start(timeout: float | None = None, **shares: float) -> EmulatorServer:
        faults = Faults()
        faults.update(shares)
        emulator = globesms_emulator_factory(delivery_delay=0, seed=5, faults=faults)
        extra = {"timeout": timeout} if timeout else {}
        monkeypatch.setenv("AIRFLOW_CONN_GLOBESMS_DEFAULT", connection_json(emulator.url, **extra))
        return emulator

    return start


def test_30_percent_throttled_every_recipient_exactly_once(
    run_dag: Callable[..., Any], faulty: Callable[..., EmulatorServer]
) -> None:
    emulator = faulty(throttle=0.3)
    with DAG("rel_throttled", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="campaign", recipients=people(400), message="Hi {{ recipient.name }}")
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"campaign": "success"}
    counts = per_number(emulator)
    assert len(counts) == 400
    assert set(counts.values()) == {1}
    stats = emulator.stats()["actions"]["SendMessageToGlobe"]
    assert stats["fault_throttle"] >= 100  # about 30% of the calls were refused, and retried
    (summary,) = xcom_values(dag_run, "campaign")
    assert summary["accepted"] == 400


def test_5xx_and_resets_are_retried_exactly_once(
    run_dag: Callable[..., Any], faulty: Callable[..., EmulatorServer]
) -> None:
    emulator = faulty(unavailable=0.1, reset=0.1)
    with DAG("rel_5xx_resets", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="campaign", recipients=people(400), message="Hi {{ recipient.name }}")
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"campaign": "success"}
    counts = per_number(emulator)
    assert (len(counts), set(counts.values())) == (400, {1})
    stats = emulator.stats()["actions"]["SendMessageToGlobe"]
    assert stats["fault_unavailable"] >= 20
    assert stats["fault_reset"] >= 20


def test_accept_then_hang_is_never_resent_and_is_reported(
    run_dag: Callable[..., Any], faulty: Callable[..., EmulatorServer]
) -> None:
    emulator = faulty(timeout=2, hang_seconds=5)
    emulator.set_faults(script=["hang", "hang", "hang"])
    with DAG("rel_hang", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="campaign", recipients=people(30), message="Hi {{ recipient.name }}")
    dag_run = run(run_dag, dag)
    counts = per_number(emulator)
    assert (len(counts), set(counts.values())) == (30, {1})
    (summary,) = xcom_values(dag_run, "campaign", key="summary")
    # The replay of the exact request met SignatureNonceUsed: the API has those three, without a MessageId, and
    # nothing says whether it accepted them: "arrived", judged like unknown (the task fails until decided).
    assert (summary["accepted"], summary["arrived"], summary["unknown"]) == (27, 3, 0)
    assert task_states(dag_run) == {"campaign": "failed"}


def test_without_replay_a_hang_stays_unknown_and_failing_until_someone_decides(
    run_dag: Callable[..., Any], faulty: Callable[..., EmulatorServer]
) -> None:
    emulator = faulty(timeout=2, hang_seconds=5)
    emulator.set_faults(script=["hang", "hang"])

    def campaign(**decision: Any) -> DAG:
        with DAG("rel_hang_unconfirmed", schedule=None) as dag:
            SendGlobeSmsOperator(
                task_id="campaign",
                recipients=people(20),
                message="Hi {{ recipient.name }}",
                confirm_by_replay=False,
                **decision,
            )
        return dag

    first = run(run_dag, campaign())
    assert task_states(first) == {"campaign": "failed"}
    (summary,) = xcom_values(first, "campaign", key="summary")
    assert (summary["accepted"], summary["unknown"]) == (18, 2)
    retry = run(run_dag, campaign())  # a retry: the unknown ones are reported, never resent, still failing
    assert task_states(retry) == {"campaign": "failed"}
    (summary,) = xcom_values(retry, "campaign", key="summary")
    assert (summary["skipped_already_sent"], summary["unknown_previous_attempts"], summary["sent"]) == (18, 2, 0)
    accepted_as_is = run(run_dag, campaign(fail_on_unknown=False))  # the decision: accept them
    assert task_states(accepted_as_is) == {"campaign": "success"}
    assert set(per_number(emulator).values()) == {1}


def test_resend_unknown_is_an_explicit_choice(
    run_dag: Callable[..., Any], faulty: Callable[..., EmulatorServer]
) -> None:
    emulator = faulty(timeout=2, hang_seconds=5)
    emulator.set_faults(script=["hang"])
    with DAG("rel_resend_unknown", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="campaign", recipients=people(5), message="Hi", confirm_by_replay=False)
    run(run_dag, dag)
    with DAG("rel_resend_unknown", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="campaign",
            recipients=people(5),
            message="Hi",
            confirm_by_replay=False,
            resend_unknown=True,
        )
    second = run(run_dag, dag)
    (summary,) = xcom_values(second, "campaign")
    # One sent in this try; the summary gives every recipient's final status, the first try's four too.
    assert (summary["sent"], summary["accepted"], summary["skipped_already_sent"]) == (1, 5, 4)
    assert sorted(per_number(emulator).values()) == [1, 1, 1, 1, 2]  # asked for, and done


def test_an_object_storage_ledger_keeps_reruns_exactly_once(
    run_dag: Callable[..., Any], faulty: Callable[..., EmulatorServer]
) -> None:
    emulator = faulty(throttle=0.1)
    with DAG("rel_remote_ledger", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="campaign",
            recipients=people(60),
            message="Hi {{ recipient.name }}",
            ledger_uri="memory://shared-ledgers",
        )
    run(run_dag, dag)
    second = run(run_dag, dag)
    (summary,) = xcom_values(second, "campaign")
    assert (summary["skipped_already_sent"], summary["sent"]) == (60, 0)
    assert set(per_number(emulator).values()) == {1}


# --- a worker killed at random points -----------------------------------------------------------------

CHILD = """
import json, sys
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow_provider_globesms._compat import dag_bag
from airflow.utils.session import create_session
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator

DagBag, sync_bag_to_db = dag_bag()
when = datetime(2026, 11, 21, tzinfo=timezone.utc)
push = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
with DAG(sys.argv[4], schedule=None) as dag:
    SendGlobeSmsOperator(task_id="campaign", recipients=sys.argv[1], message="Hi {{ recipient.name }}",
                         max_qps=float(sys.argv[2]), retries=0, **push)
with create_session() as session:
    DagBundlesManager().sync_bundles_to_db(session=session)
bag = DagBag(dag_folder=sys.argv[3])
bag.bag_dag(dag)
sync_bag_to_db(bag, "dags-folder", None)
run = dag.test(logical_date=when, run_after=when)
print("RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id}), flush=True)
"""


def kill_five_times(command: list[str], env: dict[str, str], emulator: EmulatorServer, count: int) -> None:
    """Run the child, SIGKILL it at a random point once it is sending; five times."""
    rng = random.Random(20261121)
    kills = 0
    while kills < 5:
        before = accepted_so_far(emulator)
        child = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + 120
        while child.poll() is None and accepted_so_far(emulator) == before and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until this attempt is sending
        time.sleep(rng.uniform(0.05, 1.5))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.communicate(timeout=60)
        assert accepted_so_far(emulator) < count, "finished before five kills; send more recipients"


def accepted_so_far(emulator: EmulatorServer) -> int:
    """How many messages the emulator accepted (a count, cheap to ask for every 50 ms: not the messages)."""
    return int(emulator.stats()["messages"]["total"])


def run_to_the_end(command: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run the child once more, to its end; its output and the run's state and id."""
    final = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result = json.loads(final.stdout.split("RESULT ", 1)[1]) if "RESULT " in final.stdout else None
    assert result is not None, final.stdout[-3000:] + final.stderr[-3000:]
    return final, result


@pytest.fixture(params=[(0.0, 2400), (0.2, 2400)], ids=["calm", "20pct-throttled"])
def killable_emulator(airflow_db: Path, request: pytest.FixtureRequest) -> Iterator[tuple[EmulatorServer, int]]:
    throttle, count = request.param
    faults = Faults()
    faults.update({"throttle": throttle})
    with EmulatorServer(EmulatorConfig(delivery_delay=0, latency_ms=30, seed=9, faults=faults)) as emulator:
        yield emulator, count


@pytest.mark.slow
def test_worker_killed_at_random_points_sends_nobody_two_and_loses_nobody_silently(
    killable_emulator: tuple[EmulatorServer, int], tmp_path: Path
) -> None:
    """Without throttling every recipient gets exactly one message. With 20% throttling a request throttled
    while in flight when its worker dies consumed its nonce, so the replay cannot tell it from an accepted
    one (the README's limits): such a recipient may get nothing, but the final summary and results file
    must say so ("arrived" or "unknown"), never "accepted" or silence."""
    emulator, count = killable_emulator
    recipients = tmp_path / "people.csv"
    recipients.write_text("to,name\n" + "".join(f"+8529{n + 1000000:07d},C{n}\n" for n in range(count)))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "AIRFLOW_CONN_GLOBESMS_DEFAULT": connection_json(emulator.url)}
    dag_id = f"rel_killed_{int(emulator.config.faults.throttle * 100)}"  # each variant its own ledgers
    command = [sys.executable, str(script), str(recipients), "200", str(AIRFLOW_HOME / "dags"), dag_id]
    kill_five_times(command, env, emulator, count)
    final, result = run_to_the_end(command, env)
    counts = per_number(emulator)
    assert set(counts.values()) == {1}, Counter(counts.values())  # nobody got two
    assert "settled by replay" in final.stdout
    results_file = AIRFLOW_HOME / "globesms" / dag_id / location_segment(result["run_id"]) / "campaign" / "task"
    statuses = {line["to"]: line["status"] for line in map(json.loads, (results_file / "results.jsonl").open())}
    missing = [to for to in statuses if to not in counts]
    # Success, or a failure that names its reason: outcomes not known (fail_on_unknown), reported per recipient.
    unconfirmed = {"arrived", "unknown"}
    assert result["state"] == "success" or unconfirmed & set(statuses.values()), final.stdout[-3000:]
    assert all(statuses[to] in unconfirmed for to in missing), Counter(statuses[to] for to in missing)
    assert all(statuses[to] in ("accepted", *unconfirmed) for to in counts)
    if emulator.stats()["actions"]["SendMessageToGlobe"].get("fault_throttle", 0) == 0:
        assert not missing
    print(
        f"killed 5 times: {len(counts)} of {count} delivered once, {len(missing)} reported, not delivered;"
        f" final statuses {Counter(statuses.values())}"
    )


@pytest.mark.slow
def test_worker_killed_at_random_points_with_receipts_by_push_confirms_whoever_got_one(
    airflow_db: Path, tmp_path: Path
) -> None:
    """The same five kills, 20% throttled, with receipts by push: the emulator pushes every accepted message's
    receipt to the receiver on 127.0.0.1, which stores it where the child processes read it
    (``[globesms] push_uri``). Every recipient the emulator holds a message for ends ``accepted`` with that
    message's MessageId (those whose answers were lost with their worker are confirmed by their receipts),
    and nobody without one is ``accepted``: a request throttled in flight while its worker died stays in
    doubt, and the task fails after the bounded wait (``confirm_within``), naming it."""
    faults = Faults()
    faults.update({"throttle": 0.2})
    count = COUNT_PUSHED
    store = PushStore(tmp_path / "push")
    with serve_receiver(store) as served:
        config = EmulatorConfig(
            delivery_delay=0,
            latency_ms=30,
            seed=9,
            faults=faults,
            push_url=f"http://127.0.0.1:{served.port}/globesms/push/{SECRET}/receipts",
            push_retry=(0.2, 0.5),
        )
        with EmulatorServer(config) as emulator:
            recipients = tmp_path / "people.csv"
            recipients.write_text("to,name\n" + "".join(f"+8526{n + 1000000:07d},C{n}\n" for n in range(count)))
            script = tmp_path / "child.py"
            script.write_text(CHILD)
            env = {
                **os.environ,
                "AIRFLOW_CONN_GLOBESMS_DEFAULT": connection_json(emulator.url),
                "AIRFLOW__GLOBESMS__PUSH_URI": str(store.root),
            }
            dag_id = "rel_killed_pushed"
            push = json.dumps({"receipts_by_push": True, "confirm_within": 3})
            command = [sys.executable, str(script), str(recipients), "200", str(AIRFLOW_HOME / "dags"), dag_id, push]
            kill_five_times(command, env, emulator, count)
            got = {m["to"]: m for m in emulator.messages()}  # their receipts are being pushed meanwhile
            final, result = run_to_the_end([*command[:3], "2000", *command[4:]], env)  # the rest, unkilled, faster
            pushes = emulator.wait_for_pushes(timeout=30)
            messages = emulator.messages()
    counts = Counter(m["to"] for m in messages)
    assert set(counts.values()) == {1}, Counter(counts.values())  # nobody got two
    results_file = AIRFLOW_HOME / "globesms" / dag_id / location_segment(result["run_id"]) / "campaign" / "task"
    lines = {line["to"]: line for line in map(json.loads, (results_file / "results.jsonl").open())}
    assert len(lines) == count
    sent_now = {to for to in counts if to not in got}  # sent by the final run: accepted with its own answer
    assert all(lines[to]["status"] == "accepted" for to in counts), Counter(lines[to]["status"] for to in counts)
    assert all(lines[m["to"]]["message_id"] == m["message_id"] for m in messages)
    assert all(lines[to]["status"] in ("arrived", "unknown") for to in lines if to not in counts)
    in_doubt = [to for to in lines if to not in counts]
    assert (result["state"] == "success") == (not in_doubt), final.stdout[-3000:]
    if in_doubt:  # arrived, waited for until the deadline; or unknown (a replay throttled): a retry's to settle
        assert "receipts_by_push" in final.stdout
    assert "confirmed by their delivery receipts" in final.stdout
    # Every accepted message's receipt came by push and was stored, by MessageId (a duplicate would be fine).
    assert (pushes["receipts_dropped"], pushes["receipts_given_up"]) == (0, 0)
    (campaign,) = {m["task_id"] for m in messages}
    stored = Counter(r.message_id for _, batch in store.receipts(campaign) for r in batch)
    assert set(stored) == {m["message_id"] for m in messages}
    final_statuses = Counter(line["status"] for line in lines.values())
    print(
        f"killed 5 times, receipts by push: {len(got)} sent before the last run, each accepted with its MessageId; "
        f"{len(sent_now)} sent by it; {len(in_doubt)} in doubt without a message; final {final_statuses}; "
        f"{sum(stored.values())} receipts stored in {pushes['pushes_ok']} pushes"
    )
