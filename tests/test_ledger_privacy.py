"""What the ledger keeps at rest: a signed request (the text, e.g. a one-time code, and any STS token)
only while its message is in doubt, sealed with Airflow's Fernet key when one is set; numbers masked;
the object-storage ledger compacted to one snapshot when the run ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, ObjectStoragePath
from cryptography.fernet import Fernet

from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.airflow_compat import forget_fernet

TOKEN = "STS.PrivacyT0kenValue"
ROWS = [{"to": f"+8529123456{n}", "code": f"OTP-82910{n}"} for n in range(6)]


@pytest.fixture
def fernet_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", key)
    forget_fernet()
    yield key
    forget_fernet()


WHEN = datetime(2026, 11, 22, tzinfo=timezone.utc)


def campaign(ledgers: str, **options: Any) -> DAG:
    with DAG("privacy_campaign", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send", recipients=ROWS, message="Your code is {{ recipient.code }}", ledger_uri=ledgers, **options
        )
    return dag


def run_dag_at(run_dag: Callable[..., Any], dag: DAG) -> Any:
    return run_dag(dag, logical_date=WHEN, run_after=WHEN)  # the same run each time: the same ledger


def stored_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "results" not in p.name)


def start(globesms_conn: Callable[..., EmulatorServer]) -> EmulatorServer:
    emulator = globesms_conn(security_token=TOKEN, timeout=2)
    emulator.set_faults(script=["hang"], hang_seconds=5)  # one message stays in doubt (no replay below)
    return emulator


def test_without_a_key_only_the_request_in_doubt_is_kept(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    start(globesms_conn)
    run_dag_at(run_dag, campaign(str(tmp_path), confirm_by_replay=False))
    stored = stored_bytes(tmp_path)
    kept = [row for row in ROWS if row["code"].encode() in stored]
    assert len(kept) == 1  # the one still in doubt, to settle it by replay; the five settled are gone
    numbers = [row["to"] for row in ROWS if row["to"][1:].encode() in stored]
    assert numbers == [kept[0]["to"]]  # inside that request only: the ledger's own column is masked


def test_with_airflow_s_fernet_key_nothing_readable_is_kept_and_a_retry_still_settles(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path, fernet_key: str
) -> None:
    emulator = start(globesms_conn)
    run_dag_at(run_dag, campaign(str(tmp_path), confirm_by_replay=False))
    stored = stored_bytes(tmp_path)
    assert TOKEN.encode() not in stored
    assert not any(row["code"].encode() in stored for row in ROWS)
    assert b"fernet:" in stored  # the request in doubt, sealed
    settled = run_dag_at(
        run_dag, campaign(str(tmp_path), retries=0, retry_delay=timedelta(0), fail_on_unknown=False)
    )  # replay: unsealed, sent
    (summary,) = xcom_values(settled, "send")
    assert (summary["arrived"], summary["unknown"], summary["accepted"]) == (1, 0, 5)
    assert task_states(settled) == {"send": "success"}
    assert len(emulator.messages()) == 6


def test_the_object_storage_ledger_is_compacted_to_one_snapshot(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    start(globesms_conn)
    base = f"memory://privacy-{tmp_path.name}"
    run_dag_at(run_dag, campaign(base, confirm_by_replay=False))
    (ledger,) = [p for p in ObjectStoragePath(base).rglob("*") if p.name == "ledger"]
    segments = [p for p in ledger.iterdir() if p.name.endswith(".jsonl")]
    assert len(segments) == 1
    assert segments[0].name.endswith("-s.jsonl")
    text = segments[0].read_text()
    kept = [row for row in ROWS if row["code"] in text]
    assert len(kept) == 1  # only the request still in doubt
    assert [row["to"] for row in ROWS if row["to"][1:] in text] == [kept[0]["to"]]
