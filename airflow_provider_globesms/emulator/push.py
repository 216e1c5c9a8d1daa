"""Delivery receipts pushed as Alibaba's HTTP batch push does (international SmsReport).

Once ``push_url`` is set, every message accepted from then on has its receipt POSTed there when it
becomes final (``final_at``): a JSON array of records whose fields are all strings (``To``, ``Status``,
``MessageId``, ``SmsSize``, ``TaskId``, ``SendDate``, ``ReceiveDate``, ``ErrorCode``,
``ErrorDescription``), the dates written as QueryMessage writes them, so both agree exactly.

* Receipts that became final within ``push_interval`` seconds of the first one waiting share a push, at
  most ``push_batch`` records each.
* A push is taken when answered HTTP 200 with a JSON object whose ``code`` is the number 0. Anything
  else (another status or body, a refused connection, no answer within ``push_timeout``) is a failed
  attempt, retried after each wait of ``push_retry`` in turn; after the last, the push is given up.
* Faults (``Faults.push_*``, shares of pushes): dropped (never sent, never retried), duplicated (a copy
  sent once more, later), reordered (records shuffled, the push held back a random moment).

Every receipt tracked is pushed, or counted as dropped or given up (with its MessageId): never lost
silently. One scheduler thread merges and times the pushes; ``SENDERS`` threads post them, so a receiver
that hangs holds one sender, never the emulator's event loop nor the other pushes.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import queue
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_globesms.emulator.config import EmulatorConfig
from airflow_provider_globesms.emulator.store import MessageStore, StoredMessage, receipt_date

SENDERS = 4  # pushes in flight at once
MAX_IDS = 100_000  # MessageIds kept per list (the newest): the counts stay exact beyond it
REORDER_SPREAD = 5.0  # a reordered push is held back up to this many push intervals (at least 0.1 s each)
DUPLICATE_GAP = (0.5, 2.0)  # a duplicate follows its push by this many push intervals (at least 0.1 s each)
ANSWER_BYTES = 65_536  # of a receiver's answer read: the ``code`` is near its start
USER_AGENT = "globesms-emulator-push"

COUNTERS = (
    "pushes_attempted",
    "pushes_ok",
    "attempts_failed",
    "pushes_retried",
    "pushes_given_up",
    "pushes_dropped",
    "pushes_duplicated",
    "pushes_reordered",
    "receipts_tracked",
    "receipts_pushed",
    "receipts_given_up",
    "receipts_dropped",
    "receipts_discarded",
)


def receipt(message: StoredMessage) -> dict[str, str]:
    """The pushed record of a message's final receipt: Alibaba's field names, every value a string."""
    return {
        "To": message.to_number,
        "Status": str(int(message.final_status)),
        "MessageId": message.message_id,
        "SmsSize": str(message.segments),
        "TaskId": message.task_id or "",
        "SendDate": receipt_date(message.submitted_at),
        "ReceiveDate": receipt_date(message.final_at),
        "ErrorCode": message.error_code,
        "ErrorDescription": message.error_description,
    }


def accepted(answer: bytes) -> bool:
    """Whether a receiver's 200 answer takes the push: a JSON object whose ``code`` is the number 0."""
    try:
        body = json.loads(answer)
    except ValueError:  # also a UnicodeDecodeError
        return False
    code = body.get("code") if isinstance(body, dict) else None
    # A number, as Alibaba checks: not "0", and not false (which Python would call equal to 0).
    return isinstance(code, int | float) and not isinstance(code, bool) and code == 0


