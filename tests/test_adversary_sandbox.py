"""Issue 22's adversary review, kept as tests: same-origin state changes, polling, search.

Each test asserts a promise; the ones that failed before their fix: a search holding a NUL (a 500), another
process writing the same --db file (no refresh), an older writer's clear (stale hits), a proxy passing on the
host without its port (the page's own controls refused), the API docs page framed by any page, a clock going
back (no refresh), a Sec-Fetch-Site other than same-origin beside an equal Origin. Search costs at 200,000
messages are measured by bench/inbox.py, not timed here.
"""

# ruff: noqa: E501, F811
# (E501: the hostile pages below are JavaScript in strings; F811: the browser fixture comes from the browser tests)

from __future__ import annotations

import http.client
import http.server
import json
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_globesms.emulator.store import MessageFilter, MessageStore
from tests.emulator_helpers import StoppedClock
from tests.test_emulator_deadlines import _message
from tests.test_sandbox_inbox import fetch

# --- search ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", ["ab%00cd", "%00%00%00", "hello%00", "b%00"])
def test_a_search_with_a_nul_is_no_500(q: str) -> None:
    """ATTACK: /_emulator/ui?q=ab%00cd -> the FTS5 phrase '"ab\\x00cd"' is cut at the NUL by FTS5's query
    parser ("unterminated string"): sqlite3.OperationalError, a plain-text 500."""
    with EmulatorServer(EmulatorConfig()) as emulator:
        reply = fetch(f"{emulator.url}/_emulator/ui?q={q}")
        assert reply.status == 422, reply.read()[:200]  # a clear refusal: nobody types a NUL, SQLite stops at one


@pytest.mark.parametrize(
    "term",
    ['"hi"', "AND", "a AND b", "NEAR(", "foo*", "*bar", "^st", "message:", "message: x", "(paren)", "OR", "NOT",
     '"""', "  b", "\t", "-", "x" * 500, "':'", "a\\b"],
)  # fmt: skip
def test_fts5_syntax_is_plain_text(term: str) -> None:
    texts = ["hello world", 'say "hi" now', "a AND b", "NEAR(x y)", "foo*bar", "^start", "message: x", "(paren)",
             "tab\there", "a  b", "x" * 600, "OR NOT -", "'':''", "a\\b\\c"]  # fmt: skip
    store = MessageStore()
    for n, text in enumerate(texts):
        store.add(_message(n, message=text))
    found = {m.message_id for m in store.find(MessageFilter(text=term))}
    assert found == {f"m{n}" for n, t in enumerate(texts) if term.lower() in t.lower()}
    assert store.count(MessageFilter(text=term), up_to=1001) == len(found)


@pytest.mark.parametrize("matching", [999, 1000, 1001])
def test_a_count_is_exact_below_the_cap(matching: int) -> None:
    store = MessageStore()
    for n in range(matching + 300):
        store.add(_message(n, message="needle here" if n < matching else "hay"))
    counted = store.count(MessageFilter(text="needle"), up_to=1001)
    assert counted == min(matching, 1001)


def test_refused_rows_leave_the_index_in_step() -> None:
    store = MessageStore(flush_every=10)
    for n in range(30):
        store.add(_message(n, message="keep me" if n % 3 else "bad \ud800 keep me"))
    store.flush()
    found = {m.message_id for m in store.find(MessageFilter(text="keep me"))}
    assert found == {f"m{n}" for n in range(30) if n % 3}
    store.clear()
    store.add(_message(100, message="after clear"))
    assert [m.message_id for m in store.find(MessageFilter(text="keep"))] == []
    assert [m.message_id for m in store.find(MessageFilter(text="after"))] == ["m100"]


def test_another_writer_clearing_the_file_as_the_previous_release_did_leaves_no_stale_hits(tmp_path: Path) -> None:
    """ATTACK (second writer on the same --db): the previous release's ``clear`` (and any plain
    ``DELETE FROM messages``) empties the rows but not the external-content FTS5 index; rowids restart at 1,
    so the stale index entries point at the new rows: a search for an old text returns an unrelated new
    message."""
    path = str(tmp_path / "shared.sqlite3")
    store = MessageStore(path)
    store.add(_message(1, message="secret alpha one-time code"))
    store.flush()
    other = sqlite3.connect(path)  # the pre-issue-22 MessageStore.clear: DELETE FROM messages (+ totals)
    other.execute("DELETE FROM messages")
    other.commit()
    other.close()
    store.add(_message(2, message="hello bravo"))
    found = [m.message for m in store.find(MessageFilter(text="alpha"))]
    assert found == [], found


