"""A large recipient file, split into shards and sent by mapped tasks that share the account's cap.

The account allows 2,000 SendMessageToGlobe calls per second in total. Each mapped task gets
max_qps = ACCOUNT_QPS / PARALLEL_SHARDS, and the Airflow pool "globesms" (PARALLEL_SHARDS slots) makes
sure no more than that many shards run at once, on any workers: together they never exceed the cap.
Create the pool once:  airflow pools set globesms 4 "Alibaba Cloud SMS: shards sending at once"

Each shard has its own ledger and results file (map index in the path), so retrying one shard never
resends another's messages. With distributed workers, set [globesms] ledger_uri to shared storage
(s3://...) and put the shards there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator

ACCOUNT_QPS = 2000
PARALLEL_SHARDS = 4  # = the pool's slots
LARGE_FILE = Path(__file__).parent / "data" / "large_recipients.csv"  # make demo writes it

with DAG(
    dag_id="globesms_fan_out",
    description="Send to a large recipient file in parallel shards under the account's QPS cap",
    schedule=None,
    params={"recipients": str(LARGE_FILE), "shards": 8},
    tags=["globesms", "example"],
):

    @task
    def split(**context: Any) -> list[str]:
        """Stream the file into N shard files (round robin); only one line is in memory at a time."""
        params, run_id = context["params"], context["run_id"]
        source = ObjectStoragePath(params["recipients"])  # a local path or any URI (s3://...)
        folder = source.parent / "shards" / run_id.replace(":", "_").replace("+", "_")
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"shard-{n:03d}.csv" for n in range(int(params["shards"]))]
        with source.open("r") as reader:  # type: ignore[no-untyped-call]
            header = reader.readline()
            writers = [p.open("w") for p in paths]
            try:
                for w in writers:
                    w.write(header)
                for n, line in enumerate(reader):
                    writers[n % len(writers)].write(line)
            finally:
                for w in writers:
                    w.close()
        return [str(p) for p in paths]

    send = SendGlobeSmsOperator.partial(
        task_id="send_shard",
        message="Hi {{ recipient.name }}, your order {{ recipient.order }} has shipped.",
        max_qps=ACCOUNT_QPS // PARALLEL_SHARDS,
        pool="globesms",
        map_index_template="{{ task.recipients.rsplit('/', 1)[-1] }}",
    ).expand(recipients=split())

    @task
    def total(summaries: list[dict[str, Any]]) -> dict[str, int]:
        keys = ("accepted", "failed", "unknown", "invalid", "segments")
        result = {key: sum(s[key] for s in summaries) for key in keys}
        print(f"{len(summaries)} shards: {result}")
        return result

    total(send.output)
