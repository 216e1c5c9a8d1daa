"""A status never claims more than its evidence; the ledger at rest fails closed (issue 21).

* A replay refused as already seen proves the request *arrived*, not that it was accepted (a throttled or
  refused request consumes its nonce too): ``arrived``, judged like ``unknown``, never counted as accepted.
* A rotated or unusable ``[core] fernet_key`` names itself and the way back; nothing is stored unsealed in
  place of a broken key. Every file and folder the provider creates is owner-only, whatever the umask.
* One ledger folder per task instance, inside its DAG's folder, whatever the run id; a try that left its
  ledger where versions before 0.3 kept it still finds it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from airflow_provider_globesms.client.files.sqlite import open_sqlite
from airflow_provider_globesms.client.ledger.sqlite_ledger import LedgerEntry, SqliteLedger, Status
from airflow_provider_globesms.client.results.report import SendSummary
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer, Faults
from airflow_provider_globesms.storage import location_segment, task_instance_location
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.evidence_helpers import campaign, run_at, ti, wider_than_owner

# --- arrived is not accepted ---------------------------------------------------------------------------


def test_an_arrival_proved_by_replay_is_arrived_never_accepted_and_fails_the_task(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path, capfd: Any
) -> None:
    """The first try loses one answer (a 500 after the gateway took the request); the retry's replay is
    refused as seen: the summary says arrived (and, for one release, received), the task fails saying what to
    do, and nothing is sent twice."""
    emulator = globesms_conn()
    emulator.set_faults(script=["internal_error"])
    first = run_at(run_dag, campaign("ev_arrived", str(tmp_path), confirm_by_replay=False, retries=0))
    assert task_states(first) == {"send": "failed"}
    again = run_at(run_dag, campaign("ev_arrived", str(tmp_path), retries=0))
    assert task_states(again) == {"send": "failed"}
    (summary,) = xcom_values(again, "send", key="summary")
    assert (summary["accepted"], summary["arrived"], summary["received"], summary["unconfirmed"]) == (5, 1, 1, 1)
    assert len(emulator.messages()) == 6
    logged = capfd.readouterr().out
    assert "1 arrived at the API with their outcome unknown" in logged
    assert "fail_on_unknown=False" in logged
    statuses = Counter(json.loads(line)["status"] for line in Path(summary["results_uri"]).read_text().splitlines())
    assert statuses == {"accepted": 5, "arrived": 1}
    accepted_anyway = run_at(run_dag, campaign("ev_arrived", str(tmp_path), retries=0, fail_on_unknown=False))
    assert task_states(accepted_anyway) == {"send": "success"}
    assert len(emulator.messages()) == 6


def try_number(dag_run: Any, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = TaskInstance
        query = select(ti.try_number).where(
            ti.run_id == dag_run.run_id, ti.dag_id == dag_run.dag_id, ti.task_id == task_id
        )
        return int(session.scalars(query).one())


@pytest.mark.parametrize(
    ("replay", "resend_unknown"),
    [(True, False), (False, False), (True, True)],
    ids=["arrived", "unknown", "arrived_resent_when_asked"],
)
def test_when_only_arrivals_are_in_doubt_the_task_fails_without_futile_retries(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    tmp_path: Path,
    replay: bool,
    resend_unknown: bool,
) -> None:
    """A retry settles unknown outcomes and resends refusals, but nothing settles an arrival (its replay is
    refused as seen): with only arrivals in doubt the task fails at once, whatever its retries; an unknown
    outcome is retried. With ``resend_unknown=True`` the retry resends the arrival, as asked."""
    emulator = globesms_conn()
    emulator.set_faults(script=["internal_error"])  # one answer lost after the gateway took the request
    dag = campaign(
        f"ev_futile_{replay}_{resend_unknown}",
        str(tmp_path),
        confirm_by_replay=replay,
        resend_unknown=resend_unknown,
        retries=2,
        retry_delay=timedelta(0),
    )
    run = run_at(run_dag, dag)
    succeeded = task_states(run) == {"send": "success"}
    (summary,) = xcom_values(run, "send", key="return_value" if succeeded else "summary")
    doubt_and_tries = (summary["arrived"], summary["unknown"], try_number(run, "send"))
    if resend_unknown:  # the second try resends the one that arrived: whoever got it may get it twice
        assert (succeeded, doubt_and_tries, len(emulator.messages())) == (True, (0, 0, 2), 7)
        return
    assert task_states(run) == {"send": "failed"}
    if replay:
        assert doubt_and_tries == (1, 0, 1)
    else:  # every try leaves it unknown (no replay), and each one retries: 3 tries in all
        assert doubt_and_tries == (0, 1, 3)
    assert len(emulator.messages()) == 6


def test_resend_unknown_sends_an_arrived_message_again_when_asked(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    emulator = globesms_conn()
    emulator.set_faults(script=["internal_error"])
    run_at(run_dag, campaign("ev_resend", str(tmp_path), confirm_by_replay=False, retries=0))
    run_at(run_dag, campaign("ev_resend", str(tmp_path), retries=0))  # settles it: arrived
    asked = run_at(run_dag, campaign("ev_resend", str(tmp_path), retries=0, resend_unknown=True))
    assert task_states(asked) == {"send": "success"}
    assert sorted(Counter(m["to"] for m in emulator.messages()).values()) == [1, 1, 1, 1, 1, 2]


def test_a_ledger_written_before_0_3_reads_received_as_arrived(tmp_path: Path) -> None:
    with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        ledger.write_many([LedgerEntry("k1", Status.ACCEPTED, 1, "+85291234567", message_id="m1", updated_at=1.0)])
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        db.execute("UPDATE ledger SET status = 'received'")
    with SqliteLedger(tmp_path / "ledger.sqlite3") as ledger:
        entry = ledger.get("k1")
        assert entry is not None
        assert entry.status is Status.ARRIVED
        assert [e.key for e in ledger.unsettled()] == ["k1"]
    assert Status("received") is Status.ARRIVED
    assert Status.RECEIVED.value == "arrived"  # a deprecated alias
    summary = SendSummary()
    summary.tally(Status.ARRIVED, 1)
    assert (summary.accepted, summary.arrived, summary.received, summary.segments) == (0, 1, 1, 0)


# --- the 20%-throttled, five-SIGKILL run through the bulk sender with its lease ----------------------------

CHILD = """
import json, sys
from pathlib import Path
from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.client.bulk import BulkSender, Campaign, Spill, validate
from airflow_provider_globesms.client.ledger.lease import FileLease, Holder
from airflow_provider_globesms.client.ledger.sqlite_ledger import SqliteLedger
from airflow_provider_globesms.client.results.report import ResultsWriter