# --- polling --------------------------------------------------------------------------------------------------


def _changes(emulator: EmulatorServer, since: str = "") -> dict[str, Any]:
    reply = fetch(f"{emulator.url}/_emulator/ui/changes?since={urllib.parse.quote(since)}")
    assert reply.status == 200
    return dict(json.loads(reply.read()))


@pytest.mark.parametrize(
    "since",
    ["%00", "1:0:1e309", "1:0:nan", "-1:-1:-1e308", "9" * 99, "1:0:0x10", "\u0661:0:0", "::", ":::", "1_0:0:0",
     "0:0:-inf", "0:0:1e-400", "0:0: 1 "],
)  # fmt: skip
def test_any_cursor_is_answered(since: str) -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        assert "cursor" in _changes(emulator, since)


def test_polls_settle_and_see_arrivals_receipts_and_clears() -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        clock = StoppedClock(emulator)
        cursor = _changes(emulator)["cursor"]
        answer = _changes(emulator, cursor)
        assert not answer["changed"]  # no refresh storm
        emulator.gateway.store.add(_message(1, submitted_at=clock.now, final_at=clock.now + 2))
        answer = _changes(emulator, answer["cursor"])
        assert answer["changed"]
        answer = _changes(emulator, answer["cursor"])
        assert not answer["changed"]
        clock.advance(3)  # the receipt becomes final
        answer = _changes(emulator, answer["cursor"])
        assert answer["changed"]
        assert not _changes(emulator, answer["cursor"])["changed"]
        emulator.gateway.reset_state()
        assert _changes(emulator, answer["cursor"])["changed"]


def test_messages_written_by_another_process_on_the_same_db_are_a_change(tmp_path: Path) -> None:
    """ATTACK: the cursor is this process's counters (added, generation); the store's own docs say another
    process may write the same --db file, and its messages never make ``changed`` true (until one of their
    receipts becomes final), so every open page stays stale while the figures' total moves."""
    path = str(tmp_path / "shared.sqlite3")
    with EmulatorServer(EmulatorConfig(db=path)) as emulator:
        clock = StoppedClock(emulator)
        answer = _changes(emulator)
        answer = _changes(emulator, answer["cursor"])
        other = MessageStore(path)
        other.add(_message(7, message="from the other writer", submitted_at=clock.now, final_at=clock.now + 600))
        other.close()
        clock.advance(1)  # the figures are re-read (at most every 0.5 s); the receipt is still 10 min away
        answer = _changes(emulator, answer["cursor"])
        assert answer["total"] == 1  # the figures see it ...
        assert answer["changed"]  # ... the list is never told to refresh


def test_the_clock_moving_back_is_a_change() -> None:
    """ATTACK (mild): the clock moves back past a receipt: the message is 'sending' again, but the poll says
    nothing changed (became_final(after, upto) with after > upto is empty), so the page keeps 'delivered'."""
    with EmulatorServer(EmulatorConfig()) as emulator:
        clock = StoppedClock(emulator)
        start = clock.now
        emulator.gateway.store.add(_message(1, submitted_at=start, final_at=start + 1))
        clock.advance(5)
        answer = _changes(emulator)
        answer = _changes(emulator, answer["cursor"])
        assert not answer["changed"]
        clock.now = start  # backwards: the receipt is no longer final
        assert emulator.messages()[0]["status"] == "sending"
        assert _changes(emulator, answer["cursor"])["changed"]


# --- origin check, raw HTTP -----------------------------------------------------------------------------------


def _raw(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    connection.putheader("content-length", str(len(body)))
    connection.endheaders(body)
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.fixture(scope="module")
def shared() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(allowed_hosts=("sandbox.example.com",))) as server:
        yield server


