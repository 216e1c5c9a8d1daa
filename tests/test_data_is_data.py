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


# --- rendering errors belong to their row ----------------------------------------------------------------


def test_a_runtime_error_in_one_row_makes_that_row_invalid_and_the_rest_go(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], capfd: Any
) -> None:
    emulator = globesms_conn()
    rows = [
        {"to": "+85291234567", "amount": 10, "parts": 2},
        {"to": "+85291234568", "amount": "ten", "parts": 2},  # a string times 1.1
        {"to": "+85291234569", "amount": 10, "parts": 0},  # a zero divisor
    ]
    with DAG("data_row_errors", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send",
            recipients=rows,
            message="Pay {{ recipient.amount * 1.1 }} in {{ (recipient.amount / recipient.parts) | round }}",
            on_invalid="skip",
        )
    assert task_states(run_dag(dag)) == {"send": "success"}
    assert texts(emulator) == ["Pay 11.0 in 5.0"]
    logged = capfd.readouterr().out
    assert "TypeError" in logged
    assert "ZeroDivisionError" in logged
    # each rejected row is logged once, in the validation table with its masked number, not again per outcome
    assert logged.count("ZeroDivisionError") == 1
    assert "SMS to -" not in logged
    assert "+852****4569" in logged


def test_when_every_row_fails_even_skip_mode_fails_naming_the_reason(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], capfd: Any
) -> None:
    emulator = globesms_conn()
    rows = [{"to": f"+8529123456{n}"} for n in range(5)]
    with DAG("data_all_rows_fail", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="send", recipients=rows, message="Code {{ recipient.code }}", on_invalid="skip")
    assert task_states(run_dag(dag)) == {"send": "failed"}
    assert emulator.messages() == []
    assert "none of the 5 recipients is valid; nothing was sent. Most common reason (5 rows)" in capfd.readouterr().out


def test_native_object_dags_and_numbers_given_as_ints_work(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer]
) -> None:
    emulator = globesms_conn()
    with DAG("data_native", schedule=None, render_template_as_native_obj=True) as dag:
        SendGlobeSmsOperator(task_id="one", to="+85291234567", message="{{ 40 + 2 }}")
        SendGlobeSmsOperator(
            task_id="rows",
            recipients=[{"to": 85291234568, "code": "0471", "amount": "1.10"}],
            message="{{ recipient.code }}",
        )
        SendGlobeSmsOperator(task_id="amount", to=85291234569, message="Total {{ '1.10' }}")
    assert set(task_states(run_dag(dag)).values()) == {"success"}
    assert sorted((m["to"], m["message"]) for m in emulator.messages()) == [
        ("85291234567", "42"),
        ("85291234568", "0471"),  # not 471: the text is what the template wrote
        ("85291234569", "Total 1.10"),  # not 1.1
    ]


def test_an_empty_recipient_list_warns_and_reports_zero(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], capfd: Any
) -> None:
    globesms_conn()
    with DAG("data_empty", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="send", recipients=[], message="Hi")
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"send": "success"}
    assert "No recipients in 0 row(s): nothing to send." in capfd.readouterr().out


def test_a_nested_null_is_a_row_error_never_the_text_none(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], capfd: Any
) -> None:
    """Found by an adversarial review: only top-level nulls were caught."""
    emulator = globesms_conn()
    rows = [
        {"to": "+85291234567", "profile": {"name": "Ann"}},
        {"to": "+85291234568", "profile": {"name": None}},
        {"to": "+85291234569", "tags": [None]},
    ]
    with DAG("data_nested_null", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="send",
            recipients=rows,
            message="Hi {{ recipient.profile.name if recipient.profile else recipient.tags[0] }}",
            on_invalid="skip",
        )
    assert task_states(run_dag(dag)) == {"send": "success"}
    assert texts(emulator) == ["Hi Ann"]
    assert "a value the message uses is empty" in capfd.readouterr().out
