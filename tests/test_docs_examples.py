"""The docs' own examples (``docs/examples/``) and the README's, run against the emulator as a reader runs them.

The example DAGs the docs include are run by ``test_example_dags.py``; ``test_docs.py`` checks that the pages
include nothing else.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_globesms._compat import dag_bag
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.testing import task_states, xcom_values

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
# Each file in docs/examples and the test here that runs it.
RUN_BY = {
    "hook_and_client.py": "test_hook_and_client",
    "deadline_alert.py": "test_deadline_alert",
    "test_with_the_emulator.py": "test_with_the_emulator",
}


def test_every_docs_example_is_run_here() -> None:
    found = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.py")}
    assert found == set(RUN_BY), "a file in docs/examples/ that no test runs, or a test of a file gone"
    assert all(callable(globals().get(test)) for test in RUN_BY.values())


def example(name: str) -> Path:
    path = EXAMPLES / name
    assert path.is_file(), path
    return path


def load_dag(path: Path, dag_id: str) -> Any:
    DagBag, _ = dag_bag()
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def test_hook_and_client(globesms_conn: Callable[..., EmulatorServer], monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = globesms_conn()
    monkeypatch.setenv("GLOBESMS_EMULATOR_URL", emulator.url)
    runpy.run_path(str(example("hook_and_client.py")), run_name="__main__")
    texts = sorted(m["message"] for m in emulator.messages())
    assert texts == sorted(["hello", "Hi Ann", "Hi Bo", "Your code is 123456", *["Your parcel is on its way"] * 3])
    assert emulator.stats()["actions"]["QueryMessage"]["ok"] >= 1


def test_deadline_alert(globesms_conn: Callable[..., EmulatorServer]) -> None:
    """The DAG carries the alert, and the alert's callback, run as the triggerer runs it (the class by its
    path, awaited with the deadline's context), texts the on-call number."""
    emulator = globesms_conn()
    dag = load_dag(example("deadline_alert.py"), "nightly_load")
    alerts = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    (alert,) = alerts
    callback = alert.callback
    context = {"dag_run": {"dag_id": "nightly_load", "run_id": "scheduled__2026-12-07"}, "deadline": {"id": 1}}

    async def missed() -> None:
        module, _, name = callback.path.rpartition(".")
        await getattr(importlib.import_module(module), name)(**callback.kwargs, context=context)

    asyncio.run(missed())
    assert [(m["to"], m["message"]) for m in emulator.messages()] == [("85291234567", "nightly_load is late")]


def test_with_the_emulator(
    airflow_db: Path, globesms_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example test, with the plugin's fixture: it passes, and the emulator saw what it asserts."""
    from tests.conftest import _forget_cached_connections

    namespace = runpy.run_path(str(example("test_with_the_emulator.py")))
    _forget_cached_connections()
    try:
        namespace["test_the_team_is_told_once"](globesms_emulator, monkeypatch)
    finally:
        _forget_cached_connections()
    assert len(globesms_emulator.messages()) == 2


def readme_example() -> str:
    """The README's one Python block (``test_docs.py`` checks that no other spelling of a fence hides another)."""
    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    return str(block)


def test_the_readme_example(
    tmp_path: Path, run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer]
) -> None:
    """The README's ten lines, as a DAG file: loaded like the dag processor loads it, run, and received."""
    code = readme_example()
    assert len(code.strip().splitlines()) <= 12
    dag_file = tmp_path / "readme_example.py"
    dag_file.write_text(code)
    emulator = globesms_conn()
    (dag_id,) = re.findall(r'DAG\(\s*"(\w+)"', code)
    dag_run = run_dag(load_dag(dag_file, dag_id))
    assert set(task_states(dag_run).values()) == {"success"}
    (summary,) = xcom_values(dag_run, next(iter(task_states(dag_run))))
    assert summary["accepted"] == len(emulator.messages()) >= 1


def test_the_emulator_page_names_every_key_of_a_listed_message(globesms_emulator: EmulatorServer) -> None:
    """``GET /_emulator/messages`` as the emulator page documents it: every key it returns, and no other."""
    from airflow_provider_globesms.client import Credentials, GlobeSmsClient

    with GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=globesms_emulator.url) as client:
        client.send_message(to="+85291234567", message="hi", sender="Shop")
    (message,) = globesms_emulator.messages()
    page = (ROOT / "docs" / "emulator.md").read_text(encoding="utf-8")
    (row,) = [line for line in page.splitlines() if line.startswith("| `GET /_emulator/messages")]
    documented = set(re.findall(r"`(\w+)`", row.split("each message has", 1)[1]))
    assert documented >= set(message), f"undocumented: {set(message) - documented}"
    assert not documented - set(message) - {"sending", "delivered", "failed"}, documented - set(message)