CROSS = [
    [("Host", "127.0.0.1:{p}"), ("Origin", "http://127.0.0.1:1")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "http://localhost:{p}")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "null"), ("Sec-Fetch-Site", "cross-site")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "null"), ("Sec-Fetch-Site", "same-site")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "null")],
    [("Host", "127.0.0.1:{p}"), ("Sec-Fetch-Site", "cross-site")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "http://127.0.0.1:{p}"), ("Origin", "http://127.0.0.1:{p}")],
    [("Host", "127.0.0.1:{p}"), ("Host", "127.0.0.1:{p}"), ("Origin", "http://127.0.0.1:{p}")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "http://127.0.0.1:{p}@evil.example")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "file://")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "data:")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "http://127.0.0.1:{p}.evil.example")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "http://[::1]:{p}")],
    [("Host", "localhost:{p}"), ("Origin", "http://127.0.0.1:{p}")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "http://127.0.0.1")],
]
SAME = [
    [("Host", "127.0.0.1:{p}"), ("Origin", "http://127.0.0.1:{p}")],
    [("Host", "localhost:{p}"), ("Origin", "http://localhost:{p}")],
    [("host", "LOCALHOST.:{p}"), ("origin", "HTTP://LocalHost.:{p}")],
    [("Host", "127.0.0.1:{p}"), ("Origin", "null"), ("Sec-Fetch-Site", "same-origin")],
    [("Host", "127.0.0.1:{p}")],
    [("Host", "sandbox.example.com"), ("Origin", "http://sandbox.example.com")],
    [("Host", "sandbox.example.com"), ("Origin", "https://sandbox.example.com")],  # TLS ends at the proxy
]


def _fill(headers: list[tuple[str, str]], port: int) -> list[tuple[str, str]]:
    return [(n, v.replace("{p}", str(port))) for n, v in headers]


@pytest.mark.parametrize("headers", CROSS)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("PATCH", "/_emulator/faults", b'{"throttle": 1}'), ("DELETE", "/_emulator/messages", b""),
     ("PATCH", "/_emulator/settings", b'{"qps": 1}'), ("POST", "/_emulator/ui/login", b"token=x")],
)  # fmt: skip
def test_cross_origin_refused(shared: EmulatorServer, headers: Any, method: str, path: str, body: bytes) -> None:
    shared.set_faults(throttle=0)
    status = _raw(shared.port, method, path, [*_fill(headers, shared.port), ("Content-Type", "application/json")], body)
    changed_state = shared.set_faults()["throttle"] != 0
    shared.set_faults(throttle=0)
    fetch(
        f"{shared.url}/_emulator/settings",
        method="PATCH",
        data=b'{"qps": 2000}',
        headers={"content-type": "application/json"},
    )
    assert status in (403, 421), status
    assert not changed_state


@pytest.mark.parametrize("headers", SAME)
def test_same_origin_accepted(shared: EmulatorServer, headers: Any) -> None:
    hdrs = [*_fill(headers, shared.port), ("Content-Type", "application/json")]
    assert _raw(shared.port, "PATCH", "/_emulator/faults", hdrs, b'{"throttle": 0}') == 200


def test_the_browsers_own_word_same_site_is_not_overruled_by_an_equal_origin(shared: EmulatorServer) -> None:
    """ATTACK (defence in depth, not reachable from a hostile page today): Origin equal to Host with
    ``Sec-Fetch-Site: same-site`` (a request whose redirect chain passed through another port) is accepted;
    the check reads Sec-Fetch-Site only when Origin is absent or null."""
    headers = [("Host", f"127.0.0.1:{shared.port}"), ("Origin", f"http://127.0.0.1:{shared.port}"),
               ("Sec-Fetch-Site", "same-site"), ("Content-Type", "application/json")]  # fmt: skip
    status = _raw(shared.port, "PATCH", "/_emulator/faults", headers, b'{"throttle": 0}')
    assert status == 403, status


