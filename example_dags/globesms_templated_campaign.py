"""A templated campaign from a CSV file, then the delivery receipts, then a summary.

Every row becomes its own text ({{ recipient.<column> }}). The operator validates every row and
renders every text before the first send; with on_invalid="skip" it sends the valid rows and lists
the others (masked number, field, reason) instead of failing. The sensor then waits for receipts
(here deferred to the triggerer, so no worker slot idles) and fails the run if fewer than 80% of
the messages reached their phones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor

# In production this is an object store URI, e.g. s3://crm-exports/{{ dag_run.run_after | ds }}/renewals.csv.
CUSTOMERS = Path(__file__).parent / "data" / "customers.csv"

with DAG(
    dag_id="globesms_templated_campaign",
    description="Renewal reminders, personalised per customer, with delivery receipts",
    schedule=None,
    params={"recipients": str(CUSTOMERS)},
    tags=["globesms", "example"],
):
    # --8<-- [start:send]
    send = SendGlobeSmsOperator(
        task_id="send_reminders",
        recipients="{{ params.recipients }}",
        message=(
            "Hi {{ recipient.first_name }}, your {{ recipient.plan }} plan renews on "
            "{{ (dag_run.run_after + macros.timedelta(days=7)) | ds }}. Reply STOP to opt out."
        ),
        sms_type="MKT",
        on_invalid="skip",  # bad rows are reported, the rest is sent
        max_qps=500,  # leave the rest of the account's 2,000/s to other DAGs
    )
    # --8<-- [end:send]

    # --8<-- [start:receipts]
    receipts = GlobeSmsDeliverySensor(
        task_id="wait_for_receipts",
        messages=send.output,
        min_delivery_rate=0.8,
        deferrable=True,
        poke_interval=5,  # also how long the trigger waits before its first poll (the worker just polled)
        timeout=600,
    )
    # --8<-- [end:receipts]

    @task
    def summarize(sent: dict[str, Any], delivered: dict[str, Any]) -> str:
        line = (
            f"campaign {sent['campaign_id']}: {sent['accepted']} accepted, {sent['invalid']} invalid rows, "
            f"{delivered['delivered']} delivered, {delivered['failed']} failed, {sent['segments']} segments billed"
        )
        print(line)
        return line

    summarize(send.output, receipts.output)
