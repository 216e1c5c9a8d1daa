"""The sandbox inbox in a real browser: Debian's Chromium driven by Playwright, the official SDK sending.

Chromium comes from the system (``make test`` installs the Debian package when it runs as root; Playwright's
own browser download is never used). Without it these tests skip, saying so; under ``CI=true`` they fail.
With ``GLOBESMS_SCREENSHOTS=DIR`` the inbox's screenshot is written there too (``make screenshots`` updates
the docs' ``docs/sandbox-inbox.png``).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import struct
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_dysmsapi20180501 import models as sms_models
from alibabacloud_dysmsapi20180501.client import Client as SdkClient
from alibabacloud_tea_openapi import models as openapi_models
from Tea.exceptions import TeaException

from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer

playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is in the dev extras: make install")

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
WAIT_MS = 10_000


def chromium_path() -> str:
    """The system Chromium's binary, else skip (fail under CI=true)."""
    for candidate in (os.environ.get("GLOBESMS_CHROMIUM", ""), *CHROMIUM_CANDIDATES):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    message = "Chromium is not installed: `make test` installs Debian's `chromium` when run as root"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs it: a missing browser is a broken build, not a skip
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=1.5, seed=11)) as server:
        yield server


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    yield opened
    context.close()


def sdk(emulator: EmulatorServer) -> SdkClient:
    config = openapi_models.Config(
        access_key_id="AKID", access_key_secret="SECRET", endpoint=f"127.0.0.1:{emulator.port}", protocol="HTTP"
    )
    return SdkClient(config)


def sdk_send(client: SdkClient, to: str, text: str, task_id: str) -> Any:
    request = sms_models.SendMessageToGlobeRequest(to=to, message=text, task_id=task_id)
    return client.send_message_to_globe(request).body


THREE = [
    ("85291234567", "Your code is 4821. It expires in 10 minutes.", "GSM-7", 1),
    ("447911123456", "Your parcel 📦 is on its way 🚚", "UCS-2", 1),
    ("61412345678", "Weekly digest: " + "all systems normal; " * 8, "GSM-7", 2),
]


def send_three(emulator: EmulatorServer, campaign: str = "spring-promo") -> None:
    client = sdk(emulator)
    for to, text, _, _ in THREE:
        assert sdk_send(client, to, text, campaign).response_code == "OK"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_messages_appear_live_with_encoding_and_segments(page: Any, emulator: EmulatorServer, tmp_path: Path) -> None:
    page.goto(f"{emulator.url}/_emulator/ui")
    page.wait_for_selector("#stream-state.on")  # the event stream is open
    assert page.locator("li.message").count() == 0
    send_three(emulator)
    page.wait_for_function("document.querySelectorAll('li.message').length === 3")  # no reload
    for to, text, encoding, segments in THREE:
        row = page.locator(f"li.message[data-to='{to}']")
        assert row.locator(".text").inner_text() == text
        assert row.locator(".encoding").inner_text() == encoding
        assert row.get_attribute("data-segments") == str(segments)
        assert row.locator(".segments").inner_text() == f"{segments} segment{'s' if segments > 1 else ''}"
    assert page.locator("li.message .number").first.inner_text() == "+61412345678"  # newest first
    # receipts arrive (1.5 s): the same rows turn delivered without a reload
    page.wait_for_function(
        "[...document.querySelectorAll('li.message .status')].every(s => s.dataset.status === 'delivered')"
    )
    page.wait_for_function("document.getElementById('fig-delivered').textContent === '3'")
    shot = page.screenshot(full_page=False)
    assert png_size(shot) == (1280, 860)
    (tmp_path / "sandbox-inbox.png").write_bytes(shot)
    if os.environ.get("GLOBESMS_SCREENSHOTS"):
        Path(os.environ["GLOBESMS_SCREENSHOTS"], "sandbox-inbox.png").write_bytes(shot)


def test_a_numbers_thread_and_a_campaigns_view(page: Any, emulator: EmulatorServer) -> None:
    send_three(emulator, campaign="welcome")
    sdk_send(sdk(emulator), "85291234567", "Second message to the same phone", "other")
    page.goto(f"{emulator.url}/_emulator/ui")
    page.locator("li.message[data-to='85291234567'] .number").first.click()
    page.wait_for_url("**/numbers/85291234567")
    bubbles = page.locator("li.bubble .text")
    assert bubbles.all_inner_texts() == [THREE[0][1], "Second message to the same phone"]  # oldest at the top
    page.goto(f"{emulator.url}/_emulator/ui/campaigns")
    page.locator("a", has_text="welcome").click()
    page.wait_for_url("**/campaign?id=welcome")
    assert page.locator("#c-messages").inner_text() == "3"
    assert page.locator("#c-segments").inner_text() == "4"
    page.wait_for_function("document.getElementById('c-delivered').textContent === '3'")  # after the receipts
    assert page.locator("#c-sending").inner_text() == "0"
    assert page.locator("#c-rate").inner_text() == "100.0 %"
    assert "median" in page.locator("#c-time").inner_text()


