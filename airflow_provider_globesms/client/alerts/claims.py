"""Claims that make each alert count once, per recipient, however often its callback runs.

An alert is claimed (``seen/<digest>``, created exclusively) before it is placed (folded into a window, or
sent), and marked ``.done`` once placed. Airflow runs a callback again when a task's heartbeat times out,
often because the first run was killed mid-callback: a claim that was never marked done is taken over
(once, by ``.retake``) after ``TAKEOVER`` seconds of store time, unless the alert is found already placed.
A first run that is not dead but slower than that may still place it too: counted twice, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from airflow_provider_globesms.client.alerts.store import AlertStore

log = logging.getLogger(__name__)

TAKEOVER = 10.0  # store seconds after which a claim not marked done is taken to be a dead run's


def day(epoch: float) -> str:
    """``YYYYMMDD`` of a store time, in UTC."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y%m%d")


def claim(store: AlertStore, folder: str, digest: str, placed: Callable[[], bool]) -> float | None:
    """Claim an alert: the store time to decide it at, or None when it is claimed (or placed) already.

    ``placed`` looks for the alert in the recipient's recent windows (asked only before a takeover).
    """
    now = store.now()
    name = f"{folder}/seen/{digest}"
    stamped = store.create(f"{name}.json", {"at": now})
    if stamped is not None:
        try:  # how claims are forgotten after two days; the claim holds without it
            store.create(f"{folder}/seen-{day(stamped)}/{digest}.json", {})
        except OSError as exc:
            log.warning("Alert claim not indexed for pruning: %s", exc)
        return stamped
    if store.read(f"{name}.done") is not None:
        return None
    first = store.read(f"{name}.json")
    if first is not None and now < float(first.get("at", 0)) + TAKEOVER:
        return None  # being placed by another run of the callback
    if store.create(f"{name}.retake", {"at": now}) is None or placed():
        return None
    log.warning("Taking over an alert whose first callback run claimed it %s s ago and never placed it", TAKEOVER)
    return now


def mark_placed(store: AlertStore, folder: str, digest: str) -> None:
    """The alert is in a window or a text: a later run of its callback is a duplicate at once."""
    try:
        store.create(f"{folder}/seen/{digest}.done", {})
    except OSError as exc:  # a later run then waits out the takeover, and finds the alert placed
        log.warning("Alert claim not marked done: %s", exc)


def forget(store: AlertStore, folder: str, day_folder: str) -> None:
    """Delete the claims indexed under one old day, then the index."""
    for entry in store.children(f"{folder}/{day_folder}"):
        digest = entry.removesuffix(".json")
        for suffix in (".json", ".done", ".retake"):
            store.delete(f"{folder}/seen/{digest}{suffix}")
    store.delete(f"{folder}/{day_folder}")