url, folder, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])


class LeaseGuard:  # what the operator's LedgerGuard does around every durable write
    def __init__(self, lease):
        self.lease = lease
    def before_write(self):
        self.lease.check()
    def after_write(self):
        self.lease.check_held()


client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=url, max_qps=120)
campaign = Campaign(client, lambda row: "Hi " + row["name"], ["ev_dag", "run", "send", "-1"])
rows = [(n + 1, {"to": "+8529%07d" % (1000000 + n), "name": "C%d" % n}) for n in range(count)]
lease = FileLease(folder / "ledger.lease", Holder(description="child"))
lease.acquire(wait=60)
ledger = SqliteLedger(folder / "ledger.sqlite3")
with Spill(campaign, str(folder)) as spill:
    report = validate(campaign, rows, on_row=spill.add, workdir=str(folder))
    with open(folder / "results.jsonl", "wb") as handle:
        sender = BulkSender(campaign, ledger, ResultsWriter(handle), concurrency=32, progress_interval=0,
                            guard=LeaseGuard(lease))
        summary = sender.run(spill, total=report.valid)
ledger.close()
lease.release()
print("RESULT " + json.dumps(summary.as_dict()), flush=True)
"""


@pytest.mark.slow
def test_twenty_percent_throttled_and_five_sigkills_claim_no_acceptance_without_a_message(tmp_path: Path) -> None:
    count = 300
    faults = Faults()
    faults.update({"throttle": 0.2})
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    folder = tmp_path / "ledger"
    folder.mkdir()
    config = EmulatorConfig(delivery_delay=0, latency_ms=30, seed=21, faults=faults)
    with EmulatorServer(config) as emulator:
        command = [sys.executable, str(script), emulator.url, str(folder), str(count)]
        rng = random.Random(2126)
        kills = 0
        while kills < 5:
            before = len(emulator.messages())
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            deadline = time.monotonic() + 60
            while child.poll() is None and len(emulator.messages()) == before and time.monotonic() < deadline:
                time.sleep(0.02)  # until this try is sending
            time.sleep(rng.uniform(0.02, 0.4))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                kills += 1
            child.communicate(timeout=60)
            assert len(emulator.messages()) < count, "finished before five kills: send more"
        final = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert "RESULT " in final.stdout, final.stdout[-3000:] + final.stderr[-3000:]
        summary = json.loads(final.stdout.split("RESULT ", 1)[1])
        at_emulator = Counter(m["to"] for m in emulator.messages())
        throttled = emulator.stats()["actions"]["SendMessageToGlobe"].get("fault_throttle", 0)
    lines = [json.loads(line) for line in (folder / "results.jsonl").open()]
    statuses = {line["to"]: line["status"] for line in lines}
    accepted = {to for to, status in statuses.items() if status == "accepted"}
    assert throttled > 0
    assert set(at_emulator.values()) == {1}, "someone got two"
    assert accepted <= set(at_emulator), f"accepted without a message: {sorted(accepted - set(at_emulator))}"
    assert summary["accepted"] == len(accepted)  # the summary counts only those
    missing = [to for to in statuses if to not in at_emulator]
    assert all(statuses[to] in ("arrived", "unknown") for to in missing), Counter(statuses[to] for to in missing)
    assert len(statuses) == summary["total"] == count
    arrived_without_message = sum(1 for to in missing if statuses[to] == "arrived")
    print(
        f"5 SIGKILLs at 20% throttling: {len(at_emulator)} of {count} got one message, none two; "
        f"accepted {summary['accepted']} (all at the emulator), arrived {summary['arrived']} "
        f"({arrived_without_message} of them without a message: before 0.3 counted with the accepted), "
        f"unknown {summary['unknown']}"
    )


# --- the key at rest ----------------------------------------------------------------------------------------


def test_a_rotated_key_whose_old_part_was_dropped_names_the_setting_and_the_way_back(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    tmp_path: Path,
    fernet: Callable[[str], None],
    capfd: Any,
) -> None:
    emulator = globesms_conn()
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    fernet(old)
    emulator.set_faults(script=["internal_error"])  # one request left in doubt, sealed with the old key
    run_at(run_dag, campaign("ev_rotated", str(tmp_path), confirm_by_replay=False, retries=0))
    fernet(new)  # rotated, the old key dropped
    dropped = run_at(run_dag, campaign("ev_rotated", str(tmp_path), retries=0))
    assert task_states(dropped) == {"send": "failed"}
    logged = capfd.readouterr().out
    assert "sealed with another key than the one configured" in logged
    assert "[core] fernet_key" in logged
    assert "'new_key,old_key'" in logged
    assert len(emulator.messages()) == 6  # nothing sent by the failed try
    fernet(f"{new},{old}")  # Airflow's rotation: the new key seals, both open
    rotated = run_at(run_dag, campaign("ev_rotated", str(tmp_path), retries=0, fail_on_unknown=False))
    assert task_states(rotated) == {"send": "success"}
    (summary,) = xcom_values(rotated, "send")
    assert (summary["accepted"], summary["arrived"]) == (5, 1)
    assert len(emulator.messages()) == 6


@pytest.mark.parametrize(
    "key", ["not-a-fernet-key", "short", f"{base64.urlsafe_b64encode(b'k' * 32).decode()},broken"], ids=str
)
def test_a_key_that_is_set_but_unusable_refuses_to_send(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    tmp_path: Path,
    fernet: Callable[[str], None],
    capfd: Any,
    key: str,
) -> None:
    emulator = globesms_conn()
    fernet(key)
    dag_run = run_at(run_dag, campaign("ev_bad_key", str(tmp_path), retries=0))
    assert task_states(dag_run) == {"send": "failed"}
    assert emulator.messages() == []
    logged = capfd.readouterr().out
    assert "[core] fernet_key is set but unusable" in logged
    assert key not in logged  # the key itself is never logged


@pytest.mark.parametrize("key", ["", "{FERNET_KEY}"], ids=["empty", "template_placeholder"])
def test_no_key_configured_sends_with_a_warning(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    tmp_path: Path,
    fernet: Callable[[str], None],
    capfd: Any,
    caplog: pytest.LogCaptureFixture,
    key: str,
) -> None:
    emulator = globesms_conn()
    fernet(key)
    assert task_states(run_at(run_dag, campaign("ev_no_key", str(tmp_path)))) == {"send": "success"}
    assert len(emulator.messages()) == 6
    assert "no [core] fernet_key is configured" in capfd.readouterr().out + caplog.text


# --- owner-only files ---------------------------------------------------------------------------------------


def test_every_file_and_folder_is_owner_only_under_umask_022(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path, umask_022: None
) -> None:
    emulator = globesms_conn()
    base = tmp_path / "ledgers"  # made by the provider, with every folder under it
    emulator.set_faults(script=["internal_error"])  # a request in doubt: the ledger keeps it
    run_at(run_dag, campaign("ev_modes", str(base), confirm_by_replay=False, retries=0))
    names = {p.name for p in base.rglob("*")}
    assert {"ledger.sqlite3", "ledger.lease", "results.jsonl"} <= names
    wider = wider_than_owner(base)
    assert not wider, wider


def test_sqlite_files_and_their_wal_and_shm_are_owner_only_while_open(tmp_path: Path, umask_022: None) -> None:
    db = open_sqlite(str(tmp_path / "deep" / "store.sqlite3"), schema="CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    present = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in (tmp_path / "deep").iterdir()}
    assert {"store.sqlite3", "store.sqlite3-wal", "store.sqlite3-shm"} <= set(present)
    assert set(present.values()) == {"0o600"}, present
    assert oct(stat.S_IMODE((tmp_path / "deep").stat().st_mode)) == "0o700"
    db.close()


def test_a_file_an_older_version_left_readable_is_narrowed_when_opened(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "ledger.sqlite3"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    SqliteLedger(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- one folder per task instance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_ids",
    [
        ["manual__2026-11-23T00:00:00+00:00", "manual__2026-11-23T00_00_00_00_00", "manual__2026-11-23T00:00:00_00:00"],
        ["a:b", "a_b", "a+b", "a b", "a/b", "a\\b", "a~b"],
        ["..", ".", "...", "_", "~", ""],
    ],
)
def test_run_ids_never_share_a_folder_and_never_leave_the_dags(run_ids: list[str], tmp_path: Path) -> None:
    base = str(tmp_path)
    folders = [task_instance_location(ti(run_id), base) for run_id in run_ids]
    assert len(set(folders)) == len(run_ids), folders
    dag_folder = (tmp_path / "promo").resolve()
    for folder in folders:
        resolved = Path(folder).resolve()
        assert dag_folder in resolved.parents, (folder, resolved)
        assert len(resolved.relative_to(dag_folder).parts) == 3  # run, task, map index: no more, no fewer


def test_a_location_segment_is_plain_where_the_id_is() -> None:
    assert location_segment("scheduled__2026-11-23") == "scheduled__2026-11-23"
    assert location_segment("..").startswith("..~")
    assert location_segment("a:b").startswith("a_b~")
    assert len(location_segment("x:" * 125)) <= 121  # a 250-character id: a valid file name


def test_a_retry_finds_the_ledger_an_earlier_try_left_where_0_2_kept_it(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path, capfd: Any
) -> None:
    """Upgrade mid-campaign: the first try (moved where 0.2 put its folder) sent everything; the retry after
    the upgrade must find that ledger, send nothing, and report every recipient."""
    emulator = globesms_conn()
    first = run_at(run_dag, campaign("ev_upgrade", str(tmp_path), retries=0))
    assert len(emulator.messages()) == 6
    instance = ti(first.run_id, "ev_upgrade")
    new, old = (
        task_instance_location(instance, str(tmp_path)),
        task_instance_location(instance, str(tmp_path), legacy=True),
    )
    assert new != old
    Path(old).parent.mkdir(parents=True, exist_ok=True)
    Path(new).rename(old)
    again = run_at(run_dag, campaign("ev_upgrade", str(tmp_path), retries=0))
    assert task_states(again) == {"send": "success"}
    (summary,) = xcom_values(again, "send")
    assert (summary["skipped_already_sent"], summary["sent"], summary["accepted"]) == (6, 0, 6)
    assert len(emulator.messages()) == 6
    assert f"Using the ledger an earlier try left at {old}" in capfd.readouterr().out


def test_a_legacy_folder_that_leaves_its_dag_is_never_used(tmp_path: Path) -> None:
    from airflow_provider_globesms.operators.ledger_place import ledger_location

    instance = ti("..", "promo")
    legacy = Path(task_instance_location(instance, str(tmp_path), legacy=True))
    legacy.mkdir(parents=True)
    (legacy / "ledger.sqlite3").write_bytes(b"")
    chosen = ledger_location({"ti": instance}, str(tmp_path), "promo.send.digest")
    assert chosen == task_instance_location(instance, str(tmp_path))
    assert (tmp_path / "promo").resolve() in Path(chosen).resolve().parents
