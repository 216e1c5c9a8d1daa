"""A pipeline that texts the on-call engineer when it breaks.

Task level (default_args): an SMS on every retry and on the final failure. DAG level: one SMS when
the run fails. A failed alert is logged and never replaces the task's own error. (The README shows
the notifier as a deadline alert too; it is left out here because Airflow 3.3's dag.test() cannot
finish a successful run of a DAG that has one.)

Run it with {"simulate": "transient"} to see a retry alert, or {"simulate": "outage"} to see the
failure alerts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier, send_globe_sms_notification

ON_CALL = ["+85291234567"]

with DAG(
    dag_id="globesms_failure_alerts",
    description="Nightly load with SMS alerts on retries, failures and a missed deadline",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=1),
        "on_retry_callback": GlobeSmsNotifier(
            to=ON_CALL, message="{{ dag.dag_id }}.{{ ti.task_id }} failed, retrying (try {{ ti.try_number }})"
        ),
        # No message: the default names the DAG, task, try and run, with the log URL, in one segment.
        "on_failure_callback": send_globe_sms_notification(to=ON_CALL),
    },
    on_failure_callback=GlobeSmsNotifier(
        to=ON_CALL, message="DAG {{ dag.dag_id }} failed, run after {{ dag_run.run_after | ds }}"
    ),
    params={"simulate": Param("none", enum=["none", "transient", "outage"])},
    tags=["globesms", "example"],
):

    @task
    def extract() -> list[dict[str, Any]]:
        return [{"order": n, "amount": 10 * n} for n in range(1, 6)]

    @task
    def load(rows: list[dict[str, Any]], **context: Any) -> int:
        simulate = context["params"]["simulate"]
        if simulate == "outage" or (simulate == "transient" and context["ti"].try_number == 1):
            raise ConnectionError("warehouse refused the connection")
        return len(rows)

    load(extract())
