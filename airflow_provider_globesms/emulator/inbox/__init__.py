"""The sandbox inbox: web pages over the emulator's messages, served by the emulator itself.

Server-rendered HTML (Jinja2) with a little plain JavaScript and no build step. Each page has a live part
that the page fetches again (``?part=live``) when a short poll of ``changes`` says something changed since
its last one: a message arrived, a receipt became final, the inbox was cleared. The same answer carries the
figures of the rate chart. A poll once a second holds no connection open, so any number of tabs stay live
(an event stream per tab held one of the six connections a browser allows a host, and the seventh tab did
not load). The controls PATCH the JSON endpoints the tests and the CLI already use (``/_emulator/faults``,
``/_emulator/settings``, ``DELETE /_emulator/messages``), from this origin only (``app``).

Everything here is under ``/_emulator/``, so the inspection token guards it like the JSON API.
"""

from __future__ import annotations

import math
import statistics
from importlib.resources import files
from typing import Any

import jinja2
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from airflow_provider_globesms.client.errors import InvalidFieldError
from airflow_provider_globesms.client.rules.phone import ascii_digits, parse_number
from airflow_provider_globesms.emulator import search
from airflow_provider_globesms.emulator.gateway import Gateway
from airflow_provider_globesms.emulator.store import STATUSES, MessageFilter

UI = "/_emulator/ui"
PAGE_SIZE = 200
MAX_FILTER = 500  # characters of a filter or a search (SQLite refuses LIKE patterns over 50,000 bytes)
FIGURES_MAX_AGE = 0.5  # seconds: every open page's poll shares one reading of the figures
SEND_ACTIONS = ("SendMessageToGlobe", "BatchSendMessageToGlobe")
_ASSETS = {"inbox.js": "text/javascript", "inbox.css": "text/css"}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("airflow_provider_globesms.emulator.inbox", "templates"),
    autoescape=True,  # message texts are whatever a DAG sent: never markup
    undefined=jinja2.StrictUndefined,
)


def wire_number(text: str) -> str:
    """A number as the emulator stores it (ASCII digits, country code first), from any form a person types."""
    try:
        return parse_number(text, refuse_ambiguous=False).wire
    except InvalidFieldError:  # digits of any script (a CJK input method types full-width ones) read as ASCII
        return "".join(ch for ch in ascii_digits(text) if ch.isascii() and ch.isdigit())


class LiveFigures:
    """What the pages' chart and counters show. Read at most every ``FIGURES_MAX_AGE`` seconds, whatever the
    number of open pages: the counts scan every message, and each open page asks once a second."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._last: tuple[float, dict[str, Any]] | None = None

    def read(self, fresh: bool = False) -> dict[str, Any]:
        """The figures as of now, or (unless ``fresh``) as of less than ``FIGURES_MAX_AGE`` seconds ago."""
        gateway = self.gateway
        now = gateway.clock()
        if not fresh and self._last is not None and 0 <= now - self._last[0] < FIGURES_MAX_AGE:
            return self._last[1]
        windows = gateway.windows.items()
        rate = sum(w.rate(now) for (_key, action), w in windows if action in SEND_ACTIONS)
        throttled = sum(gateway.counts[action]["throttled"] for action in SEND_ACTIONS if action in gateway.counts)
        figures = {
            "time": now,
            "rate": rate,
            "cap": gateway.config.qps,
            "throttled": throttled,
            **gateway.store.status_counts(now),
            "total": gateway.store.count(),
        }
        self._last = (now, figures)
        return figures


def campaign_summary(gateway: Gateway, task_id: str) -> dict[str, Any] | None:
    """Counts by status, delivery rate, segments and time to deliver of one campaign (TaskId)."""
    now = gateway.clock()
    found = gateway.store.campaigns(now, limit=1, task_id=task_id)
    if not found:
        return None
    campaign = found[0]
    final = campaign["delivered"] + campaign["failed"]
    seconds = gateway.store.delivery_seconds(task_id, now)
    campaign["delivery_rate"] = campaign["delivered"] / final if final else None
    campaign["timed"] = len(seconds)  # the latest receipts, when there are more than RECEIPTS_TIMED
    campaign["median_seconds"] = statistics.median(seconds) if seconds else None
    campaign["p95_seconds"] = seconds[math.ceil(len(seconds) * 0.95) - 1] if seconds else None  # nearest rank
    return campaign


# Pages show numbers and texts: never cached, framed only by a page on this machine (Airflow's UI embeds the
# inbox), the referrer sent to this origin only.
PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "frame-ancestors 'self' http://127.0.0.1:* http://localhost:* http://[::1]:*",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # filters in addresses hold numbers: never sent to another origin
}


def _render(name: str, part: str | None, **values: Any) -> HTMLResponse:
    """A whole page, or only its live part (``part=live``) for the page's script to swap in."""
    template = f"_{name}_live.html" if part == "live" else f"{name}.html"
    return HTMLResponse(_templates.get_template(template).render(ui=UI, **values), headers=PAGE_HEADERS)


