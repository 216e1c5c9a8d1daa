"""A scheduled notification: every morning, tell the team the daily report is ready.

The smallest useful SendGlobeSmsOperator: fixed numbers, a templated text, a schedule. Retries are
safe: the operator's ledger remembers what was accepted, so a retried or cleared task never texts
anyone twice for the same run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator

with DAG(
    dag_id="globesms_daily_notification",
    description="Text the team when the daily sales report is ready",
    schedule="0 8 * * *",  # 08:00 UTC every day
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["globesms", "example"],
):
    SendGlobeSmsOperator(
        task_id="report_ready",
        # Numbers in international form. Keep real ones in a Variable or a file, not in code.
        to=["+85291234567", "+6591234567", "+447911123456"],
        # run_after, not ds: every run has it, also one triggered through the REST API without a logical date.
        message=(
            "Daily sales report for {{ dag_run.run_after | ds }} is ready: "
            "https://bi.example.com/daily/{{ dag_run.run_after | ds_nodash }}"
        ),
        sender="Reports",  # sender ID: letters and digits, up to 11
        sms_type="NOTIFY",
        globesms_conn_id="globesms_default",
    )
