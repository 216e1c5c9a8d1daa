"""Recipient rows are data, never templates: Airflow must not render the strings inside literal rows.

Airflow renders every string nested in a template field. ``recipients`` is one (so that a path or URI may
be templated), and a literal row such as ``{"name": "{{ conn.globesms_default.password }}"}`` was rendered:
the connection secret went out by SMS. A row value ending in ``.txt`` or ``.j2`` was loaded as a template
file. Only ``message`` is a template, and it sees row values as values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import DAG

from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import task_states

HOSTILE = "{{ conn.globesms_default.password }}"


def texts(emulator: EmulatorServer) -> list[str]:
    return sorted(m["message"] for m in emulator.messages())


def test_a_literal_row_holding_a_template_is_sent_literally(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer]
) -> None:
    emulator = globesms_conn()
    rows = [{"to": "+85291234567", "name": HOSTILE}, {"to": "+85291234568", "name": "notes.txt"}]
    with DAG("data_literal_rows", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="send", recipients=rows, message="Hi {{ recipient.name }}")
    assert task_states(run_dag(dag)) == {"send": "success"}
    assert texts(emulator) == sorted([f"Hi {HOSTILE}", "Hi notes.txt"])
    assert not any("SECRET" in text for text in texts(emulator))


def test_literal_rows_of_a_mapped_task_are_data_too(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer]
) -> None:
    emulator = globesms_conn()
    shards = [[{"to": "+85291234567", "name": HOSTILE}], [{"to": "+85291234568", "name": "card.j2"}]]
    with DAG("data_mapped_rows", schedule=None) as dag:
        SendGlobeSmsOperator.partial(task_id="send", message="Hi {{ recipient.name }}").expand(recipients=shards)
    assert set(task_states(run_dag(dag)).values()) == {"success"}
    assert texts(emulator) == sorted([f"Hi {HOSTILE}", "Hi card.j2"])


def test_a_single_literal_row_and_the_message_template_still_render(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer]
) -> None:
    emulator = globesms_conn()
    with DAG("data_one_row", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send",
            recipients={"to": "+85291234567", "code": "{{ 7 * 6 }}"},
            message="Code {{ recipient.code }} for {{ dag.dag_id }}",
        )
    assert task_states(run_dag(dag)) == {"send": "success"}
    assert texts(emulator) == ["Code {{ 7 * 6 }} for data_one_row"]
