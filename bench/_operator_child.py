"""One task of ``bench/bulk_send.py``, in a process of its own: ``SendGlobeSmsOperator`` (or an empty task,
for Airflow's own start-up) run by ``dag.test()`` in a fresh Airflow home, as a user's DAG runs it.

    python bench/_operator_child.py send|dry_run|empty RECIPIENTS_CSV ENDPOINT_URL

Prints one line ``RESULT {json}``: the task's state, the seconds ``dag.test()`` took (Airflow's start-up
included), peak RSS before and after, and the operator's summary (its XCom)."""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time


def airflow_home(home: str, emulator: str) -> None:
    """A fresh Airflow home for this process, its ``globesms_default`` connection pointed at the emulator."""
    os.makedirs(f"{home}/dags")
    connection = {"conn_type": "globesms", "login": "AKID", "password": "SECRET", "extra": {"endpoint": emulator}}
    os.environ.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__DAGS_FOLDER=f"{home}/dags",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AIRFLOW_CONN_GLOBESMS_DEFAULT=json.dumps(connection),
    )


MESSAGE = "Hi {{ recipient.name }}, your parcel {{ recipient.parcel }} arrives today between 9 and 12."


def main(mode: str, recipients: str, endpoint: str) -> None:
    home = tempfile.mkdtemp(prefix="globesms-bench-")
    airflow_home(home, endpoint)
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.utils import db
    from airflow.utils.session import create_session

    from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator

    db.initdb()
    with DAG(f"bench_{mode}", schedule=None) as dag:
        if mode == "empty":
            EmptyOperator(task_id="task")
        else:
            SendGlobeSmsOperator(
                task_id="task", recipients=recipients, message=MESSAGE, dry_run=mode == "dry_run", progress_interval=0
            )
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)  # type: ignore[no-untyped-call]
    bag = DagBag(dag_folder=f"{home}/dags")
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    run = dag.test()
    seconds = time.monotonic() - started
    summary = None
    if mode != "empty":
        (ti,) = run.get_task_instances()
        summary = ti.xcom_pull(task_ids="task")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"state": str(run.state), "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak}
    print("RESULT " + json.dumps({**result, "summary": summary}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
