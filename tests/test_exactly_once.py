"""The four ways "never twice" broke, reproduced in real Airflow against the emulator, now held.

1. A reset storm for a whole try (a load balancer forwarding every request, then resetting), then a
   calm retry of the same task instance.
2. Two copies of one task instance at once (a zombie and its replacement), together and 0.5 s apart.
3. A ledger truncated, deleted or wiped between tries.
4. (in test_operator_reliability.py) five SIGKILLs under 20% throttling, then a final run.
Plus the configuration guards: a ``nan``/``inf``/0/negative ``timeout`` or ``max_qps`` is refused before
any request.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms.client import ConfigurationError, Credentials, GlobeSmsClient, Timeout
from airflow_provider_globesms.client.bulk import BulkSender, Campaign, LedgerError
from airflow_provider_globesms.client.ledger.lease import Holder, ObjectLease
from airflow_provider_globesms.client.ledger.object_ledger import SegmentLedger
from airflow_provider_globesms.client.results.report import ResultsWriter
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.operators.send_ledger import LedgerGuard
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.airflow_compat import TASK_STATE_STORE
from tests.conftest import connection_json
from tests.fault_proxy import FaultProxy

LOGICAL_DATE = datetime(2026, 11, 22, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent


def people(count: int, prefix: str = "9") -> list[dict[str, str]]:
    return [{"to": f"+852{prefix}{n + 1000000:07d}", "name": f"Customer {n}"} for n in range(count)]


def per_number(emulator: EmulatorServer) -> Counter[str]:
    return Counter(m["to"] for m in emulator.messages())


def run(run_dag: Callable[..., Any], dag: DAG) -> Any:
    return run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)


@pytest.fixture
def emulator(globesms_emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    return globesms_emulator_factory(delivery_delay=0, seed=7)


def use(monkeypatch: pytest.MonkeyPatch, url: str, **extra: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GLOBESMS_DEFAULT", connection_json(url, **extra))


# --- 1. reset storm ---------------------------------------------------------------------------------------


def test_a_reset_storm_then_a_calm_retry_sends_nobody_two(
    run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer
) -> None:
    with FaultProxy(emulator.port) as proxy:
        proxy.set_schedule([], default="forward_reset")  # every request reaches the API, every answer is lost
        use(monkeypatch, proxy.url, timeout=1)

        def storm_ends(_context: Any) -> None:
            proxy.set_schedule([], default="pass")

        with DAG("eo_reset_storm", schedule=None) as dag:
            SendGlobeSmsOperator(
                task_id="campaign",
                recipients=people(20),
                message="Hi {{ recipient.name }}",
                retries=1,
                retry_delay=timedelta(0),
                on_retry_callback=storm_ends,
            )
        dag_run = run(run_dag, dag)
        storm = proxy.stats()["forward_reset"]
    counts = per_number(emulator)
    assert (len(counts), set(counts.values())) == (20, {1}), counts
    assert storm >= 40  # each message and at least one byte-identical replay of it went out in the storm
    (summary,) = xcom_values(dag_run, "campaign", key="summary")
    # The retry replayed each stored request: the gateway had seen every nonce, so all 20 "arrived" (never
    # "accepted": arrival is all a refused replay proves), and the task fails until someone decides.
    # "received" is the same count under its name before 0.3.
    assert (summary["arrived"], summary["unknown"], summary["failed"], summary["accepted"]) == (20, 0, 0, 0), summary
    assert summary["received"] == 20
    assert summary["recovered_after_crash"] == 20
    assert task_states(dag_run) == {"campaign": "failed"}


# --- 2. two copies of one task instance -----------------------------------------------------------------

COPY = """
import json, os, sys, time
from types import SimpleNamespace
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.operators.send_ledger import LedgerGuard

recipients, lease_wait, ledger_uri, go, qps = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
op = SendGlobeSmsOperator(task_id="campaign", recipients=recipients, message="Hi {{ recipient.name }}",
                          max_qps=float(qps), lease_wait=lease_wait, ledger_uri=ledger_uri)
ti = SimpleNamespace(dag_id="eo_two_copies", run_id="manual__2026-11-22", task_id="campaign", map_index=-1,
                     try_number=1, xcom_push=lambda **kw: None)
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)
try:
    print("RESULT " + json.dumps(op.execute({"ti": ti})), flush=True)
except Exception as exc:
    print("ERROR " + type(exc).__name__ + ": " + str(exc).replace(chr(10), " "), flush=True)