def test_behind_a_proxy_on_its_own_port_the_pages_controls_work(shared: EmulatorServer) -> None:
    """ATTACK (a legitimate same-origin change refused): the inbox behind a reverse proxy at
    https://sandbox.example.com:8443 with nginx's usual ``proxy_set_header Host $host;`` ($host carries no
    port). allowed_hosts lets the pages load, but every control PATCH is refused 403: Origin carries :8443,
    Host none (X-Forwarded-Host/Port are not looked at)."""
    headers = [
        ("Host", "sandbox.example.com"), ("Origin", "https://sandbox.example.com:8443"),
        ("X-Forwarded-Host", "sandbox.example.com:8443"), ("X-Forwarded-Proto", "https"),
        ("Sec-Fetch-Site", "same-origin"), ("Content-Type", "application/json"),
    ]  # fmt: skip
    assert _raw(shared.port, "GET", "/_emulator/ui", headers[:1]) == 200  # the page loads
    assert _raw(shared.port, "PATCH", "/_emulator/faults", headers, b'{"throttle": 0}') == 200


def test_the_api_docs_page_with_a_working_delete_cannot_be_framed_by_another_page(shared: EmulatorServer) -> None:
    """ATTACK (clickjacking outside the inbox): /_emulator/docs (Swagger UI, 'Try it out' on DELETE
    /_emulator/messages and PATCH /_emulator/faults, same-origin so accepted) is served with no
    frame-ancestors / X-Frame-Options: any page may frame it; the inbox's read-only-when-framed rule does not
    cover it."""
    reply = fetch(f"{shared.url}/_emulator/docs")
    assert reply.status == 200
    csp = reply.headers.get("content-security-policy", "")
    assert "frame-ancestors" in csp or reply.headers.get("x-frame-options"), dict(reply.headers)


# --- real Chromium --------------------------------------------------------------------------------------------

pw = pytest.importorskip("playwright.sync_api")
from tests.test_sandbox_browser import WAIT_MS, browser, sdk, sdk_send  # noqa: E402, F401


