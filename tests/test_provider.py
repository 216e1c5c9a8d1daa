"""Airflow discovers the package as a provider, with its connection type and form."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_globesms import get_provider_info
from tests.airflow_compat import CONN_FIELDS_READ

AIRFLOW_BIN = Path(sys.executable).with_name("airflow")


def airflow_cli(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [str(AIRFLOW_BIN), *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


@pytest.mark.parametrize("kind", ["hooks", "operators", "sensors", "triggers"])
def test_declared_modules_import(kind: str) -> None:
    import importlib

    for entry in get_provider_info().get(kind, []):
        for module in entry["python-modules"]:
            importlib.import_module(module)


def test_declared_notifiers_import() -> None:
    import importlib

    for dotted in get_provider_info().get("notifications", []):
        module, _, name = dotted.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_airflow_providers_list_shows_the_provider(tmp_path: Path) -> None:
    providers = json.loads(airflow_cli(tmp_path, "providers", "list"))
    (ours,) = [p for p in providers if p["package_name"] == "airflow-provider-globesms"]
    assert ours["version"] == get_provider_info()["versions"][0]


def test_airflow_providers_hooks_shows_the_connection_type(tmp_path: Path) -> None:
    hooks = json.loads(airflow_cli(tmp_path, "providers", "hooks"))
    (ours,) = [h for h in hooks if h["connection_type"] == "globesms"]
    assert ours["class"] == "airflow_provider_globesms.hooks.globesms.GlobeSmsHook"
    assert ours["hook_name"] == "Alibaba Cloud SMS (international)"
    assert ours["conn_id_attribute_name"] == "globesms_conn_id"


@pytest.mark.skipif(
    not CONN_FIELDS_READ and importlib.util.find_spec("flask_appbuilder") is None,
    reason="Airflow 3.1 builds connection form widgets only with flask_appbuilder and wtforms (the FAB provider), "
    "not installed here; 3.2 and later read get_provider_info's conn-fields",
)
def test_airflow_sees_the_connection_form(tmp_path: Path) -> None:
    widgets = json.loads(airflow_cli(tmp_path, "providers", "widgets"))
    names = {w["connection_parameter_name"] for w in widgets if w["package_name"] == "airflow-provider-globesms"}
    assert "extra__globesms__endpoint" in names
    assert "extra__globesms__security_token" in names


def test_airflow_providers_links_shows_the_sandbox_link(tmp_path: Path) -> None:
    links = json.loads(airflow_cli(tmp_path, "providers", "links"))
    assert {"extra_link_class_name": "airflow_provider_globesms.links.SandboxCampaignLink"} in links


def test_airflow_plugins_shows_the_sandbox_plugin(tmp_path: Path) -> None:
    plugins = json.loads(airflow_cli(tmp_path, "plugins"))
    (ours,) = [p for p in plugins if p["name"] == "globesms_sandbox"]
    assert "airflow-provider-globesms" in str(ours["source"])
