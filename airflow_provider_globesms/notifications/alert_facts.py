"""What an alert is about, read from a task, DAG or deadline callback's context: its default text, and the
``Alert`` storm control keys it by."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_globesms._compat import conf
from airflow_provider_globesms.client.alerts import Alert
from airflow_provider_globesms.client.rules.segments import GSM7_SINGLE, count_segments
from airflow_provider_globesms.client.rules.validation import shorten

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["alert_of", "default_message"]


def _get(obj: Any, name: str) -> Any:
    """An attribute of an Airflow object, or a key of its serialized (dict) form."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _facts(context: Context | dict[str, Any]) -> dict[str, Any]:
    """What an alert is about, from a task, DAG or deadline callback's context."""
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    dag_id = _get(ti, "dag_id") or _get(context.get("dag"), "dag_id") or _get(dag_run, "dag_id") or "?"
    task_id = _get(ti, "task_id")
    state = _get(ti, "state") if ti is not None else _get(dag_run, "state")
    deadline = context.get("deadline") or context.get("deadline_alert")
    if deadline is not None:
        state = "missed its deadline"
    return {
        "dag_id": str(dag_id),
        "what": f"{dag_id}.{task_id}" if task_id else str(dag_id),
        "task_id": task_id,
        "state": str(getattr(state, "value", state) or "needs attention"),
        "try_number": _get(ti, "try_number"),
        "map_index": _get(ti, "map_index"),
        "run_id": str(_get(ti, "run_id") or _get(dag_run, "run_id") or context.get("run_id") or ""),
        "deadline": str(_get(deadline, "id") or _get(deadline, "name") or "") if deadline is not None else "",
        "url": str(_get(ti, "log_url") or "").removeprefix("https://").removeprefix("http://"),
    }


def _head(facts: dict[str, Any]) -> str:
    try_number = facts["try_number"]
    return " ".join(f"{facts['what']} {facts['state']}{f' (try {try_number})' if try_number else ''}".split())


def default_message(context: Context | dict[str, Any]) -> str:
    """``Airflow: etl.load failed (try 2) run scheduled__2026-11-21 <log URL>``, in one segment if it can."""
    facts = _facts(context)
    head, run_id, url = f"Airflow: {_head(facts)}", facts["run_id"], facts["url"]
    for candidate in (
        f"{head} run {run_id} {url}",
        f"{head} {url}",
        f"{head} {url.split('?', 1)[0]}",
        f"{head} run {run_id}",
        head,
    ):
        text = " ".join(candidate.split())
        if count_segments(text).units <= GSM7_SINGLE and count_segments(text).encoding == "GSM-7":
            return text
    return shorten(" ".join(head.split()), GSM7_SINGLE, ellipsis="...")  # "…" would make it UCS-2


def alert_of(context: Context | dict[str, Any], text: str, *, custom: bool) -> Alert:
    """The alert a callback reports, for storm control: the same DAG, task, run, try, map index and kind
    make the same key (a callback that runs twice is one alert)."""
    facts = _facts(context)
    # The kind, not the state as read: a failure callback that the dag-processor runs for a task whose
    # heartbeat timed out may read a stale "running" while the worker's own callback read "failed".
    kind = facts["state"] if facts["state"] in ("success", "up_for_retry", "missed its deadline") else "failed"
    key = "|".join(
        str(facts[k]) if k != "state" else kind
        for k in ("dag_id", "task_id", "run_id", "try_number", "map_index", "state", "deadline")
    )
    dag_level = "reason" in context  # Airflow gives a DAG callback the reason, and the last task instance
    key = ("dag|" if dag_level else "task|") + key
    url = facts["url"]
    if url and "/dags/" in url:
        link: str | None = f"{url.split('/dags/', 1)[0]}/dags/{facts['dag_id']}"
    else:
        base = str(conf.get("api", "base_url", fallback="") or "").removeprefix("https://").removeprefix("http://")
        link = f"{base.rstrip('/')}/dags/{facts['dag_id']}" if base else None
    label = facts["dag_id"] if dag_level else facts["what"]
    return Alert(key=key, label=label, head=_head(facts), text=text, link=link, custom=custom)
