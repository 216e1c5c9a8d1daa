"""The texts storm control sends: one alert, an alert with the window's backlog, a digest, a muted notice.

Each is fitted into one GSM-7 segment where it can be (160 characters, billed once): the labels with the
fewest alerts are dropped first, then the link; a text that cannot fit (a long custom message) is sent whole.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from airflow_provider_globesms.client.rules.segments import GSM7_SINGLE, count_segments

_CUSTOM_LEAD = 1500  # characters of a custom message that may lead a backlog (the API takes 2,000 at most)


@dataclass(frozen=True)
class Alert:
    """One alert as storm control sees it.

    :param key: what makes it the same alert (DAG, task, run, try, map index, kind): a callback that runs
        twice gives the same key, and is sent once.
    :param label: what failed, short (``etl.load``); the digest counts alerts by label.
    :param head: the alert in a few words (``etl.load failed (try 2)``), used when it leads a digest.
    :param text: the alert's own text, sent when it is the first in a quiet window.
    :param link: a web address for the digest (the Airflow UI), without its scheme; None for none.
    :param custom: the text is the user's template: lead a digest with it rather than with ``head``.
    """

    key: str
    label: str
    head: str
    text: str
    link: str | None = None
    custom: bool = False

    @property
    def digest(self) -> str:
        """The key's digest: how claims and windows name the alert."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:40]

    def to_record(self) -> dict[str, object]:
        """The fields a window keeps of a folded alert (no number, no secret)."""
        return {"label": self.label, "head": self.head, "link": self.link, "key": self.digest}


def clock_text(epoch: float) -> str:
    """``03:02 UTC``: when the backlog began, as the digest says it."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M UTC")


def _fits(text: str) -> bool:
    count = count_segments(text)
    return count.encoding == "GSM-7" and count.units <= GSM7_SINGLE


def _common_link(links: Sequence[str | None]) -> str | None:
    """The one link all alerts share; else the UI's DAG list on the first one's host."""
    known = [link for link in links if link]
    if not known:
        return None
    if len(set(known)) == 1:
        return known[0]
    return known[0].split("/dags/", 1)[0] + "/dags"


def backlog_text(lead: Alert | None, backlog: Sequence[dict[str, object]], since: float) -> str:
    """``Airflow: etl.load failed (try 2) +37 more since 03:02 UTC: etl.transform x25, etl.load x12 <link>``.

    ``lead`` is the alert that opens the new window (None for a digest sent by the sweeper); ``backlog`` the
    records of the alerts folded into the window that just closed, which opened at ``since``.
    """
    if not backlog and lead is not None:
        return lead.text
    counts = Counter(str(record.get("label") or "?") for record in backlog)
    labels = [f"{label} x{n}" for label, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    links = [str(r.get("link")) if r.get("link") else None for r in backlog]
    link = _common_link([*links, lead.link if lead else None])
    custom = lead is not None and lead.custom and len(lead.text) <= _CUSTOM_LEAD  # room left for the backlog
    start = "Airflow:" if lead is None else (lead.text if custom else f"Airflow: {lead.head}")
    more = f"+{len(backlog)} more since {clock_text(since)}"
    candidates = []
    for with_link in (True, False) if link else (False,):
        for shown in range(len(labels), -1, -1):
            listed = ", ".join(labels[:shown]) + (", ..." if shown < len(labels) and shown else "")
            text = f"{start} {more}" + (f": {listed}" if shown else "") + (f" {link}" if with_link else "")
            candidates.append(" ".join(text.split()))
    return next((text for text in candidates if _fits(text)), candidates[-1])


def muted_text(until: float, cap: int, lead: Alert | None) -> str:
    """The last text of a day once the daily cap is reached."""
    until_text = datetime.fromtimestamp(until, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"Airflow: {cap} alert texts today, the daily cap: muted until {until_text}."
    if lead is not None:
        with_lead = f"{text} Latest: {lead.head}"
        if _fits(with_lead):
            return with_lead
    return text
