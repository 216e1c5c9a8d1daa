"""Issue 10's acceptance, end to end: a wrong-secret V1 call with an STS token leaves no trace of the token or
of a full number anywhere the provider or Airflow writes: the task log, the results file, the ledger, XCom, the
Test button's message, and every byte of the metadata database and of every file under AIRFLOW_HOME.

Token and number are drawn at random for each run, so no other test, and not this file's source (which Airflow
stores as the DAG's code), can hold them. The token is URL-safe, so each of its percent-encodings contains it;
the number is searched as its digits (any form: +, %2B, %252B) and as its national part.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from airflow.sdk import DAG

from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.conftest import AIRFLOW_HOME


def _fresh_number() -> str:
    """A valid Hong Kong mobile that no other test uses (drawn until phonenumbers calls it valid)."""
    while not phonenumbers.is_valid_number(phonenumbers.parse(number := f"+8529{random.randrange(10**6, 10**7)}")):
        pass
    return number[1:]


def _secret_pair() -> tuple[str, str, list[bytes]]:
    core = secrets.token_urlsafe(24)
    number = _fresh_number()
    return f"STS.{core}", number, [core.encode(), number.encode(), number[-8:].encode()]


def _files(*roots: Path, skip: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and skip not in p.parents]


def _traces(data: bytes, needles: list[bytes]) -> list[str]:
    return [needle.decode() for needle in needles if needle in data]


def _raw_bytes(path: Path) -> bytes:
    """A file's bytes, read by another process. Opening and closing airflow.db or its WAL here would drop the
    locks SQLite holds on it in this process (POSIX advisory locks belong to the process, and any close()
    releases them), and a later writer could corrupt the database (sqlite.org/howtocorrupt.html, 2.2): a
    killed-worker test later in the session then found it malformed."""
    return subprocess.run(["cat", str(path)], capture_output=True, check=True, timeout=60).stdout


def _without_the_recipient_column(path: Path) -> bytes:
    """A file's bytes; for the results file, every field but ``to``: saying which number got which outcome
    is that file's job (it is the user's output, like the input file). Its error texts must not repeat it."""
    if path.name != "results.jsonl":
        return _raw_bytes(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return json.dumps([{k: v for k, v in line.items() if k != "to"} for line in lines]).encode()


def _database_text() -> bytes:
    """Every value of every table, as text: catches what a page-level grep could miss (none compressed)."""
    with contextlib.closing(sqlite3.connect(AIRFLOW_HOME / "airflow.db")) as db:  # SQLite's own: locks kept
        return "\n".join(db.iterdump()).encode()


@pytest.mark.parametrize("source", ["to", "file"])
def test_a_wrong_secret_with_a_token_leaves_no_trace_anywhere(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    source: str,
) -> None:
    token, number, needles = _secret_pair()
    emulator = globesms_conn(password="WRONG", security_token=token, signature_version="v1")
    inputs = tmp_path / "input"  # the user's own file, which of course holds the number
    inputs.mkdir()
    (inputs / "people.csv").write_text(f"to,name\n+{number},Li\n")
    where: dict[str, Any] = {"to": f"+{number}"} if source == "to" else {"recipients": str(inputs / "people.csv")}
    with DAG(f"no_trace_{source}", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="send", message="Hi, your code is 4711", ledger_uri=str(tmp_path), **where)
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"send": "failed"}
    assert emulator.stats()["codes"].get("SignatureDoesNotMatch", 0) >= 1  # the gateway did echo them

    ok, test_message = GlobeSmsHook().test_connection()
    assert not ok
    log = (capfd.readouterr().out + capfd.readouterr().err).encode()
    assert b"SignatureDoesNotMatch" in log
    (summary,) = xcom_values(dag_run, "send", key="summary")
    written = _files(AIRFLOW_HOME, tmp_path, skip=inputs)
    assert any(p.name == "results.jsonl" and p.stat().st_size for p in tmp_path.rglob("*"))
    assert any(p.name == "airflow.db" for p in written)
    places: dict[str, bytes] = {
        "task log": log,
        "xcom summary": repr(summary).encode(),
        "Test button": test_message.encode(),
        "metadata database (every table as text)": _database_text(),
        **{str(p): _without_the_recipient_column(p) for p in written},
    }
    leaks = {place: found for place, data in places.items() if (found := _traces(data, needles))}
    assert not leaks, f"token or number found in: {leaks}"


def _rendered_fields(dag_run: Any, task_id: str) -> list[dict[str, Any]]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rtif
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(Rtif).where(Rtif.dag_id == dag_run.dag_id, Rtif.run_id == dag_run.run_id)
        return [dict(r.rendered_fields) for r in session.scalars(query.where(Rtif.task_id == task_id)).all()]


def test_the_rendered_fields_show_masked_numbers_and_row_counts_only(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], capfd: pytest.CaptureFixture[str]
) -> None:
    """What the UI's Rendered Template tab shows (and the metadata database keeps): numbers given as `to`,
    templated, mapped or from XCom, masked; rows from XCom or mapped literals as a count and their field names.
    Mapped tasks are rendered by Airflow without the operator's render_template_fields: their rendered fields
    are stored again, masked, when the task ends."""
    emulator = globesms_conn()
    from airflow.sdk import task

    numbers = [_fresh_number() for _ in range(7)]
    with DAG("no_trace_rendered", schedule=None, params={"oncall": f"+{numbers[0]}"}) as dag:

        @task
        def rows() -> list[dict[str, str]]:
            return [{"to": f"+{numbers[1]}", "name": "Li"}]

        @task
        def one_number() -> str:
            return f"+{numbers[4]}"

        @task
        def shard(n: int) -> dict[str, str]:
            return {"to": f"+{numbers[5 + n]}", "name": f"S{n}"}

        SendGlobeSmsOperator(task_id="templated", to="{{ params.oncall }}", message="hi")
        SendGlobeSmsOperator(task_id="from_xcom", recipients=rows(), message="Hi {{ recipient.name }}")
        SendGlobeSmsOperator.partial(task_id="mapped", message="hi").expand(to=[f"+{numbers[2]}", f"+{numbers[3]}"])
        SendGlobeSmsOperator.partial(task_id="mapped_templated", to="{{ params.oncall }}").expand(message=["a", "b"])
        SendGlobeSmsOperator.partial(task_id="mapped_xcom_rows", recipients=rows()).expand(message=["c {{ 1 }}"])
        SendGlobeSmsOperator(task_id="to_from_xcom", to=one_number(), message="xcom number")
        SendGlobeSmsOperator(
            task_id="lazy_rows", recipients=shard.expand(n=[0, 1]), message="lazy {{ recipient.name }}"
        )
        SendGlobeSmsOperator(
            task_id="row_error",
            recipients=[{"to": f"+{numbers[0]}"}],
            message="{{ {}[recipient.to] }}",
            on_invalid="skip",
        )
    dag_run = run_dag(dag)
    got = task_states(dag_run)
    assert got.pop("row_error") == "failed"  # its only row fails to render: nothing to send
    assert set(got.values()) == {"success"}, got
    names = ("templated", "from_xcom", "mapped", "mapped_templated", "mapped_xcom_rows", "to_from_xcom", "lazy_rows")
    shown = {t: _rendered_fields(dag_run, t) for t in names}
    assert shown["templated"][0]["to"] == [f"+852****{numbers[0][-4:]}"]
    described = "1 row(s) with fields to, name (data, not shown: rows hold phone numbers)"
    assert shown["from_xcom"][0]["recipients"] == described
    assert shown["mapped_xcom_rows"][0]["recipients"] == described
    assert sorted(f["to"][0] for f in shown["mapped"]) == sorted(f"+852****{n[-4:]}" for n in numbers[2:4])
    assert [f["to"] for f in shown["mapped_templated"]] == [[f"+852****{numbers[0][-4:]}"]] * 2
    assert shown["to_from_xcom"][0]["to"] == [f"+852****{numbers[4][-4:]}"]
    assert shown["lazy_rows"][0]["recipients"].startswith("2 row(s) with fields to, name")
    assert {m["message"] for m in emulator.messages()} >= {"xcom number", "lazy S0", "lazy S1", "a", "b", "c 1"}
    assert not _traces(json.dumps(shown).encode(), [n.encode() for n in numbers])
    # Our lines (row errors included) mask numbers; Airflow logs what the user's own upstream tasks return.
    ours = "\n".join(line for line in capfd.readouterr().out.splitlines() if "Returned value was" not in line)
    assert "+852****" in ours
    assert not _traces(ours.encode(), [n.encode() for n in numbers])
