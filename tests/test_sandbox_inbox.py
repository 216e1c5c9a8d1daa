"""The sandbox inbox over plain HTTP: pages, filters, escaping, the change polls and who may see it.

The browser tests (``test_sandbox_browser.py``) drive the same pages in Chromium; these need no browser.
"""

from __future__ import annotations

import json
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_globesms.emulator.inbox.access import COOKIE, cookie_value
from airflow_provider_globesms.emulator.store import MessageFilter, MessageStore
from tests.test_emulator_deadlines import _message

TOKEN = "inbox-token-93b2"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def fetch(url: str, *, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    """The raw reply (redirects not followed; error statuses returned, not raised)."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        return _opener.open(request, timeout=10)
    except urllib.error.HTTPError as reply:
        return reply


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=30, seed=5)) as server:
        yield server


def client(emulator: EmulatorServer) -> GlobeSmsClient:
    return GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)


BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_a_browser_at_the_root_is_led_to_the_inbox_and_api_calls_stay_api_calls(emulator: EmulatorServer) -> None:
    reply = fetch(f"{emulator.url}/", headers=BROWSER)
    assert (reply.status, reply.headers["location"]) == (303, "/_emulator/ui")
    for url, headers in [
        (f"{emulator.url}/?Action=SendMessageToGlobe", BROWSER),  # a GET with a query is an API call
        (f"{emulator.url}/", {}),  # an SDK never asks for HTML
        (f"{emulator.url}/", {**BROWSER, "authorization": "ACS3-HMAC-SHA256 Credential=AKID"}),  # signed: the API
    ]:
        api = fetch(url, headers=headers)
        assert api.headers["content-type"].startswith("application/json"), url
        assert "Code" in json.loads(api.read())


def test_texts_are_shown_as_text_never_as_markup(emulator: EmulatorServer) -> None:
    client(emulator).send_message("+85291234567", "<script>alert('x')</script> & <b>bold</b>", task_id="<i>")
    for path in ("/_emulator/ui", "/_emulator/ui/numbers/85291234567", "/_emulator/ui/campaign?id=%3Ci%3E"):
        page = fetch(emulator.url + path).read().decode()
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
        assert "<i>" not in page


def test_filters_by_number_campaign_status_and_text(emulator: EmulatorServer) -> None:
    sms = client(emulator)
    sms.send_message("+85291234567", "Flash sale: 50% off", task_id="sale")
    sms.send_message("+85291234567", "Your code is 1234", task_id="otp")
    sms.send_message("+447911123456", "Flash_sale ends today", task_id="sale")

    def shown(query: str) -> list[str]:
        page = fetch(f"{emulator.url}/_emulator/ui?part=live&{query}").read().decode()
        return [line.split('data-to="')[1].split('"')[0] for line in page.splitlines() if 'data-to="' in line]

    assert shown("to=%2B852+9123+4567") == ["85291234567", "85291234567"]  # the number as a person types it
    assert shown("campaign=sale") == ["447911123456", "85291234567"]  # newest first
    assert shown("q=50%25") == ["85291234567"]  # % is a character, not a wildcard
    assert shown("q=flash_") == ["447911123456"]  # _ too; and the search ignores case
    assert shown("status=sending") == ["447911123456", "85291234567", "85291234567"]
    assert shown("status=delivered") == []
    assert fetch(f"{emulator.url}/_emulator/ui?status=lost").status == 422
    assert fetch(f"{emulator.url}/_emulator/ui?q={'x' * 50_000}").status == 422  # not a 500 from SQLite
    assert shown("to=abc") == shown("to=%2B") == []  # a "number" without a digit matches nothing
    thread = fetch(f"{emulator.url}/_emulator/ui/numbers/abc?part=live").read().decode()
    assert 'data-count="0"' in thread


def test_every_campaign_has_its_page(emulator: EmulatorServer) -> None:
    """A TaskId with a slash, a percent sign or a question mark, and the messages sent without one."""
    sms = client(emulator)
    for task_id in ("2024/06/promo", "50%?off#1", None):
        sms.send_message("+85291234567", f"campaign {task_id}", **({"task_id": task_id} if task_id else {}))
    listing = fetch(f"{emulator.url}/_emulator/ui/campaigns?part=live").read().decode()
    links = [part.split('"')[0].replace("&amp;", "&") for part in listing.split('href="')[1:]]
    assert len(links) == 3
    for link in links:
        page = fetch(emulator.url + link).read().decode()
        assert '<dd id="c-messages">1</dd>' in page, link
    assert "campaign None" in fetch(f"{emulator.url}/_emulator/ui/campaign?id=").read().decode()
    page = fetch(f"{emulator.url}/_emulator/ui/campaign?id=2024%2F06%2Fpromo")
    assert page.headers["content-security-policy"].startswith("frame-ancestors 'self' http://127.0.0.1:*")
    assert page.headers["cache-control"] == "no-store"


ASCII = st.text(alphabet=string.ascii_letters + string.digits + " %_\\'\"", max_size=12)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(ASCII, min_size=1, max_size=12), needle=ASCII.filter(bool))
def test_search_finds_exactly_the_texts_holding_the_words(texts: list[str], needle: str) -> None:
    """Whatever a person types (wildcards, quotes, backslashes), the search is a plain case-blind substring."""
    store = MessageStore()
    for n, text in enumerate(texts):
        store.add(_message(n, message=text))
    found = {m.message_id for m in store.find(MessageFilter(text=needle), limit=1000)}
    assert found == {f"m{n}" for n, text in enumerate(texts) if needle.lower() in text.lower()}
    assert store.count(MessageFilter(text=needle)) == len(found)


def events(emulator: EmulatorServer, ticks: int, headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """What a page's polls see, once every 0.2 s: the first poll has no cursor (so it says changed), each later
    one gives the cursor of the one before."""
    cursor = ""
    for tick in range(ticks):
        if tick:
            time.sleep(0.2)
        reply = fetch(f"{emulator.url}/_emulator/ui/changes?since={urllib.parse.quote(cursor)}", headers=headers)
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.headers["cache-control"] == "no-store"
        answer = json.loads(reply.read())
        cursor = answer["cursor"]
        yield answer


def test_the_polls_say_when_the_list_changed(emulator: EmulatorServer) -> None:
    emulator.set_settings(delivery_delay=1.5)
    stream = events(emulator, 60)
    assert next(stream)["changed"] is True  # no cursor yet: the page fetches its live part once
    assert next(stream)["changed"] is False
    client(emulator).send_message("+85291234567", "hello", task_id="t")
    ticks = []  # until the receipt has come and a quiet tick followed, however late a slow machine reads them
    for tick in stream:
        ticks.append(tick)
        if tick["delivered"] == 1 and not tick["changed"]:
            break
    arrival = next(n for n, t in enumerate(ticks) if t["total"] == 1)
    assert ticks[arrival]["changed"], ticks  # the arrival
    assert not any(t["changed"] for t in ticks[:arrival]), ticks  # nothing before it
    assert any(t["changed"] and t["delivered"] == 1 for t in ticks), ticks  # its receipt (the same tick if late)
    assert not ticks[-1]["changed"], ticks  # then nothing more
    assert ticks[-1]["delivered"] == 1
    assert ticks[arrival]["cap"] == 2000
    emulator.clear()
    assert any(next(stream)["changed"] for _ in range(2))


def test_pages_need_the_token_and_a_browser_gets_a_cookie_not_the_token() -> None:
    with EmulatorServer(EmulatorConfig(inspection_token=TOKEN)) as emulator:
        base = emulator.url
        assert fetch(f"{base}/_emulator/ui").headers["location"] == "/_emulator/ui/login"
        assert fetch(f"{base}/_emulator/messages").status == 401  # the JSON API: a 401, as before
        assert fetch(f"{base}/_emulator/ui/login").status == 200
        assert fetch(f"{base}/_emulator/ui/static/inbox.css").status == 200  # no data in it
        assert fetch(f"{base}/_emulator/ui/static/../messages").status in (401, 404)

        wrong = fetch(f"{base}/_emulator/ui?token=nope")
        assert wrong.headers["location"] == "/_emulator/ui/login"
        opened = fetch(f"{base}/_emulator/ui/campaigns?token={TOKEN}&part=live")
        assert (opened.status, opened.headers["location"]) == (303, "/_emulator/ui/campaigns?part=live")
        cookie = opened.headers["set-cookie"]
        assert TOKEN not in cookie
        assert f"{COOKIE}={cookie_value(TOKEN)}" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie

        with_cookie = {"cookie": f"{COOKIE}={cookie_value(TOKEN)}"}
        assert fetch(f"{base}/_emulator/ui", headers=with_cookie).status == 200
        assert fetch(f"{base}/_emulator/messages", headers=with_cookie).status == 200
        assert next(events(emulator, 1, with_cookie))["total"] == 0
        forged = {"cookie": f"{COOKIE}={cookie_value('another token')}"}
        assert fetch(f"{base}/_emulator/messages", headers=forged).status == 401

        bad = fetch(f"{base}/_emulator/ui/login", method="POST", data=b"token=nope")
        assert (bad.headers["location"], bad.headers["set-cookie"]) == ("/_emulator/ui/login?failed=true", None)
        good = fetch(f"{base}/_emulator/ui/login", method="POST", data=f"token={TOKEN}".encode())
        assert good.headers["location"] == "/_emulator/ui"
        assert cookie_value(TOKEN) in good.headers["set-cookie"]


def test_no_credential_of_any_bytes_makes_the_check_fail() -> None:
    """Non-ASCII tokens, cookies and bearer values are refused like any wrong one (they were a 500)."""
    with EmulatorServer(EmulatorConfig(inspection_token=TOKEN)) as emulator:
        base = emulator.url
        latin = "\u00e9".encode().decode("latin-1")  # the UTF-8 bytes of an accented letter, as a header carries them
        for url, method, data, headers, status in [
            (f"{base}/_emulator/ui?token=%C3%A9", "GET", None, {}, 303),
            (f"{base}/_emulator/ui/login?token=%E2%82%AC", "GET", None, {}, 200),
            (f"{base}/_emulator/ui/login", "POST", b"token=%C3%A9", {}, 303),
            (f"{base}/_emulator/messages", "GET", None, {"cookie": f"{COOKIE}={latin}"}, 401),
            (f"{base}/_emulator/messages", "GET", None, {"authorization": f"Bearer {latin}"}, 401),
        ]:
            reply = fetch(url, method=method, data=data, headers=headers)
            assert reply.status == status, url
            assert "/login" in reply.headers.get("location", "/login"), url


def test_the_token_redirect_keeps_the_address_as_it_was_written() -> None:
    with EmulatorServer(EmulatorConfig(inspection_token=TOKEN)) as emulator:
        base = emulator.url
        for path, query, location in [
            ("/_emulator/ui/numbers/a%3Fb", f"token={TOKEN}", "/_emulator/ui/numbers/a%3Fb"),
            ("/_emulator/ui/numbers/x%0Ay", f"token={TOKEN}", "/_emulator/ui/numbers/x%0Ay"),
            (
                "/_emulator/ui/numbers/%E2%82%AC",
                f"q=%C3%A9&token={TOKEN}&to=1",
                "/_emulator/ui/numbers/%E2%82%AC?q=%C3%A9&to=1",
            ),
            ("/_emulator/ui", f"tok%65n={TOKEN}&token={TOKEN}", "/_emulator/ui"),
        ]:
            reply = fetch(f"{base}{path}?{query}")
            assert (reply.status, reply.headers["location"]) == (303, location), path
            assert TOKEN not in reply.headers["location"]
