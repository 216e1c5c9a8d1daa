"""An outage: every shard of a load fails within a minute. Without storm control the on-call phone would get
one text per failed task; with it (GlobeSmsNotifier's default), each person gets the first alert at once and
one digest when the window ends ("+49 more since 03:02 UTC: globesms_alert_storm.load x49 ...").

The digest is sent by the sweeper DAG (globesms_alert_digests.py, deploy it once), or by the next alert.
Run it with {"failures": 50}; the window is [globesms] alert_window (10 minutes unless configured).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_globesms.notifications.globesms import GlobeSmsNotifier

ON_CALL = ["+85291234567", "+85291234568"]

# --8<-- [start:storm]
with DAG(
    dag_id="globesms_alert_storm",
    description="Fifty failing tasks, two on-call phones: one alert and one digest each",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,  # "{{ params.on_call }}" renders to a list
    default_args={
        "retries": 0,
        # Storm control is on by default: one text per person per window, the rest in one digest.
        "on_failure_callback": GlobeSmsNotifier(to="{{ params.on_call }}"),
    },
    params={
        "failures": Param(50, type="integer", minimum=1, maximum=1000),
        "on_call": Param(ON_CALL, type="array"),
    },
    tags=["globesms", "example"],
):

    @task
    def shards(**context: Any) -> list[int]:
        return list(range(context["params"]["failures"]))

    @task
    def load(shard: int) -> None:
        raise ConnectionError(f"warehouse refused the connection (shard {shard})")

    load.expand(shard=shards())
# --8<-- [end:storm]
