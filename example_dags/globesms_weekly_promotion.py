"""A weekly promotion to customers in several countries, kept to what customer-facing texts must respect.

- Quiet hours in each recipient's own time (21:00-08:00): who is asleep now gets the text when their morning
  comes. The task sends what may go, then defers to the triggerer (no worker waits) until the next window
  opens, and resumes there, each customer exactly once across the deferrals.
- An opt-out list: whoever replied STOP is never texted again ("suppressed" in the summary).
- A budget: at most 40 segments for this list; a wrong join upstream fails the task before the first send.
  The log shows segments and estimated cost by country (``prices``); ``dry_run=True`` shows them, and who
  would be held until when, without sending.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator

DATA = Path(__file__).parent / "data"  # in production: object store URIs, e.g. s3://crm-exports/...

with DAG(
    dag_id="globesms_weekly_promotion",
    description="A weekly promotion with quiet hours, an opt-out list and a budget cap",
    schedule=None,  # in production e.g. "0 10 * * MON"; quiet hours hold whoever it is night for
    params={
        "recipients": str(DATA / "promo_customers.csv"),
        "quiet_start": "21:00",
        "quiet_end": "08:00",
    },
    tags=["globesms", "example"],
):
    # --8<-- [start:send]
    SendGlobeSmsOperator(
        task_id="send_promotion",
        recipients="{{ params.recipients }}",
        message="Hi {{ recipient.first_name }}, 20% off everything this week. Reply STOP to opt out.",
        sms_type="MKT",
        on_invalid="skip",
        quiet_hours=("{{ params.quiet_start }}", "{{ params.quiet_end }}"),
        tz_field="tz",  # a row may name its zone; otherwise the number's zones are used
        suppression=str(DATA / "opt_outs.txt"),
        max_segments=40,
        prices=str(DATA / "sms_prices.csv"),
        max_qps=500,
    )
    # --8<-- [end:send]