def test_throttling_switched_on_in_the_page_throttles_the_next_sdk_call(page: Any, emulator: EmulatorServer) -> None:
    page.goto(f"{emulator.url}/_emulator/ui")
    page.wait_for_function("document.querySelector('[data-setting=qps]').value === '2000'")  # settings loaded
    # A click in the page's first half second is not applied (a window opened by another page and clicked at
    # once); a person's comes later.
    page.evaluate("window.dispatchEvent(new Event('focus')); document.getElementById('throttle-all').click()")
    page.wait_for_function("document.getElementById('control-status').textContent.includes('not changed')")
    assert page.locator("#throttle-all").is_checked() is False
    assert sdk_send(sdk(emulator), "85291234567", "hello", "t").response_code == "OK"
    page.wait_for_timeout(600)
    page.locator("#throttle-all").check()
    page.wait_for_function("document.getElementById('control-status').textContent === 'throttle is now 1'")
    with pytest.raises(TeaException) as refused:
        sdk_send(sdk(emulator), "85291234567", "hello", "t")
    assert refused.value.code == "Throttling.User"
    page.locator("#throttle-all").uncheck()
    page.wait_for_function("document.getElementById('control-status').textContent === 'throttle is now 0'")
    assert sdk_send(sdk(emulator), "85291234567", "hello", "t").response_code == "OK"
    page.locator("[data-setting=failure_rate]").fill("0.5")
    page.locator("[data-setting=failure_rate]").blur()  # a change event, as a person tabbing away makes
    page.wait_for_function("document.getElementById('control-status').textContent === 'failure_rate is now 0.5'")
    assert emulator.set_settings()["failure_rate"] == 0.5
    page.locator("[data-fault=hang]").fill("2")  # out of range: refused, and the page says so
    page.locator("[data-fault=hang]").blur()
    page.wait_for_selector("#control-status.error")
    assert emulator.set_faults()["hang"] == 0.0


def test_clearing_empties_the_list(page: Any, emulator: EmulatorServer) -> None:
    send_three(emulator)
    page.goto(f"{emulator.url}/_emulator/ui")
    assert page.locator("li.message").count() == 3
    page.once("dialog", lambda dialog: dialog.dismiss())  # "Delete every message?" - No: nothing happens
    page.locator("#clear").click()
    page.wait_for_timeout(500)
    assert len(emulator.messages()) == 3
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#clear").click()
    page.wait_for_function("document.querySelectorAll('li.message').length === 0")
    assert page.locator("#message-count").get_attribute("data-count") == "0"
    assert emulator.messages() == []


def test_filters_and_search(page: Any, emulator: EmulatorServer) -> None:
    send_three(emulator)
    page.goto(f"{emulator.url}/_emulator/ui")
    page.locator("input[name=q]").fill("parcel")
    page.locator(".filters button").click()
    page.wait_for_url("**q=parcel**")
    assert page.locator("li.message").count() == 1
    assert page.locator("li.message").get_attribute("data-to") == "447911123456"


def test_readable_on_a_narrow_window(browser: Any, emulator: EmulatorServer) -> None:
    send_three(emulator)
    context = browser.new_context(viewport={"width": 375, "height": 740})
    narrow = context.new_page()
    narrow.set_default_timeout(WAIT_MS)
    narrow.goto(f"{emulator.url}/_emulator/ui")
    narrow.wait_for_selector("#stream-state.on")  # scripted and live: the page as a person sees it
    overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a 375 px window"
    box = narrow.locator("li.message").first.bounding_box()
    assert box is not None
    assert box["width"] <= 375
    context.close()


def test_with_an_inspection_token_the_browser_logs_in(browser: Any) -> None:
    token = "sandbox-token-4f1c"
    with EmulatorServer(EmulatorConfig(delivery_delay=0.5, inspection_token=token)) as emulator:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{emulator.url}/_emulator/ui")
        page.wait_for_url("**/_emulator/ui/login")
        page.locator("input[name=token]").fill("wrong")
        page.locator("button[type=submit]").click()
        page.wait_for_selector(".error")
        page.locator("input[name=token]").fill(token)
        page.locator("button[type=submit]").click()
        page.wait_for_selector("#stream-state.on")  # the page and its event stream, on the cookie
        send_three(emulator)
        page.wait_for_function("document.querySelectorAll('li.message').length === 3")
        cookies = context.cookies()
        assert [c["name"] for c in cookies] == ["globesms_inspection"]
        assert token not in cookies[0]["value"]
        assert cookies[0]["httpOnly"] is True
        assert cookies[0]["sameSite"] == "Strict"
        context.close()


def framing(url: str) -> str:
    """A page that frames ``url``."""
    return f'<!doctype html><iframe src="{url}" width="1200" height="800"></iframe>'


