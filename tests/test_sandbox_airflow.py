"""The sandbox in Airflow (dag.test() on SQLite): the send task's link and the plugin's view, only when
``[globesms] sandbox_url`` is set. The REST API's plugin listing and links are checked in the live test."""

from __future__ import annotations

import importlib
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_globesms import plugins
from airflow_provider_globesms.links import SandboxCampaignLink, campaign_url
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator, default_campaign_id
from airflow_provider_globesms.testing import task_states, xcom_values
from tests.airflow_compat import serialize_dag

LOGICAL_DATE = datetime(2026, 11, 22, tzinfo=timezone.utc)
LINK_KEY = SandboxCampaignLink().xcom_key


def two_sends(dag_id: str) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        SendGlobeSmsOperator(task_id="notify", to=["+85291234567", "+6591234567"], message="Hello")
        SendGlobeSmsOperator.partial(task_id="shards", message="Hi {{ recipient.name }}").expand(
            recipients=[[{"to": "+447911123456", "name": "Cy"}], [{"to": "+61412345678", "name": "Di"}]]
        )
    return dag


def serialized_links(dag: DAG) -> dict[str, Any]:
    encoded = serialize_dag(dag)
    tasks = [task["__var"] for task in encoded["tasks"]]
    return {task["task_id"]: task.get("_operator_extra_links") for task in tasks}


def test_nothing_is_added_without_a_sandbox(
    run_dag: Callable[..., Any], globesms_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW__GLOBESMS__SANDBOX_URL", raising=False)
    globesms_conn()
    assert SendGlobeSmsOperator.operator_extra_links == ()
    assert importlib.reload(plugins).GlobeSmsSandboxPlugin.external_views == []
    assert plugins.GlobeSmsSandboxPlugin.operator_extra_links == []
    dag = two_sends("sandbox_unset")
    assert set(serialized_links(dag).values()) == {None}
    dag_run = run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert set(task_states(dag_run).values()) == {"success"}
    assert xcom_values(dag_run, "notify", key=LINK_KEY) == []


def test_each_send_task_links_to_its_campaign_in_the_sandbox(
    run_dag: Callable[..., Any], globesms_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = globesms_conn()
    monkeypatch.setenv("AIRFLOW__GLOBESMS__SANDBOX_URL", emulator.url + "/")
    view = importlib.reload(plugins).GlobeSmsSandboxPlugin.external_views
    assert view == [
        {
            "name": "SMS sandbox",
            "href": f"{emulator.url}/_emulator/ui",
            "url_route": "sms-sandbox",
            "destination": "nav",
            "category": "browse",
        }
    ]
    assert [type(link) for link in plugins.GlobeSmsSandboxPlugin.operator_extra_links] == [SandboxCampaignLink]
    dag = two_sends("sandbox_set")
    assert serialized_links(dag)["notify"] == serialized_links(dag)["shards"] == {"SMS sandbox": LINK_KEY}
    dag_run = run_dag(dag, logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    assert set(task_states(dag_run).values()) == {"success"}
    (link,) = xcom_values(dag_run, "notify", key=LINK_KEY)
    assert link == campaign_url(emulator.url, default_campaign_id("sandbox_set", dag_run.run_id, "notify", -1))
    page = urllib.request.urlopen(link, timeout=10).read().decode()
    assert '<dd id="c-messages">2</dd>' in page
    shard_links = xcom_values(dag_run, "shards", key=LINK_KEY)
    expected = [
        campaign_url(emulator.url, default_campaign_id("sandbox_set", dag_run.run_id, "shards", n)) for n in (0, 1)
    ]
    assert shard_links == expected
