"""One DAG of ``bench/receipts_push.py`` in ``dag.test()``, in a process of its own with a fresh Airflow home,
as a user's DAG runs it:

- ``push``: ``GlobeSmsDeliverySensor(receipts_by_push=True)`` on a campaign's results file and pushed receipts;
- ``poll``: ``SendGlobeSmsOperator`` sending to the emulator from a recipients CSV (as ``_operator_child.py``
  does), then ``GlobeSmsDeliverySensor(receipts_by_push=False)`` on its summary, asking QueryMessage.

    python bench/_push_child.py push|poll AIRFLOW_HOME PARAMS_JSON

Prints one line ``RESULT {json}``: the run's state, the seconds ``dag.test()`` took, the sensor's own seconds
(its execute()), its task's duration, its pokes, the process's peak RSS, the sensor's summary (its XCom), and in
``poll`` mode the send task's seconds and summary."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _operator_child import MESSAGE, airflow_home

if TYPE_CHECKING:
    from airflow.sdk import DAG


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM): ``ru_maxrss`` would carry over the bench's own peak,
    which Linux keeps across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_the_sensor() -> tuple[list[int], dict[str, Any]]:
    """Wrap the sensor's poke and execute: returns the poke count and the timings they fill in.

    The sensor's own wall time is its execute() from the first poke to the summary returned: the task
    instance's duration adds Airflow's per-task start-up in dag.test(), about 5 s here."""
    from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor

    pokes, timing = [0], dict[str, Any]()
    original_poke, original_execute = GlobeSmsDeliverySensor.poke, GlobeSmsDeliverySensor.execute

    def counted_poke(self: GlobeSmsDeliverySensor, context: Any) -> bool:
        pokes[0] += 1
        started = time.perf_counter()
        try:
            return original_poke(self, context)
        finally:
            timing["poke_s"] = [*timing.get("poke_s", []), round(time.perf_counter() - started, 3)]
            timing["last_poke_ended_at"] = time.time()

    def timed_execute(self: GlobeSmsDeliverySensor, context: Any) -> Any:
        timing["started_at"], started = time.time(), time.perf_counter()
        try:
            return original_execute(self, context)
        finally:
            timing["sensor_s"], timing["ended_at"] = time.perf_counter() - started, time.time()

    GlobeSmsDeliverySensor.poke = counted_poke  # type: ignore[method-assign]
    GlobeSmsDeliverySensor.execute = timed_execute  # type: ignore[method-assign]
    return pokes, timing


def bench_dag(mode: str, params: dict[str, Any]) -> DAG:
    """The DAG of ``mode``: the push sensor alone, or the send then the polling sensor on its summary."""
    from airflow.sdk import DAG

    from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
    from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor

    with DAG(f"bench_receipts_{mode}", schedule=None) as dag:
        if mode == "push":
            GlobeSmsDeliverySensor(
                task_id="sensor",
                messages=params["results"],
                receipts_by_push=True,
                campaign_id=params["campaign_id"],
                push_uri=params["store"],
                poke_interval=params["poke_interval"],
                timeout=3600,
            )
        else:
            send = SendGlobeSmsOperator(
                task_id="send",
                recipients=params["recipients"],
                message=MESSAGE,
                campaign_id=params["campaign_id"],
                progress_interval=0,
            )
            GlobeSmsDeliverySensor(
                task_id="sensor",
                messages=send.output,
                receipts_by_push=False,
                poke_interval=params["poke_interval"],
                timeout=3600,
            )
    return dag


def register(dag: DAG, home: str) -> None:
    """The Airflow database made, and the DAG in it, as ``dag.test()`` needs."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.utils import db
    from airflow.utils.session import create_session

    db.initdb()
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)  # type: ignore[no-untyped-call]
    bag = DagBag(dag_folder=f"{home}/dags")
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def seconds_of(ti: Any) -> float | None:
    """A task instance's duration, None if it never ended (an upstream task failed)."""
    return None if ti.end_date is None else (ti.end_date - ti.start_date).total_seconds()


def main(mode: str, home: str, raw: str) -> None:
    """One DAG in ``dag.test()`` with a fresh Airflow home; prints ``RESULT {json}``."""
    params = json.loads(raw)
    airflow_home(home, params["emulator"])
    pokes, timing = time_the_sensor()
    dag = bench_dag(mode, params)
    register(dag, home)
    started = time.monotonic()
    run = dag.test()
    seconds = time.monotonic() - started
    tasks = {ti.task_id: ti for ti in run.get_task_instances()}
    sensor_ti = tasks["sensor"]
    result = {
        "state": str(run.state),
        "seconds": seconds,
        "task_s": seconds_of(sensor_ti),
        "task_ended_at": sensor_ti.end_date and sensor_ti.end_date.timestamp(),
        **timing,
        "pokes": pokes[0],
        "peak_rss_mb": peak_rss_mb(),
        "summary": sensor_ti.xcom_pull(task_ids="sensor"),
    }
    if (send_ti := tasks.get("send")) is not None:
        result["send_task_s"] = seconds_of(send_ti)
        result["send_summary"] = send_ti.xcom_pull(task_ids="send")
    print("RESULT " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
