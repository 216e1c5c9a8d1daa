"""A large recipient file, split into shards and sent by mapped tasks that share the account's cap.

The account allows 2,000 SendMessageToGlobe calls per second in total. At most PARALLEL_SHARDS shards of a
run send at once (``max_active_tis_per_dagrun``), each at ``max_qps = SHARD_QPS``: together they stay under
the cap with the same 10% margin a single task keeps by default, so the gateway never throttles them.
The limit is per run: when several runs or DAGs share the account, give them an Airflow pool instead
(``airflow pools set globesms 4 "SMS shards"`` and ``pool="globesms"``) so the cap holds across all of them.

Runs anywhere Airflow runs, with or without a logical date: with no ``recipients`` param it first writes a
sample file of ``sample_rows`` fake customers. Its input and shard files live under the run's own work
folder beside the ledgers (``[globesms] ledger_uri``, by default ``$AIRFLOW_HOME/globesms``; an ``s3://``
URI with distributed workers), never in the DAGs folder, and are removed once every shard has succeeded.

Each shard has its own ledger and results file (map index in the path), so retrying one shard never
resends another's messages.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, Param, task

from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.storage import base_location

ACCOUNT_QPS = 2000
PARALLEL_SHARDS = 4
SHARD_QPS = ACCOUNT_QPS * 0.9 / PARALLEL_SHARDS  # 450/s each: 1,800/s together


def work_folder(run_id: str) -> ObjectStoragePath:
    """Where this run keeps its input and shards: beside the ledgers, shared by every worker."""
    root = base_location()  # [globesms] ledger_uri, else $AIRFLOW_HOME/globesms
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return ObjectStoragePath(root) / "examples-data" / "globesms_fan_out" / safe_run


with DAG(
    dag_id="globesms_fan_out",
    description="Send to a large recipient file in parallel shards under the account's QPS cap",
    schedule=None,
    # A shard whose worker dies is retried (on any worker): its ledger makes the retry send only the rest.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    params={
        "recipients": Param("", type="string", description="CSV path or URI; empty: a generated sample"),
        "sample_rows": Param(8000, type="integer", minimum=1, description="rows of the generated sample"),
        "shards": Param(8, type="integer", minimum=1, maximum=64),
    },
    tags=["globesms", "example"],
):

    @task
    def split(**context: Any) -> list[str]:
        """Stream the file into N shard files (round robin); only one line is in memory at a time."""
        params, folder = context["params"], work_folder(context["run_id"])
        folder.mkdir(parents=True, exist_ok=True)
        source = ObjectStoragePath(params["recipients"]) if params["recipients"] else folder / "sample.csv"
        if not params["recipients"]:
            with source.open("w") as sample:  # type: ignore[no-untyped-call]
                sample.write("to,name,order\n")
                for n in range(int(params["sample_rows"])):
                    sample.write(f"+8529{1000000 + n:07d},Customer {n},A{100000 + n}\n")
        paths = [folder / f"shard-{n:03d}.csv" for n in range(int(params["shards"]))]
        with source.open("r") as reader:  # type: ignore[no-untyped-call]
            header = reader.readline()
            writers = [p.open("w") for p in paths]  # type: ignore[no-untyped-call]
            try:
                for w in writers:
                    w.write(header)
                for n, line in enumerate(reader):
                    writers[n % len(writers)].write(line)
            finally:
                for w in writers:
                    w.close()
        return [str(p) for p in paths]

    # --8<-- [start:shards]
    send = SendGlobeSmsOperator.partial(
        task_id="send_shard",
        message="Hi {{ recipient.name }}, your order {{ recipient.order }} has shipped.",
        max_qps=SHARD_QPS,
        max_active_tis_per_dagrun=PARALLEL_SHARDS,
        map_index_template="{{ task.recipients.rsplit('/', 1)[-1] }}",
    ).expand(recipients=split())
    # --8<-- [end:shards]

    @task
    def total(summaries: list[dict[str, Any]], **context: Any) -> dict[str, int]:
        """Add up the shards, then remove the run's input and shard files (every shard has succeeded)."""
        keys = ("accepted", "failed", "unknown", "invalid", "segments")
        result = {key: sum(s[key] for s in summaries) for key in keys}
        print(f"{len(summaries)} shards: {result}")
        folder = work_folder(context["run_id"])
        if folder.exists():
            folder.rmdir(recursive=True)
        return result

    total(send.output)