"""


def run_copies(tmp_path: Path, url: str, lease_wait: float, gap: float, max_qps: float = 200) -> list[str]:
    """Start two copies of one task instance, release them ``gap`` seconds apart; their last lines."""
    recipients = tmp_path / "people.csv"
    recipients.write_text("to,name\n" + "".join(f"{p['to']},{p['name']}\n" for p in people(200)))
    script = tmp_path / "task_copy.py"  # not copy.py: that would shadow the standard library
    script.write_text(COPY)
    env = {**os.environ, "AIRFLOW_CONN_GLOBESMS_DEFAULT": connection_json(url)}
    gates = [tmp_path / "go-first", tmp_path / "go-second"]
    copies = [
        subprocess.Popen(
            [sys.executable, str(script), *map(str, (recipients, lease_wait, tmp_path / "ledgers", gate, max_qps))],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for gate in gates
    ]
    for copy in copies:  # both imported and built: now they race for real
        assert copy.stdout is not None
        while not (line := copy.stdout.readline()).startswith("READY"):
            assert line, "a copy died before it was ready"
    gates[0].touch()
    time.sleep(gap)
    gates[1].touch()
    outputs = [copy.communicate(timeout=120)[0] for copy in copies]
    return [
        next(line for line in reversed(out.splitlines()) if line.startswith(("RESULT", "ERROR"))) for out in outputs
    ]


@pytest.mark.parametrize("gap", [0.0, 0.5])
def test_two_copies_of_one_task_instance_send_nobody_two(tmp_path: Path, emulator: EmulatorServer, gap: float) -> None:
    endings = run_copies(tmp_path, emulator.url, lease_wait=60, gap=gap)
    counts = per_number(emulator)
    assert (len(counts), set(counts.values())) == (200, {1}), Counter(counts.values())
    summaries = sorted((json.loads(e.removeprefix("RESULT ")) for e in endings), key=lambda s: s["sent"])
    # The second waited for the lease, then found every message settled by the first.
    assert [(s["sent"], s["skipped_already_sent"], s["accepted"]) for s in summaries] == [(0, 200, 200), (200, 0, 200)]


def test_a_second_copy_that_cannot_wait_fails_naming_the_holder(tmp_path: Path, emulator: EmulatorServer) -> None:
    # 200 messages at 40/s hold the lease for 5 s: a second copy that starts late still finds it held.
    endings = run_copies(tmp_path, emulator.url, lease_wait=0.2, gap=0.0, max_qps=40)
    errors = [e for e in endings if e.startswith("ERROR")]
    assert len(errors) == 1, endings
    assert "Another copy of this task instance is sending; nothing was sent" in errors[0]
    assert "pid" in errors[0]
    counts = per_number(emulator)
    assert (len(counts), set(counts.values())) == (200, {1})


# --- 3. a ledger lost between tries -------------------------------------------------------------------------


def campaign_dag(ledgers: Path, **options: Any) -> DAG:
    with DAG("eo_lost_ledger", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="campaign",
            recipients=people(40),
            message="Hi {{ recipient.name }}",
            ledger_uri=str(ledgers),
            **options,
        )
    return dag


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_a_ledger_lost_between_runs_stops_the_rerun_before_sending(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    capfd: pytest.CaptureFixture[str],
    damage: str,
    tmp_path: Path,
) -> None:
    emulator = globesms_conn()
    (first,) = xcom_values(run(run_dag, campaign_dag(tmp_path)), "campaign")
    ledger = Path(first["results_uri"]).parent / "ledger.sqlite3"
    if damage == "truncate":
        ledger.write_bytes(b"")
    elif damage == "delete":
        ledger.unlink()
    else:
        ledger.write_bytes(b"this is not a database" * 100)
    capfd.readouterr()
    rerun = run(run_dag, campaign_dag(tmp_path))
    assert task_states(rerun) == {"campaign": "failed"}
    assert len(emulator.messages()) == 40  # nothing resent
    logged = capfd.readouterr().out
    expected = {
        "truncate": "is an empty file (0 bytes); nothing was sent",
        "delete": "is missing or empty, but an earlier try's results file exists",
        "garbage": "cannot be read",
    }[damage]
    assert expected in logged
    assert "resend_without_ledger=True" in logged


def test_resend_without_ledger_is_the_explicit_way_through(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    emulator = globesms_conn()
    (first,) = xcom_values(run(run_dag, campaign_dag(tmp_path)), "campaign")
    (Path(first["results_uri"]).parent / "ledger.sqlite3").write_bytes(b"")
    rerun = run(run_dag, campaign_dag(tmp_path, resend_without_ledger=True))
    assert task_states(rerun) == {"campaign": "success"}
    assert set(per_number(emulator).values()) == {2}  # asked for, and done
    assert list(Path(first["results_uri"]).parent.glob("ledger.sqlite3.damaged-*"))  # kept aside, not deleted


@pytest.mark.skipif(
    not TASK_STATE_STORE,
    reason="asserts Airflow 3.3's task state store (context['task_state_store']); Airflow 3.1 and 3.2 have none",
)
def test_a_wiped_task_folder_is_caught_by_the_task_state_store_witness(
    run_dag: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    emulator: EmulatorServer,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Ledger and results file gone (a wiped volume, a retry on another worker): Airflow's own record of the
    first try's sending stops the retry."""
    import shutil

    emulator.set_faults(script=["hang"], hang_seconds=2)
    use(monkeypatch, emulator.url, timeout=0.5)

    def wipe(context: Any) -> None:
        (summary,) = [context["ti"].xcom_pull(task_ids="campaign", key="summary")]
        shutil.rmtree(Path(summary["results_uri"]).parent)

    dag = campaign_dag(
        tmp_path, confirm_by_replay=False, retries=1, retry_delay=timedelta(0), on_retry_callback=wipe
    )  # one unknown fails the first try
    dag_run = run(run_dag, dag)
    assert task_states(dag_run) == {"campaign": "failed"}
    assert len(emulator.messages()) == 40  # the retry sent nothing
    logged = capfd.readouterr().out
    assert "try 1 started sending with a ledger at" in logged
    assert "task state store" in logged


