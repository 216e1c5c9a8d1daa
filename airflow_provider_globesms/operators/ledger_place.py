"""Where a task instance's ledger is, whose a ledger folder is, and what shows that an earlier try sent.

Each task instance has its own folder (``storage.task_instance_location``), and writes an ``owner.json``
naming itself into it before it sends: a folder is never taken for another task instance's. A try finds an
earlier try's ledger where Airflow's task state store witness says it is (Airflow >= 3.3; nowhere else is
looked at once a witness exists), or, without one, where versions before 0.3 kept it (one folder per run id
with ``:`` and ``+`` written ``_``), if nothing there says it belongs to another task instance.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from airflow_provider_globesms._compat import AirflowFailException
from airflow_provider_globesms.client.files.private import private_file
from airflow_provider_globesms.client.ledger.sqlite_ledger import Status
from airflow_provider_globesms.storage import (
    is_local,
    local_path,
    storage_path,
    task_instance_location,
    task_instance_scope,
)

WITNESS_KEY = "globesms_ledger"
OWNER = "owner.json"
_SCOPE_NAMES = ("dag_id", "run_id", "task_id", "map_index")
# Statuses of a message a request was (or may have been) made for: the ones the ledger keeps.
_SENT_RESULTS = {s.value for s in (Status.PENDING, Status.ACCEPTED, Status.ARRIVED, Status.UNKNOWN, Status.FAILED)}
_SENT_RESULTS.add("received")  # "arrived", before 0.3


def state_store(context: Any) -> Any:
    """Airflow's task state store of this task instance (Airflow >= 3.3), or ``None``."""
    return context.get("task_state_store") if hasattr(context, "get") else None


def ledger_location(context: Any, explicit_base: str | None, campaign_id: str) -> str:
    """Where this task instance's ledger lives: its own location, unless only an earlier try's exists (see
    the module). A legacy location that would leave its DAG's folder (a run id ``..``), or whose owner file
    or results name another task instance or campaign, is never used."""
    ti = context["ti"]
    current = task_instance_location(ti, explicit_base)
    if holds_a_ledger(current):
        return current
    store = state_store(context)
    witness = store.get(WITNESS_KEY) if store is not None else None
    if isinstance(witness, dict):
        earlier = witness.get("ledger")
        mine = isinstance(earlier, str) and holds_a_ledger(earlier) and owner_of(earlier) in (None, _scope(ti))
        return str(earlier) if mine else current
    legacy = task_instance_location(ti, explicit_base, legacy=True)
    escapes = any(part in (".", "..") for part in legacy.split("/")[-4:])
    if legacy == current or escapes or not holds_a_ledger(legacy) or owner_of(legacy) not in (None, _scope(ti)):
        return current
    return legacy if _results_of_campaign(f"{legacy}/results.jsonl", campaign_id) else current


def holds_a_ledger(location: str) -> bool:
    """Whether a ledger (local file, or object-storage segments) is at ``location``."""
    with contextlib.suppress(OSError, ValueError):
        if is_local(location):
            return (local_path(location) / "ledger.sqlite3").exists()
        return bool((storage_path(location) / "ledger").exists())
    return False


def _scope(ti: Any) -> dict[str, str]:
    return dict(zip(_SCOPE_NAMES, task_instance_scope(ti), strict=True))


def owner_of(location: str) -> dict[str, str] | None:
    """The task instance an ``owner.json`` at ``location`` names; ``None`` without one (a folder of 0.2);
    an unreadable one names nobody (``{}``), so it is nobody's to take."""
    path = storage_path(location) / OWNER
    try:
        if not path.exists():
            return None
        with path.open("r") as handle:  # type: ignore[no-untyped-call]
            found = json.load(handle)
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def claim(location: str, ti: Any) -> None:
    """Write this task instance's ``owner.json`` into its ledger folder, or fail, having sent nothing, when
    the folder is another task instance's."""
    owner, mine = owner_of(location), _scope(ti)
    if owner == mine:
        return
    if owner is not None:
        raise AirflowFailException(
            f"The ledger folder {location} belongs to another task instance ({owner or 'unreadable owner.json'}); "
            "nothing was sent. Point ledger_uri elsewhere, or move that folder away if it is stale."
        )
    text = json.dumps(mine)
    if is_local(location):
        private_file(local_path(location) / OWNER).write_text(text)
    else:
        with (storage_path(location) / OWNER).open("w") as handle:  # type: ignore[no-untyped-call]
            handle.write(text)


def _results_of_campaign(location: str, campaign_id: str) -> bool:
    """Whether the first lines of a 0.2 results file (if there is one) are this campaign's (its TaskId)."""
    with contextlib.suppress(OSError, ValueError):
        results = storage_path(location)
        if not results.exists():
            return True  # a try killed before its results were stored: nothing says otherwise
        with results.open("rb") as handle:  # type: ignore[no-untyped-call]
            for _, raw in zip(range(100), handle, strict=False):
                line = _record(raw)
                if line is not None and line.get("campaign_id") not in (None, campaign_id):
                    return False
    return True


def results_show_a_send(location: str) -> bool:
    """Whether a results file records a request made: not a dry run's, nor a round whose every recipient was
    held by quiet hours, suppressed or invalid (those leave the ledger empty, and must not stop the resume).
    A line that cannot be read is skipped, never the lines after it."""
    with contextlib.suppress(OSError, ValueError):
        results = storage_path(location)
        if results.exists():
            with results.open("rb") as handle:  # type: ignore[no-untyped-call]
                for raw in handle:
                    line = _record(raw)
                    if line is not None and line.get("status") in _SENT_RESULTS:
                        return True
    return False


def _record(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
