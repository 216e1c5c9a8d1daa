"""AlertDigestTrigger: the digest sweeper, an event trigger in the triggerer for an ``AssetWatcher``.

A window with folded alerts owes its recipient one digest when it ends. If another alert comes later, that
alert's callback sends it; if none comes, this trigger does: every ``every`` seconds it closes the windows
that have ended and sends their digests. Claims in the alerts store make each digest go once, whichever
process (this trigger, a second triggerer, a late callback) gets there first. It yields one event per digest
sent (the number masked), so each shows as a run of the sweeper DAG; it never raises (a failed sweep is
logged, and the next one tries again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_globesms.alerting import asend_text, storm_control
from airflow_provider_globesms.client import mask_number
from airflow_provider_globesms.client.alerts import Text

log = logging.getLogger(__name__)

_MOST_PER_SWEEP = 1000  # windows settled in one sweep; the next sweep goes on


class AlertDigestTrigger(BaseEventTrigger):
    """Sends the digests of alert windows that have ended.

    :param alerts_uri: the alerts store, as the notifiers have it (by default ``[globesms] alerts_uri``,
        else ``alerts`` under ``[globesms] ledger_uri``).
    :param every: seconds between sweeps (a digest goes at most this long after its window ends).
    """

    def __init__(self, alerts_uri: str | None = None, every: float = 15.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if not every > 0:
            raise ValueError(f"every must be a positive number of seconds; got {every!r}")
        self.alerts_uri, self.every = alerts_uri, float(every)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's class path and arguments, to recreate it in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"alerts_uri": self.alerts_uri, "every": self.every},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sweep for ever; one event per digest sent."""
        while True:
            async for event in self._sweep():
                yield TriggerEvent(event)  # type: ignore[no-untyped-call]
            await asyncio.sleep(self.every)

    async def _sweep(self) -> AsyncIterator[dict[str, Any]]:
        """Settle one due window at a time and send its digest before the next: stopped (a triggerer
        restarting), the sweeper loses at most the digest in flight."""
        for _ in range(_MOST_PER_SWEEP):
            try:
                verdicts = await asyncio.to_thread(lambda: storm_control(self.alerts_uri).sweep(limit=1))
            except Exception as exc:  # the store unreachable: the next sweep tries again
                log.warning("Alert digests not swept (%s: %s); again in %g s", type(exc).__name__, exc, self.every)
                return
            if not verdicts:
                return
            for verdict in verdicts:
                if verdict.text is None:
                    log.info("Alert window closed with no text: %s", verdict.reason)
                    continue
                yield await self._send(verdict.text)

    async def _send(self, text: Text) -> dict[str, Any]:
        event: dict[str, Any] = {"to": mask_number(text.route.to), "kind": text.kind, "alerts": text.alerts}
        try:
            event["message_id"] = (await asend_text(text)).message_id
        except Exception as exc:  # sent at most once: a digest whose send failed is not retried
            log.error("Alert %s SMS to %s not sent: %s: %s", text.kind, event["to"], type(exc).__name__, exc)
            event["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return event