# --- configuration guards ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
@pytest.mark.parametrize("name", ["timeout", "max_qps"])
def test_a_bad_timeout_or_rate_in_the_connection_is_refused_before_any_request(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], name: str, value: str
) -> None:
    emulator = globesms_conn(**{name: value})
    with DAG("eo_bad_settings", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="send", to="+85291234567", message="hi")
    assert task_states(run(run_dag, dag)) == {"send": "failed"}
    assert emulator.stats()["actions"] == {} or not emulator.stats()["actions"].get("SendMessageToGlobe")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0, -1])
def test_a_bad_max_qps_on_the_operator_is_refused_when_the_dag_is_parsed(value: float) -> None:
    with pytest.raises(ConfigurationError, match="max_qps"):
        SendGlobeSmsOperator(task_id="send", to="+85291234567", message="hi", max_qps=value)


# --- a lease that expires while a ledger write stalls ---------------------------------------------------------


class StallingPath:
    """A directory seen through a partition to its object store: once ``stall`` is set, every write hangs
    ``seconds``, then lands (found by an adversarial review: the lease was checked only before writes)."""

    def __init__(self, path: Path, stall: threading.Event, seconds: float) -> None:
        self.path, self.stall, self.seconds = path, stall, seconds

    @property
    def name(self) -> str:
        return self.path.name

    def __truediv__(self, other: str) -> StallingPath:
        return StallingPath(self.path / other, self.stall, self.seconds)

    def __str__(self) -> str:
        return str(self.path)

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        self.path.mkdir(mode, parents, exist_ok)

    def iterdir(self) -> Iterator[StallingPath]:
        return (StallingPath(child, self.stall, self.seconds) for child in self.path.iterdir())

    def exists(self) -> bool:
        return self.path.exists()

    def read_text(self) -> str:
        return self.path.read_text()

    def open(self, mode: str) -> IO[Any]:
        if mode[0] in "wx" and self.stall.is_set():
            time.sleep(self.seconds)
        handle = self.path.open(mode)
        if mode == "w" and self.path.name.endswith("-w.jsonl"):
            self.stall.set()  # the partition begins after the first pending record is written
        return handle


def test_a_copy_whose_lease_expires_during_a_stalled_write_does_not_send(emulator: EmulatorServer) -> None:
    stall = threading.Event()
    outcome: dict[str, Any] = {}
    numbers = ["+85291230002", "+85291230003"]

    def one_copy(root: Any, name: str, wait: float) -> None:
        lease = ObjectLease(root / "lease", Holder(description=name), ttl=2, skew=0.5)
        lease.acquire(wait=wait)
        client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url, timeout=Timeout(1, 2))
        campaign = Campaign(client, lambda row: "Hello", ["stalled", "run", "task", "-1"])
        items = [campaign.prepare(n + 1, {"to": to}) for n, to in enumerate(numbers)]
        sender = BulkSender(
            campaign,
            SegmentLedger(root / "ledger"),
            ResultsWriter(io.BytesIO()),
            concurrency=1,
            progress_interval=0,
            guard=LedgerGuard(lease, str(root), {}),
        )
        try:
            outcome[name] = sender.run(items, total=len(items))
        except Exception as exc:
            outcome[name] = exc
        finally:
            lease.release()
            client.close()

    with tempfile.TemporaryDirectory() as directory:
        first = threading.Thread(target=one_copy, args=(StallingPath(Path(directory), stall, 6.0), "A", 1.0))
        first.start()
        assert stall.wait(10)
        one_copy(Path(directory), "B", 20.0)  # takes over once A's lease expired (A's renewals stall too)
        first.join(30)
    counts = Counter(m["to"] for to in numbers for m in emulator.messages(to=to.lstrip("+")))
    assert set(counts.values()) == {1}, counts  # before the fix: the stalled copy sent its request too
    assert isinstance(outcome["A"], LedgerError), outcome["A"]
    assert "lease" in str(outcome["A"])
    assert outcome["B"].accepted + outcome["B"].received == 2