def post_receipts(url: str, records: list[dict[str, str]], timeout: float) -> bool:
    """POST ``records`` as a JSON array to ``url``; whether the receiver took them (see ``accepted``).

    ``timeout`` bounds the connection and each wait for the answer. http.client, not urllib: no proxy
    from the environment may ever carry a receipt off this machine.
    """
    parts = urlsplit(url)
    factory = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Connection": "close"}
    connection = factory(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(ANSWER_BYTES)
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()
    return response.status == 200 and accepted(answer)


@dataclass(eq=False)
class _Push:
    """One push: its records, the attempts made so far, and whether it is a fault's duplicate."""

    records: list[dict[str, str]]
    attempts: int = 0
    copy: bool = False  # sent once, never retried: the original carries the receipts' fate


class ReceiptPusher:
    """Pushes the receipts of the messages ``store`` accepts to ``config.push_url`` (module docstring).

    ``clock`` is the gateway's (``final_at`` is in its time). Threads start when a URL is first set
    (``wake``, or a URL in ``config`` at creation); ``close`` stops them.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        store: MessageStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self._random = random.Random(seed)
        self._cond = threading.Condition()  # guards everything below; never held during a POST
        self._finals: list[tuple[float, int, dict[str, str]]] = []  # (final_at, order, record), a heap
        self._sends: list[tuple[float, int, _Push]] = []  # (due, order, push), a heap: firsts and retries
        self._order = itertools.count()
        self._outbox: queue.SimpleQueue[tuple[str, _Push] | None] = queue.SimpleQueue()
        self._in_flight = 0
        self._counts: Counter[str] = Counter()
        self._dropped_ids: deque[str] = deque(maxlen=MAX_IDS)
        self._given_up_ids: deque[str] = deque(maxlen=MAX_IDS)
        self._threads: list[threading.Thread] = []
        self._closed = False
        if store is not None:
            store.listeners.append(self.track)
        self.wake()

    # --- told by the emulator -------------------------------------------------------------------

    def track(self, message: StoredMessage) -> None:
        """Take an accepted message's receipt, to push when final; nothing while no URL is set."""
        if self.config.push_url is None or self._closed:  # the common case, on the event loop: kept cheap
            return
        entry = (message.final_at, next(self._order), receipt(message))
        with self._cond:
            heapq.heappush(self._finals, entry)
            self._counts["receipts_tracked"] += 1
            self._start()
            if self._finals[0] is entry:  # sooner than the scheduler planned to wake
                self._cond.notify_all()

    def wake(self) -> None:
        """Push settings changed: start once a URL is set, and plan again with the new settings."""
        with self._cond:
            if self.config.push_url is not None:
                self._start()
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop pushing (pushes still waiting are abandoned) and wait up to ``timeout`` s for the threads."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        if self.store is not None and self.track in self.store.listeners:
            self.store.listeners.remove(self.track)
        for _ in range(SENDERS):
            self._outbox.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        """Counters (``COUNTERS``), what is still under way, and the MessageIds dropped or given up."""
        with self._cond:
            out: dict[str, Any] = {name: self._counts[name] for name in COUNTERS}
            out.update(
                receipts_waiting=len(self._finals),
                pushes_queued=len(self._sends),
                pushes_in_flight=self._in_flight,
                dropped_message_ids=list(self._dropped_ids),
                given_up_message_ids=list(self._given_up_ids),
            )
        return out

    # --- the scheduler thread -------------------------------------------------------------------

    def _start(self) -> None:
        """Start the threads, once (under the lock)."""
        if self._threads or self._closed:
            return
        self._threads = [threading.Thread(target=self._run, name="globesms-push", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send_loop, name=f"globesms-push-{n}", daemon=True) for n in range(SENDERS)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = self._clock()
                wake_at = self._plan(now)
                # A floor on the wait: a clock that stands still (a test's) must not make this spin.
                self._cond.wait(None if wake_at is None else max(0.005, wake_at - now))

    def _plan(self, now: float) -> float | None:
        """Form the pushes whose merge window closed, hand the due ones to the senders; the next moment due."""
        interval = self.config.push_interval
        while self._finals and self._finals[0][0] + interval <= now:
            cutoff = self._finals[0][0] + interval
            records: list[dict[str, str]] = []
            while self._finals and self._finals[0][0] <= cutoff:
                records.append(heapq.heappop(self._finals)[2])
            size = self.config.push_batch
            for start in range(0, len(records), size):
                self._form(records[start : start + size], now)
        while self._sends and self._sends[0][0] <= now:
            self._release(heapq.heappop(self._sends)[2])
        moments = [self._finals[0][0] + interval] if self._finals else []
        moments += [self._sends[0][0]] if self._sends else []
        return min(moments, default=None)

    def _form(self, records: list[dict[str, str]], now: float) -> None:
        """A new push of ``records``, through the push faults."""
        faults, gap = self.config.faults, max(self.config.push_interval, 0.1)
        if self._chance(faults.push_drop):
            self._counts["pushes_dropped"] += 1
            self._counts["receipts_dropped"] += len(records)
            self._dropped_ids.extend(r["MessageId"] for r in records)
            return
        due = now
        if self._chance(faults.push_reorder):
            self._random.shuffle(records)
            due += self._random.uniform(0.0, REORDER_SPREAD * gap)  # so later pushes may overtake it
            self._counts["pushes_reordered"] += 1
        self._schedule(due, _Push(records))
        if self._chance(faults.push_duplicate):
            self._counts["pushes_duplicated"] += 1
            self._schedule(due + self._random.uniform(*DUPLICATE_GAP) * gap, _Push(list(records), copy=True))

    def _chance(self, share: float) -> bool:
        return share > 0 and self._random.random() < share

    def _schedule(self, due: float, push: _Push) -> None:
        heapq.heappush(self._sends, (due, next(self._order), push))

    def _release(self, push: _Push) -> None:
        """Hand a due push to a sender, to the URL set now; with none set any more, it is discarded."""
        url = self.config.push_url
        if url is None:
            if not push.copy:
                self._counts["receipts_discarded"] += len(push.records)
            return
        self._in_flight += 1
        self._outbox.put((url, push))

    # --- the sender threads ---------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None or self._closed:
                return
            url, push = item
            push.attempts += 1  # this thread alone holds the push until it is settled
            taken = post_receipts(url, push.records, self.config.push_timeout)
            with self._cond:
                self._settle(push, taken)
                self._cond.notify_all()  # a retry may now be the next moment due

    def _settle(self, push: _Push, taken: bool) -> None:
        """Count an attempt; schedule the retry of a failed push, or give it up after the last."""
        self._in_flight -= 1
        self._counts["pushes_attempted"] += 1
        if taken:
            self._counts["pushes_ok"] += 1
            self._counts["receipts_pushed"] += len(push.records)
            return
        self._counts["attempts_failed"] += 1
        if push.copy or self._closed:
            return
        waits = self.config.push_retry
        if push.attempts <= len(waits):
            self._counts["pushes_retried"] += 1
            self._schedule(self._clock() + waits[push.attempts - 1], push)
            return
        self._counts["pushes_given_up"] += 1
        self._counts["receipts_given_up"] += len(push.records)
        self._given_up_ids.extend(r["MessageId"] for r in push.records)
