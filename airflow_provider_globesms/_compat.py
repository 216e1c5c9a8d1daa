"""The Airflow names that moved between the versions the provider supports (3.1 to 3.3), in one place.

Each name is taken from where Airflow 3.2 and later keep it (the Task SDK), else from where 3.1 kept it: both
are public, and the newer place first, so 3.2 and later never reach a deprecated path. Everything else the
provider takes from Airflow is where all three versions have it. ``client/`` imports nothing from here (it
imports nothing from Airflow).
"""

from __future__ import annotations

from typing import Any

try:
    from airflow.sdk import conf
except ImportError:  # Airflow 3.1: the Task SDK has no conf yet
    from airflow.configuration import conf  # type: ignore[assignment]

try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
except ImportError:  # Airflow 3.1: the task exceptions are still core's
    from airflow.exceptions import (  # type: ignore[attr-defined,no-redef]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "conf",
    "dag_bag",
]


def dag_bag() -> tuple[Any, Any]:
    """``DagBag`` and ``sync_bag_to_db``, for ``testing.run_dag`` only (imported on call: they load Airflow's
    database models, which a task never needs)."""
    try:
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    except ImportError:  # Airflow 3.1: the dag processor's DagBag still lived in airflow.models
        from airflow.models.dagbag import DagBag, sync_bag_to_db  # type: ignore[no-redef]
    return DagBag, sync_bag_to_db
