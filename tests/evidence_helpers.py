"""What the evidence tests share: one small campaign, its run, a task instance's names, owner-only checks.

Their fixtures (``fernet``, ``umask_022``) are in conftest.py."""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from airflow.sdk import DAG

from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator

WHEN = datetime(2026, 11, 23, tzinfo=timezone.utc)
ROWS = [{"to": f"+8529123450{n}", "code": f"OTP-4417{n}"} for n in range(6)]


def campaign(dag_id: str, ledgers: str, **options: Any) -> DAG:
    """Six one-time codes sent to six numbers, the ledger under ``ledgers``."""
    with DAG(dag_id, schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send", recipients=ROWS, message="Your code is {{ recipient.code }}", ledger_uri=ledgers, **options
        )
    return dag


def run_at(run_dag: Callable[..., Any], dag: DAG, when: datetime = WHEN) -> Any:
    """The run at ``when``: the same run id each time, so the same ledger."""
    return run_dag(dag, logical_date=when, run_after=when)


def ti(run_id: str, dag_id: str = "promo", task_id: str = "send", map_index: int = -1) -> Any:
    """A task instance's names, as the ledger's place reads them."""
    return SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, try_number=1)


def wider_than_owner(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (itself included) that anyone but its owner may read or enter."""
    found = {}
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o077:
            found[str(p.relative_to(root))] = oct(mode)
    return found
