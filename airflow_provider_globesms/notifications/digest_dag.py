"""The digest sweeper DAG: deploy it once (a DAG file that calls ``alert_digest_dag()``) and unpause it.

Its asset's watcher runs ``AlertDigestTrigger`` in the triggerer, which sends the digest of every alert
window that ends with no later alert to carry it. Each digest sent is an asset event, so it shows as a run
of this DAG, whose one task logs what was sent (the number masked). Without it, a window's digest waits for
the next alert to any recipient.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_globesms.triggers.alert_digests import AlertDigestTrigger


def alert_digest_dag(
    dag_id: str = "globesms_alert_digests",
    *,
    alerts_uri: str | None = None,
    every: timedelta | float = timedelta(seconds=15),
) -> DAG:
    """The sweeper DAG, scheduled on an asset that ``AlertDigestTrigger`` watches.

    :param dag_id: the DAG's id (also the asset's name).
    :param alerts_uri: the alerts store, as the notifiers have it; by default the configured one.
    :param every: how often the sweeper looks for windows that have ended.
    """
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    watcher = AssetWatcher(name=f"{dag_id}_sweeper", trigger=AlertDigestTrigger(alerts_uri=alerts_uri, every=seconds))
    digests = Asset(name=dag_id, uri=f"globesms://alert-digests/{dag_id}", watchers=[watcher])
    with DAG(
        dag_id=dag_id,
        description="Sends the digests of SMS alert windows (GlobeSmsNotifier's storm control)",
        schedule=[digests],
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["globesms"],
    ) as dag:

        @task
        def log_digests(**context: Any) -> int:
            """One line per digest the sweeper sent (the event's payload: masked number, kind, count)."""
            count = 0
            for events in context["triggering_asset_events"].values():
                for event in events:
                    payload = (event.extra or {}).get("payload", {})
                    print(f"Alert digest: {payload}")
                    count += 1
            return count

        log_digests()
    return dag
