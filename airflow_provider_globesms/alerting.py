"""Storm control's Airflow side, shared by the notifier and the digest sweeper: where the claims live, how
the number is sealed in them, and how a text is sent. Nothing here raises into a callback: the callers log.

The store is the notifier's ``alerts_uri``, else ``[globesms] alerts_uri``, else ``alerts`` under
``[globesms] ledger_uri`` (local by default: one machine; object storage when the workers are many).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_globesms._compat import conf
from airflow_provider_globesms.client import SendMessageResult, mask_number
from airflow_provider_globesms.client.aio import AsyncGlobeSmsClient
from airflow_provider_globesms.client.alerts import LocalAlertStore, ObjectAlertStore, StormControl, Text
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.storage import (
    CONFIG_SECTION,
    base_location,
    configured_fernet_keys,
    is_local,
    local_path,
    storage_path,
)

log = logging.getLogger(__name__)


def alerts_location(explicit: str | None = None) -> str:
    """``explicit``, else ``[globesms] alerts_uri``, else ``alerts`` under the ledger's base location."""
    configured = conf.get(CONFIG_SECTION, "alerts_uri", fallback=None)
    return explicit or configured or f"{base_location().rstrip('/')}/alerts"


def _fernet() -> tuple[Any, bytes] | None:
    """Airflow's Fernet (``[core] fernet_key``) and its first key, or None when there is none or it cannot
    be used."""
    from cryptography.fernet import Fernet, MultiFernet

    try:
        keys = configured_fernet_keys()
        return (MultiFernet([Fernet(key.encode()) for key in keys]), keys[0].encode()) if keys else None
    except Exception:  # an alert is never lost to a key: the number is then kept unsealed (owner-only)
        log.warning("[core] fernet_key is not usable: alert windows keep the number unsealed")
        return None


def storm_control(alerts_uri: str | None = None) -> StormControl:
    """Storm control over the configured store; the number sealed with Airflow's Fernet key when set."""
    location = alerts_location(alerts_uri)
    store = LocalAlertStore(local_path(location)) if is_local(location) else ObjectAlertStore(storage_path(location))
    sealing = _fernet()
    if sealing is None:
        return StormControl(store)
    fernet, secret = sealing
    return StormControl(
        store,
        secret=secret,
        seal=lambda number: fernet.encrypt(number.encode()).decode(),
        unseal=lambda sealed: fernet.decrypt(sealed.encode()).decode(),
    )


def _request(client: Any, text: Text) -> Any:
    return client.build_send_request(text.route.to, text.body, sender=text.route.sender, sms_type=text.route.sms_type)


def send_text(text: Text) -> SendMessageResult:
    """Send one storm-control text with its route's connection (errors raise: the caller logs them)."""
    client = GlobeSmsHook(text.route.conn_id, default_region=text.route.region).client
    result = client.send(_request(client, text))
    log_sent(text, result)
    return result


async def asend_text(text: Text) -> SendMessageResult:
    """``send_text`` without blocking the event loop (the sweeper runs in the triggerer)."""
    client = await GlobeSmsHook(text.route.conn_id, default_region=text.route.region).aget_client()
    aclient = AsyncGlobeSmsClient(client)
    try:
        result = await aclient.send(_request(client, text))
    finally:
        await aclient.aclose()
    log_sent(text, result)
    return result


def log_sent(text: Text, result: SendMessageResult) -> None:
    """One line per text sent: what it was, for how many alerts, to whom (masked)."""
    log.info(
        "Alert %s SMS to %s accepted (%d alert%s): MessageId %s",
        text.kind,
        mask_number(text.route.to),
        text.alerts,
        "" if text.alerts == 1 else "s",
        result.message_id,
    )
