"""The hook and the client outside a task: in a script, a notebook or an operator of your own.

Run against the emulator: ``globesms-emulator --port 8787`` in one shell, then, in another,
``AIRFLOW_CONN_GLOBESMS_DEFAULT='{"conn_type": "globesms", "login": "AKID", "password": "SECRET",
"extra": {"endpoint": "http://127.0.0.1:8787"}}' python hook_and_client.py``.
"""

from __future__ import annotations

import asyncio
import os

from airflow_provider_globesms.client import AsyncGlobeSmsClient, Credentials, GlobeSmsClient
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook

EMULATOR = os.environ.get("GLOBESMS_EMULATOR_URL", "http://127.0.0.1:8787")

# --8<-- [start:hook]
hook = GlobeSmsHook()  # the connection globesms_default; nothing is read until first use
result = hook.send_message(to="+85291234567", message="hello", sender="Shop", sms_type="NOTIFY")
print(result.message_id, result.segments, result.request_id)

batch = hook.batch_send(["+85291234567", "+6591234567"], ["Hi Ann", "Hi Bo"])  # up to 1,000 numbers, 1 call/s
print(batch.success_count, batch.message_id_list)

receipt = hook.query_message(result.message_id)  # free; 300 calls/s per account
print(receipt.delivered, receipt.status, receipt.error_code)
# --8<-- [end:hook]

# --8<-- [start:client]
# No Airflow at all: the client takes the key and the endpoint (or region_id) itself, and is thread-safe.
with GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=EMULATOR, max_qps=100) as client:
    sent = client.send_message(to="+6591234567", message="Your code is 123456", sms_type="OTP")
    print(sent.message_id)
# --8<-- [end:client]


# --8<-- [start:async]
async def send_many(numbers: list[str]) -> list[str | None]:
    """The asyncio client: many sends in flight on one event loop, paced under the same cap."""
    with GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=EMULATOR) as client:
        aio = AsyncGlobeSmsClient(client)
        try:
            requests = [client.build_send_request(to=n, message="Your parcel is on its way") for n in numbers]
            results = await asyncio.gather(*(aio.send(r) for r in requests))
        finally:
            await aio.aclose()
        return [r.message_id for r in results]


print(asyncio.run(send_many(["+85291234567", "+85291234568", "+85291234569"])))
# --8<-- [end:async]