def _listing(gateway: Gateway, match: MessageFilter) -> dict[str, Any]:
    """The inbox's list: the newest page of the messages ``match`` selects and how many there are. A search
    counts up to ``COUNT_CAP`` ("1,000+") and may stop early (``store.search_cut``), which the page says."""
    store = gateway.store
    searching = bool(match.text and search.searchable(match.text))
    with store.one_search_budget():  # the page's search and its count: one budget for both
        found = store.find(match, limit=PAGE_SIZE, newest_first=True)
        cut = store.search_cut
        total = max(store.count(match, up_to=search.COUNT_CAP + 1 if searching else None), len(found))
    return {
        "messages": [m.as_json(match.now or gateway.clock()) for m in found],
        "total": min(total, search.COUNT_CAP) if searching else total,
        "capped": searching and total > search.COUNT_CAP,
        "short": searching and not search.indexed(search.searchable(match.text or "")),
        "cut": searching and (cut or store.search_cut),
        "short_scan": search.SHORT_SCAN,
    }


def inbox_router(gateway: Gateway) -> APIRouter:
    """The inbox's pages, its event stream, its login form and its two static files."""
    router = APIRouter(prefix=UI, include_in_schema=False)
    _add_pages(router, gateway)
    _add_support(router, gateway)
    return router


def _add_pages(router: APIRouter, gateway: Gateway) -> None:
    @router.get("")
    async def inbox(
        to: str = Query("", max_length=MAX_FILTER),
        campaign: str = Query("", max_length=MAX_FILTER),
        status: str = Query("", max_length=MAX_FILTER),
        q: str = Query("", max_length=MAX_FILTER),
        part: str | None = None,
    ) -> HTMLResponse:
        if status and status not in STATUSES:
            raise HTTPException(422, f"status must be one of {', '.join(STATUSES)}")
        if "\x00" in q:
            raise HTTPException(422, "a search cannot hold a NUL character")
        now = gateway.clock()
        number, task_id, wanted, text = wire_number(to) if to else None, campaign or None, status or None, q or None
        match = MessageFilter(to=number, task_id=task_id, status=wanted, text=text, now=now)
        filters = {"to": to, "campaign": campaign, "status": status, "q": q}
        return _render("inbox", part, filters=filters, statuses=STATUSES, **_listing(gateway, match))

    @router.get("/numbers/{number}")
    async def thread(number: str, part: str | None = None) -> HTMLResponse:
        now = gateway.clock()
        # "" (no digit): no messages
        wire = number if number.isascii() and number.isdigit() else wire_number(number[:MAX_FILTER])
        found = gateway.store.find(MessageFilter(to=wire, now=now), limit=PAGE_SIZE, newest_first=True)
        messages = [m.as_json(now) for m in reversed(found)]  # a phone shows the newest at the bottom
        return _render("thread", part, number=wire, messages=messages)

    @router.get("/campaigns")
    async def campaigns(part: str | None = None) -> HTMLResponse:
        return _render("campaigns", part, campaigns=gateway.store.campaigns(gateway.clock()))

    @router.get("/campaign")
    async def campaign(
        id: str = Query("", max_length=MAX_FILTER, description="the TaskId; empty: messages without one"),
        part: str | None = None,
    ) -> HTMLResponse:
        summary = campaign_summary(gateway, id)
        now = gateway.clock()
        recent = gateway.store.find(MessageFilter(task_id=id, now=now), limit=50, newest_first=True) if summary else []
        messages = [m.as_json(now) for m in recent]
        return _render("campaign", part, task_id=id, campaign=summary, messages=messages)


def _add_support(router: APIRouter, gateway: Gateway) -> None:
    figures = LiveFigures(gateway)

    @router.get("/changes")
    async def changes(since: str = Query("", max_length=100, description="the cursor of the last answer")) -> Any:
        """The live figures, whether the messages changed since ``since`` (a cursor this answered before; none,
        a stale one, or a clock that went back: changed), and the cursor to ask with next."""
        store = gateway.store
        now = gateway.clock()
        seen = _cursor(since)
        mark = store.version()
        changed = seen is None or seen[:3] != mark or seen[3] > now or store.became_final(seen[3], now) > 0
        cursor = ":".join(map(str, mark)) + f":{now!r}"
        body = {**figures.read(fresh=changed), "changed": changed, "cursor": cursor}  # a change shows at once
        return JSONResponse(body, headers={"cache-control": "no-store"})

    @router.get("/static/{name}")
    async def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(404, "no such file")
        body = files("airflow_provider_globesms.emulator.inbox").joinpath("static").joinpath(name).read_bytes()
        return Response(body, media_type=_ASSETS[name], headers={"cache-control": "no-cache"})

    @router.get("/login")
    async def login(failed: bool = Query(False)) -> HTMLResponse:
        return HTMLResponse(_templates.get_template("login.html").render(ui=UI, failed=failed), headers=PAGE_HEADERS)


def _cursor(text: str) -> tuple[int, int, int, float] | None:
    """``added:generation:version:time`` as ``changes`` wrote it; ``None`` for anything else (changed, then)."""
    parts = text.split(":")
    try:
        added, generation, version, at = int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3])
    except (ValueError, IndexError):
        return None
    return (added, generation, version, at) if len(parts) == 4 and math.isfinite(at) else None
