"""Delivery receipts by push: Alibaba posts every receipt to the provider's receiver; the sensor reads them there.

Polling asks QueryMessage about every message, at most 300 calls a second per account. With receipts by push,
Alibaba posts them in batches ("HTTP batch push") to the push receiver, which keeps them durably in the push
store; the sensor settles the campaign from the store without one QueryMessage call, and polls only a message
whose receipt has not come ``push_grace`` seconds after it first saw it (a push lost for good). Its summary's
``receipts_pushed`` says how many came by push.

The setup (see the docs' "Receipts by push" page):

- Serve the receiver: inside Airflow's api-server, by setting ``[globesms] push_secret`` (43 characters from
  ``secrets.token_urlsafe(32)``; better ``push_secret_cmd``) and restarting it; or standalone, away from the
  api-server, with ``globesms-receiver``. It answers at ``https://HOST/globesms/push/SECRET/receipts``.
- In the SMS console (international receipts), choose HTTP batch push with that URL. The emulator pushes
  as Alibaba does with ``--push-url``.
- The receiver, the workers and the triggerer read and write the same store, ``[globesms] push_uri``: by
  default ``~push`` under ``ledger_uri`` (one machine), ``s3://...`` when they run on several.

Here the sensor asks for receipts by push itself (``receipts_by_push=True``); ``[globesms] receipts_by_push =
True`` turns it on for every sensor. It defers to the triggerer, which reads the store as pushes arrive.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor

with DAG(
    dag_id="globesms_receipts_by_push",
    description="Order updates whose delivery receipts come by push, not by polling",
    schedule=None,
    tags=["globesms", "example"],
):
    send = SendGlobeSmsOperator(
        task_id="send_updates",
        # Numbers in international form. Keep real ones in a Variable or a file, not in code.
        to=["+6591234568", "+447911123457", "+61412345670", "+85291234599"],
        message="Your order ships today. Track it at https://shop.example.com/t/{{ dag_run.run_after | ds_nodash }}",
        sms_type="NOTIFY",
    )

    receipts = GlobeSmsDeliverySensor(
        task_id="wait_for_pushed_receipts",
        messages=send.output,  # its campaign_id names the receipts to read in the push store
        receipts_by_push=True,
        push_grace=300,  # a receipt not pushed within 5 minutes is polled (the default, 1,200 s, waits out
        # all of Alibaba's retries of a failed push: 1, 5 and 10 minutes)
        deferrable=True,
        poke_interval=5,  # how often the trigger reads the store
        timeout=900,
    )

    @task
    def report(sent: dict[str, Any], receipts: dict[str, Any]) -> str:
        line = (
            f"campaign {sent['campaign_id']}: {receipts['delivered']} of {receipts['tracked']} delivered, "
            f"{receipts['failed']} failed; {receipts['receipts_pushed']} receipts came by push"
        )
        print(line)
        return line

    report(send.output, receipts.output)
