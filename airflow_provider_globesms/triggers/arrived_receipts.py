"""ArrivedReceiptsTrigger: waits, in the triggerer, for the pushed receipts of a campaign's sends in doubt.

A message that arrived at the API without an answer is confirmed by its pushed delivery receipt (see
``client.receipts.confirm``); the operator defers with this trigger until those receipts are in the push
store, or until its deadline. Then the task resumes, and its start-of-try confirmation settles them.

Its kwargs (kept in Airflow's database, shown in its UI) hold no phone number in readable form: only keyed
digests (HMAC-SHA256 under a key derived from Airflow's ``[core] fernet_key``, so trying every number of a
country against them needs the key), the campaign id, where the receipts are, the earliest signing time and
the deadline. Without a Fernet key the digests are keyed by the campaign id alone: someone who can read
them could find the numbers by trying every number of a country, but without that key Airflow keeps the
same database's connection passwords in the clear, and the ledger its requests, so nothing more is exposed.
(Waking on any new receipt instead would resume the task, and read its recipients again, once per push.)
It never sends anything and writes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_globesms.client.receipts.confirm import matches
from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.storage import configured_fernet_keys, push_store

_KEY_LABEL = b"globesms: numbers awaiting pushed receipts"


def receipts_digest_key(campaign_id: str) -> bytes:
    """The key of the numbers' digests: derived from the first ``[core] fernet_key`` (the one that seals, as
    the alert store keys its recipients' digests), never the key itself; without a usable key, from the
    campaign id (see the module's notes)."""
    try:
        keys = configured_fernet_keys()
    except Exception:  # a failing fernet_key_cmd: as without a key
        keys = []
    secret = keys[0].encode() if keys else b"campaign:" + campaign_id.encode()
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def number_digest(key: bytes, digits: str) -> str:
    """A number's keyed digest (its digits, as receipts write them): 32 hex characters."""
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()[:32]


class ArrivedReceiptsTrigger(BaseTrigger):
    """Fires when every awaited number has a receipt of the campaign in the push store, or at ``deadline``.

    :param campaign_id: the campaign (``TaskId``) whose receipts to read.
    :param push_uri: where pushed receipts are kept (a path or an ``ObjectStoragePath`` URI).
    :param digests: the awaited numbers' keyed digests (``number_digest`` under ``receipts_digest_key``).
    :param not_before: the earliest signing time of the awaited messages (epoch seconds): an older receipt
        (a campaign id reused by an earlier run) does not count.
    :param deadline: when to stop waiting (epoch seconds).
    :param after: the newest receipt object the task had read: only later ones are looked at (a receipt the
        task has read and that settled nothing, such as another text's to the same number, never ends the
        wait, which would resume the task only to defer it again).
    :param poll_interval: seconds between looks at the store.
    """

    def __init__(
        self,
        *,
        campaign_id: str,
        push_uri: str,
        digests: list[str],
        not_before: float,
        deadline: float,
        after: str = "",
        poll_interval: float = 5.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.campaign_id = campaign_id
        self.push_uri = push_uri
        self.digests = digests
        self.not_before = not_before
        self.deadline = deadline
        self.after = after
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's class path and arguments, to recreate it in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "campaign_id": self.campaign_id,
                "push_uri": self.push_uri,
                "digests": self.digests,
                "not_before": self.not_before,
                "deadline": self.deadline,
                "after": self.after,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Look at the store every ``poll_interval`` seconds until the receipts are there or the deadline."""
        store = push_store(self.push_uri)
        key = receipts_digest_key(self.campaign_id)
        awaited = set(self.digests)
        read: set[str] = set()
        status = "deadline"
        while time.time() < self.deadline:
            try:
                if await asyncio.to_thread(self._look, store, key, awaited, read):
                    status = "receipts"
                    break
            except Exception as exc:  # the store unreachable for a moment: look again next time
                self.log.warning("Pushed receipts could not be read (%s: %s); looking again", type(exc).__name__, exc)
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.deadline - time.time())))
        self.log.info("Campaign %s: %s (%d message(s) without a receipt)", self.campaign_id, status, len(awaited))
        yield TriggerEvent({"status": status, "deadline": self.deadline})  # type: ignore[no-untyped-call]

    def _look(self, store: PushStore, key: bytes, awaited: set[str], read: set[str]) -> bool:
        """Read the objects not read yet; whether the wait is over (every awaited number has a receipt)."""
        for name, receipts in store.receipts(self.campaign_id, skip=read):
            read.add(name)
            if name <= self.after:  # read by the task already (names begin with their writer's time)
                continue
            awaited.difference_update(self._digests(key, receipts))
        return not awaited

    def _digests(self, key: bytes, receipts: Iterable[Any]) -> set[str]:
        return {number_digest(key, r.to) for r in receipts if matches(r, self.campaign_id, self.not_before)}
