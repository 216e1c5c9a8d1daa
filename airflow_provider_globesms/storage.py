"""Where the provider keeps a task instance's files (ledger, results, receipts), local or remote.

A location is a local path or any ``ObjectStoragePath`` URI. The base comes from the task's argument,
else ``[globesms] ledger_uri``, else ``$AIRFLOW_HOME/globesms``; under it each task instance has its
own folder: ``<dag>/<run>/<task>/<map index or "task">``, each id as ``location_segment`` writes it (one
folder per task instance, whatever its ids, never outside its DAG's folder).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_globesms._compat import conf
from airflow_provider_globesms.client.files.private import private_file, private_temp_root
from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.rules.validation import MAX_TASK_ID_LENGTH

CONFIG_SECTION = "globesms"


# What the configuration holds for [core] fernet_key when none is configured anywhere: the template's
# placeholder, unexpanded (no airflow.cfg was written, no variable set). Not configured, as an empty key is.
UNSET_KEY_PLACEHOLDER = "{FERNET_KEY}"


def configured_fernet_keys() -> list[str]:
    """``[core] fernet_key`` as its comma-separated keys (the first seals, each opens); [] when none is
    configured. Reading it may raise (a failing ``fernet_key_cmd``): each caller decides what that means."""
    configured = str(conf.get("core", "fernet_key", fallback="") or "")
    return [] if configured in ("", UNSET_KEY_PLACEHOLDER) else configured.split(",")


def safe_segment(part: str) -> str:
    """An id with every character outside ``A-Za-z0-9._=-`` made ``_`` (for ``TaskId``; many ids to one)."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", part)


_PLAIN_ID = re.compile(r"[A-Za-z0-9._=-]{1,200}")


def location_segment(part: str) -> str:
    """A folder name for an Airflow id, one per id: a plain id as it is (letters, digits, ``._=-``; never
    ``.`` or ``..``); any other (a run id with ``:`` and ``+``) readable, then ``~`` and a digest of the id
    (``safe_segment`` alone gave ``a:b`` and ``a_b`` one folder, and kept ``..``)."""
    if _PLAIN_ID.fullmatch(part) and part not in (".", ".."):
        return part
    return f"{safe_segment(part)[:100]}~{hashlib.sha256(part.encode()).hexdigest()[:20]}"


_LOCAL_SCHEMES = ("file://", "local://")  # Airflow's object storage names the local disk both ways


def is_local(location: str) -> bool:
    """Whether ``location`` is a local path (no scheme, or ``file://`` or ``local://``)."""
    return "://" not in location or location.startswith(_LOCAL_SCHEMES)


def local_path(location: str) -> Path:
    """The local path of a ``location`` (its local scheme removed, ``~`` expanded)."""
    for scheme in _LOCAL_SCHEMES:
        location = location.removeprefix(scheme)
    return Path(location).expanduser()


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


def task_instance_location(ti: Any, explicit_base: str | None = None, *, legacy: bool = False) -> str:
    """The folder of a task instance's files under the base location; ``legacy``: where versions before 0.3
    put it (``safe_segment``: not one per task instance, and ``..`` left as it was)."""
    dag_id, run_id, task_id, map_index = task_instance_scope(ti)
    segment = safe_segment if legacy else location_segment
    folder = "/".join([segment(dag_id), segment(run_id), segment(task_id), map_index if map_index != "-1" else "task"])
    return f"{base_location(explicit_base).rstrip('/')}/{folder}"


def local_work_dir(location: str) -> Path:
    """A local folder for a location's working files: the location itself when local, else a stable
    folder in this user's owner-only temp folder (reused by later attempts on the same worker)."""
    if is_local(location):
        return local_path(location)
    return private_temp_root() / location_segment(location)


def store_file(local: Path, location: str) -> str:
    """Copy a finished local file to its location atomically where the store allows; return the URI."""
    if is_local(location):
        target = local_path(location)
        partial = private_file(target.with_name(target.name + ".partial"))  # full numbers: owner-only
        with local.open("rb") as source, partial.open("r+b") as sink:
            sink.truncate()
            shutil.copyfileobj(source, sink, 1024 * 1024)
        os.replace(partial, target)  # readers never see half a file
        return str(target)
    destination = storage_path(location)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with local.open("rb") as source, destination.open("wb") as sink:  # type: ignore[no-untyped-call]
        shutil.copyfileobj(source, sink, 1024 * 1024)
    return str(destination)


def dry_run_location(results: str) -> str:
    """Where a dry run's results go: beside the results file, never over it (a dry run of a task instance
    that sent would erase the record that it did)."""
    stem = results.removesuffix(".jsonl")
    return f"{stem}.dry_run.jsonl"


def default_campaign_id(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Deterministic TaskId for receipts: readable ids plus a digest of the run id (1-255 chars)."""
    run_digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    parts = [dag_id, task_id, *([str(map_index)] if map_index >= 0 else []), run_digest]
    campaign = ".".join(safe_segment(p) for p in parts)
    if len(campaign) > MAX_TASK_ID_LENGTH:
        campaign = campaign[: MAX_TASK_ID_LENGTH - 13] + "." + hashlib.sha256(campaign.encode()).hexdigest()[:12]
    return campaign


PUSH_FOLDER = "~push"  # never a DAG's folder: "~" is not allowed in a DAG id
DEFAULT_PUSH_GRACE = 1200.0  # Alibaba retries a failed push after 1, 5 and 10 minutes: 16 minutes, and a margin


def push_location(explicit: str | None = None) -> str:
    """Where pushed receipts are kept: ``explicit``, else ``[globesms] push_uri``, else ``~push`` under the
    ledgers' base location."""
    configured = conf.get(CONFIG_SECTION, "push_uri", fallback=None)
    return explicit or configured or f"{base_location().rstrip('/')}/{PUSH_FOLDER}"


def push_store(explicit: str | None = None) -> PushStore:
    """The pushed receipts' store at ``push_location(explicit)``: local files or object storage."""
    location = push_location(explicit)
    return PushStore(local_path(location) if is_local(location) else storage_path(location))


def receipts_by_push(explicit: bool | None = None) -> bool:
    """Whether receipts come by push: ``explicit``, else ``[globesms] receipts_by_push`` (default off)."""
    if explicit is not None:
        return explicit
    return conf.getboolean(CONFIG_SECTION, "receipts_by_push", fallback=False)


def push_grace(explicit: float | None = None) -> float:
    """Seconds to wait for a pushed receipt: ``explicit``, else ``[globesms] push_grace`` (default 1200)."""
    if explicit is not None:
        return float(explicit)
    return conf.getfloat(CONFIG_SECTION, "push_grace", fallback=DEFAULT_PUSH_GRACE)


def configured_push_secret() -> str | None:
    """``[globesms] push_secret``, else the output of ``push_secret_cmd``, else ``push_secret_secret`` from the
    secrets backend (stripped: a command's output ends with a newline); ``None`` when none is set.

    Airflow resolves the ``_cmd`` and ``_secret`` forms itself only for options it knew to be sensitive when it
    first looked, which before 3.2 never includes a provider's: so they are read here too."""
    from airflow.configuration import get_custom_secret_backend, run_command

    value = conf.get(CONFIG_SECTION, "push_secret", fallback=None)
    if not value and (command := conf.get(CONFIG_SECTION, "push_secret_cmd", fallback=None)):
        value = run_command(command)
    if not value and (path := conf.get(CONFIG_SECTION, "push_secret_secret", fallback=None)):
        backend = get_custom_secret_backend()
        value = backend.get_config(path) if backend is not None else None
    return value.strip() if value else None
