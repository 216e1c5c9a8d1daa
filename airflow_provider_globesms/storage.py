"""Where the provider keeps a task instance's files (ledger, results, receipts), local or remote.

A location is a local path or any ``ObjectStoragePath`` URI. The base comes from the task's argument,
else ``[globesms] ledger_uri``, else ``$AIRFLOW_HOME/globesms``; under it each task instance has its
own folder: ``<dag>/<run>/<task>/<map index or "task">``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath, conf

from airflow_provider_globesms.client.validation import MAX_TASK_ID_LENGTH

CONFIG_SECTION = "globesms"


def safe_segment(part: str) -> str:
    """A path segment from an Airflow id (run ids hold ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", part)


def is_local(location: str) -> bool:
    """Whether ``location`` is a local path (no scheme, or ``file://``)."""
    return "://" not in location or location.startswith("file://")


def local_path(location: str) -> Path:
    """The local path of a ``location`` (``file://`` removed, ``~`` expanded)."""
    return Path(location.removeprefix("file://")).expanduser()


def storage_path(location: str) -> ObjectStoragePath:
    """``ObjectStoragePath`` for a URI or a plain local path."""
    if "://" not in location:
        location = "file://" + os.path.abspath(os.path.expanduser(location))
    return ObjectStoragePath(location)


def base_location(explicit: str | None = None) -> str:
    """The folders' base: ``explicit``, else ``[globesms] ledger_uri``, else ``$AIRFLOW_HOME/globesms``."""
    return (
        explicit
        or conf.get(CONFIG_SECTION, "ledger_uri", fallback=None)
        or os.path.join(os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "globesms")
    )


def task_instance_scope(ti: Any) -> list[str]:
    """dag, run, task and map index of a task instance: the scope of its ledger keys."""
    map_index = getattr(ti, "map_index", -1)
    return [ti.dag_id, ti.run_id, ti.task_id, str(-1 if map_index is None else int(map_index))]


def task_instance_location(ti: Any, explicit_base: str | None = None) -> str:
    """The folder of a task instance's files under the base location."""
    dag_id, run_id, task_id, map_index = task_instance_scope(ti)
    folder = "/".join(
        [safe_segment(dag_id), safe_segment(run_id), safe_segment(task_id), map_index if map_index != "-1" else "task"]
    )
    return f"{base_location(explicit_base).rstrip('/')}/{folder}"


def local_work_dir(location: str) -> Path:
    """A local folder for a location's working files: the location itself when local, else a stable
    folder under the system's temp dir (reused by later attempts on the same worker)."""
    if is_local(location):
        return local_path(location)
    return Path(tempfile.gettempdir()) / "globesms" / safe_segment(location)


def store_file(local: Path, location: str) -> str:
    """Copy a finished local file to its location atomically where the store allows; return the URI."""
    if is_local(location):
        target = local_path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(local, partial)
        os.replace(partial, target)  # readers never see half a file
        return str(target)
    destination = storage_path(location)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with local.open("rb") as source, destination.open("wb") as sink:  # type: ignore[no-untyped-call]
        shutil.copyfileobj(source, sink, 1024 * 1024)
    return str(destination)


def default_campaign_id(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Deterministic TaskId for receipts: readable ids plus a digest of the run id (1-255 chars)."""
    run_digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    parts = [dag_id, task_id, *([str(map_index)] if map_index >= 0 else []), run_digest]
    campaign = ".".join(safe_segment(p) for p in parts)
    if len(campaign) > MAX_TASK_ID_LENGTH:
        campaign = campaign[: MAX_TASK_ID_LENGTH - 13] + "." + hashlib.sha256(campaign.encode()).hexdigest()[:12]
    return campaign