@pytest.fixture
def other_origin() -> Iterator[Callable[[str], str]]:
    """``other_origin(html)`` serves ``html`` from another port of 127.0.0.1 (the same *site* to the browser,
    another origin: a developer's local dev server) and returns its URL; a form posted there lands on it too."""
    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # where the form lands if the browser follows it
            self.do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(html: str) -> str:
        served["/"] = html.encode()
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    server.shutdown()


def test_framed_by_another_origin_the_controls_are_off(
    page: Any, emulator: EmulatorServer, other_origin: Callable[[str], str]
) -> None:
    """A page that frames the inbox cannot lure a click into switching faults or clearing it (clickjacking);
    Airflow's UI, which frames it too, shows the inbox and the settings, read-only."""
    send_three(emulator)
    page.goto(other_origin(framing(f"{emulator.url}/_emulator/ui")))
    inbox = page.frame_locator("iframe")
    inbox.locator("li.message").nth(2).wait_for()
    for control in ("#throttle-all", "#clear", "[data-fault=throttle]", "[data-setting=qps]"):
        assert inbox.locator(control).is_disabled(), control
    assert "its own tab" in inbox.locator("#control-status").inner_text()
    page.wait_for_function(
        "() => document.querySelector('iframe').contentDocument === null"  # cross-origin: not readable
    )
    playwright.expect(inbox.locator("[data-setting=qps]")).to_have_value("2000")  # shown
    inbox.locator("#throttle-all").click(force=True)  # a forced click on a disabled box changes nothing
    settings = json.loads(urllib.request.urlopen(f"{emulator.url}/_emulator/settings", timeout=10).read())
    assert settings["faults"]["throttle"] == 0
    page.goto(f"{emulator.url}/_emulator/ui")  # its own tab: the controls work
    assert page.locator("#throttle-all").is_enabled()
    assert page.locator("#clear").is_enabled()


# --- issue 22: same-origin changes only, any number of tabs ---------------------------------------------------

HOSTILE = """<!doctype html><script>
const target = "{emulator}";
async function attack() {{
  const tries = [
    ["POST", "/_emulator/faults", "text/plain"],  // a CORS "simple request": no preflight
    ["POST", "/_emulator/faults", undefined],
    ["PATCH", "/_emulator/faults", "application/json"],  // preflighted: the browser asks first
    ["DELETE", "/_emulator/messages", undefined],
  ];
  for (const [method, path, type] of tries) {{
    const headers = type ? {{"content-type": type}} : {{}};
    const body = method === "DELETE" ? undefined : '{{"throttle": 1}}';
    try {{ await fetch(target + path, {{method, headers, body, mode: "no-cors"}}); }} catch (e) {{}}
  }}
  const form = document.createElement("form");  // a form post: no script needed at all
  form.method = "POST"; form.action = target + "/_emulator/faults"; form.enctype = "text/plain";
  const field = document.createElement("input"); field.name = '{{"throttle": 1, "x": "'; field.value = '"}}';
  form.append(field); document.body.append(form);
  document.title = "tried"; form.submit();
}}
attack();
</script>"""


def test_a_page_on_another_loopback_port_cannot_change_a_fault(
    page: Any, emulator: EmulatorServer, other_origin: Callable[[str], str]
) -> None:
    send_three(emulator)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(f"{request.method} {request.url}"))
    page.goto(other_origin(HOSTILE.format(emulator=emulator.url)))
    page.wait_for_timeout(2000)  # every try made, and the form posted
    assert any(r.startswith("POST") and "/_emulator/faults" in r for r in requests), requests  # it did try
    assert emulator.set_faults()["throttle"] == 0
    assert len(emulator.messages()) == 3
    own = page.context.new_page()  # the emulator's own page still changes it
    own.goto(f"{emulator.url}/_emulator/ui")
    own.wait_for_timeout(600)
    own.locator("#throttle-all").check()
    own.wait_for_function("document.getElementById('control-status').textContent === 'throttle is now 1'")
    assert emulator.set_faults()["throttle"] == 1


def test_ten_tabs_all_load_and_all_show_a_new_message(browser: Any, emulator: EmulatorServer) -> None:
    """Each tab held an event stream: browsers allow six connections to a host, so the seventh did not load
    and the others stopped updating. Polls hold none."""
    context = browser.new_context()
    tabs = [context.new_page() for _ in range(10)]
    for tab in tabs:
        tab.set_default_timeout(WAIT_MS)
        tab.goto(f"{emulator.url}/_emulator/ui")
    for tab in tabs:
        tab.wait_for_selector("#stream-state.on")
    assert sdk_send(sdk(emulator), "85291234567", "Tab test: one for all", "tabs").response_code == "OK"
    for tab in tabs:
        tab.wait_for_function("document.querySelector('li.message p.text')?.textContent === 'Tab test: one for all'")
    tabs.append(context.new_page())  # and an eleventh still loads
    tabs[-1].goto(f"{emulator.url}/_emulator/ui", timeout=WAIT_MS)
    assert tabs[-1].locator("li.message").count() == 1
    context.close()
