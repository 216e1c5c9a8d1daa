"""A text when a nightly load is late: the notifier as a deadline alert, run by the triggerer.

``AsyncCallback`` awaits the notifier in the triggerer when the run is still going an hour after it was
queued. Airflow 3.1 keeps these names in ``airflow.sdk.definitions.deadline``; 3.2 and later export them
from ``airflow.sdk``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier

try:
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference  # type: ignore[attr-defined]
except ImportError:  # Airflow 3.1
    from airflow.sdk.definitions.deadline import (  # type: ignore[attr-defined]
        AsyncCallback,
        DeadlineAlert,
        DeadlineReference,
    )

# --8<-- [start:deadline]
late = DeadlineAlert(
    reference=DeadlineReference.DAGRUN_QUEUED_AT,
    interval=timedelta(hours=1),
    callback=AsyncCallback(GlobeSmsNotifier, kwargs={"to": ["+85291234567"], "message": "nightly_load is late"}),
)

with DAG("nightly_load", schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False, deadline=late):
    BashOperator(task_id="load", bash_command="echo loading")
# --8<-- [end:deadline]