class _Site:
    """A web server on another port of 127.0.0.1 (a local dev server the developer has open)."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("content-length") or 0))
                status, headers, body = site.pages.get(self.path.split("?")[0], (404, [], b""))
                self.send_response(status)
                for name, value in [("content-type", "text/html"), *headers]:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def site() -> Iterator[_Site]:
    served = _Site()
    yield served
    served.server.shutdown()
    served.server.server_close()


ATTACKS = """<!doctype html><body><script>
const T = "{emu}";
const done = [];
function form(action, enctype, fields, target) {{
  const f = document.createElement("form"); f.method = "POST"; f.action = action; f.enctype = enctype;
  if (target) f.target = target;
  for (const [n, v] of fields) {{ const i = document.createElement("input"); i.name = n; i.value = v; f.append(i); }}
  document.body.append(f); f.submit();
}}
(async () => {{
  for (const [m, p, t] of [["PATCH", "/_emulator/faults", "application/json"], ["DELETE", "/_emulator/messages"],
                           ["POST", "/_emulator/ui/login", "application/x-www-form-urlencoded"],
                           ["PATCH", "/_emulator/settings", "text/plain"], ["patch", "/_emulator/faults", "text/plain"]]) {{
    for (const mode of ["cors", "no-cors"]) {{
      try {{ await fetch(T + p, {{method: m, mode, credentials: "include", headers: t ? {{"content-type": t}} : {{}},
                                 body: m === "DELETE" ? undefined : (t && t.includes("form") ? "token={token}" : '{{"throttle":1,"qps":1}}')}}); }} catch (e) {{}}
    }}
  }}
  navigator.sendBeacon(T + "/_emulator/ui/login", new Blob(["token={token}"], {{type: "text/plain"}}));
  navigator.sendBeacon(T + "/_emulator/faults", '{{"throttle": 1}}');
  // a sandboxed frame (origin null) and a data: frame
  const sandboxed = document.createElement("iframe");
  sandboxed.sandbox = "allow-scripts allow-forms";
  sandboxed.srcdoc = `<script>fetch("${{T}}/_emulator/faults", {{method: "PATCH", body: '{{"throttle":1}}'}}).catch(()=>{{}});
    fetch("${{T}}/_emulator/messages", {{method: "DELETE"}}).catch(()=>{{}});<\\/script>`;
  document.body.append(sandboxed);
  const data = document.createElement("iframe");
  data.src = "data:text/html," + encodeURIComponent(`<form method=POST action="${{T}}/_emulator/ui/login"><input name=token value="{token}"></form><script>document.forms[0].submit()<\\/script>`);
  document.body.append(data);
  // a redirect chain: a form post to this site, answered 307 to the emulator's login (the body follows)
  const w = window.open("about:blank", "popup");
  form("{site}/redirect", "application/x-www-form-urlencoded", [["token", "{token}"]], "popup");
  form(T + "/_emulator/ui/login", "text/plain", [["token", "{token}"]], "popup2");
  document.title = "tried";
}})();
</script></body>"""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_hostile_page_changes_nothing_and_logs_nobody_in(browser: Any, site: _Site, host: str) -> None:
    """Every vector in one page (fetch cors/no-cors, a lower-case 'patch', sendBeacon, a sandboxed frame, a
    data: frame, a text/plain form, a 307 chain, a popup) even *knowing* the token: no fault, no setting,
    no clear, no login cookie."""
    token = "adv-token-5678"
    with EmulatorServer(EmulatorConfig(inspection_token=token, delivery_delay=30)) as emulator:
        emulator.gateway.store.add(_message(1))
        site.pages["/redirect"] = (307, [("location", f"{emulator.url}/_emulator/ui/login")], b"")
        page_html = ATTACKS.format(emu=f"http://{host}:{emulator.port}", token=token, site=site.url)
        site.pages["/"] = (200, [], page_html.encode())
        context = browser.new_context()
        page = context.new_page()
        seen: list[str] = []
        context.on("request", lambda r: seen.append(f"{r.method} {r.url}"))
        page.goto(site.url + "/")
        page.wait_for_timeout(3000)
        emulator_cookies = [c for c in context.cookies() if c["name"] == "globesms_inspection"]
        context.close()
        auth = {"authorization": f"Bearer {token}"}
        faults = json.loads(fetch(f"{emulator.url}/_emulator/faults", headers=auth).read())
        settings = json.loads(fetch(f"{emulator.url}/_emulator/settings", headers=auth).read())
        messages = json.loads(fetch(f"{emulator.url}/_emulator/messages", headers=auth).read())
        assert any("/_emulator/ui/login" in r for r in seen), seen  # it did try
        assert faults["throttle"] == 0
        assert settings["qps"] != 1
        assert messages["count"] == 1
        assert emulator_cookies == [], emulator_cookies


def test_twenty_five_tabs_stay_live(browser: Any) -> None:
    with EmulatorServer(EmulatorConfig(delivery_delay=1)) as emulator:
        context = browser.new_context()
        tabs = []
        for n in range(25):
            tab = context.new_page()
            tab.set_default_timeout(WAIT_MS * 2)
            tab.goto(f"{emulator.url}/_emulator/ui" + ("?q=tab" if n % 2 else ""))
            tabs.append(tab)
        for tab in tabs:
            tab.wait_for_selector("#stream-state.on")
        assert sdk_send(sdk(emulator), "85291234567", "tab storm", "t").response_code == "OK"
        for tab in tabs:
            tab.wait_for_function("document.querySelector('li.message p.text')?.textContent === 'tab storm'")
        for tab in tabs:  # the receipt becoming final reaches every tab too
            tab.wait_for_function(
                "document.querySelector('li.message .badge, li.message [class*=status]') &&"
                " !document.querySelector('li.message').textContent.includes('sending')"
            )
        emulator.gateway.reset_state()
        for tab in tabs:
            tab.wait_for_function("document.querySelectorAll('li.message').length === 0")
        context.close()


def test_behind_the_token_the_own_controls_still_work(browser: Any) -> None:
    token = "adv-token-own"
    with EmulatorServer(EmulatorConfig(inspection_token=token)) as emulator:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{emulator.url.replace('127.0.0.1', 'localhost')}/_emulator/ui")
        page.locator("input[name=token]").fill(token)
        page.locator("button[type=submit]").click()
        page.wait_for_selector("#stream-state.on")
        page.wait_for_timeout(600)
        page.locator("#throttle-all").check()
        page.wait_for_function("document.getElementById('control-status').textContent === 'throttle is now 1'")
        page.on("dialog", lambda d: d.accept())
        page.locator("#clear").click()
        page.wait_for_function("document.getElementById('control-status').textContent.startsWith('cleared')")
        context.close()
        assert emulator.set_faults()["throttle"] == 1
