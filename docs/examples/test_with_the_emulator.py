"""Testing a DAG that sends SMS: the emulator in place of Alibaba, ``dag.test()`` in place of a scheduler.

Enable the fixtures in your ``conftest.py``::

    pytest_plugins = ["airflow_provider_globesms.emulator.pytest_plugin"]

and create Airflow's metadata database once (``airflow db migrate``) in the ``AIRFLOW_HOME`` the tests use.
"""

from __future__ import annotations

import json

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import run_dag, task_states, xcom_values


# --8<-- [start:test]
def test_the_team_is_told_once(globesms_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"endpoint": globesms_emulator.url}  # the emulator's free port on 127.0.0.1
    connection = {"conn_type": "globesms", "login": "AKID", "password": "SECRET", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_GLOBESMS_DEFAULT", json.dumps(connection))

    with DAG("test_report_ready", schedule=None) as dag:
        SendGlobeSmsOperator(
            task_id="notify",
            to=["+85291234567", "+6591234567"],
            message="Report for {{ dag_run.run_after | ds }} is ready",
        )
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"notify": "success"}
    assert xcom_values(dag_run, "notify")[0]["accepted"] == 2
    assert sorted(m["to"] for m in globesms_emulator.messages()) == ["6591234567", "85291234567"]


# --8<-- [end:test]
