"""The sandbox's state changes come from its own pages only (issue 22), whatever FastAPI's version: checked
over raw HTTP, the way a browser's requests arrive (Origin and Sec-Fetch-Site as browsers send them), so that
a body without a JSON content type (a CORS "simple request") never reaches a route from another origin."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from tests.test_sandbox_inbox import fetch


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


def throttle(emulator: EmulatorServer, headers: dict[str, str], method: str = "PATCH") -> int:
    """Try to switch throttling on; the status; throttling is switched back off for the next try."""
    reply = fetch(f"{emulator.url}/_emulator/faults", method=method, data=b'{"throttle": 1}', headers=headers)
    emulator.set_faults(throttle=0)
    return int(reply.status)


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://127.0.0.1:9"},  # another port of this machine: the same *site* to a browser
        {"origin": "http://localhost:{port}"},  # another name is another origin
        {"origin": "https://127.0.0.1"},  # another scheme on its default port
        {"origin": "null", "sec-fetch-site": "cross-site"},  # a sandboxed frame of a hostile page
        {"origin": "null"},
        {"origin": "http://127.0.0.1:{port}/path"},  # not an origin
        {"origin": "http://evil@127.0.0.1:{port}"},
        {"sec-fetch-site": "same-site"},  # a browser that kept its Origin to itself, from another port
        {"sec-fetch-site": "cross-site"},
    ],
)
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json"])
def test_a_change_from_another_origin_is_refused(
    emulator: EmulatorServer, headers: dict[str, str], content_type: str | None
) -> None:
    sent = {name: value.format(port=emulator.port) for name, value in headers.items()}
    if content_type:
        sent["content-type"] = content_type
    assert throttle(emulator, sent) == 403
    assert fetch(f"{emulator.url}/_emulator/messages", method="DELETE", headers=sent).status == 403
    assert emulator.set_faults()["throttle"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},  # tests, the CLI, SDKs: no Origin
        {"origin": "http://127.0.0.1:{port}"},  # the emulator's own page
        {"origin": "HTTP://127.0.0.1:{port}", "sec-fetch-site": "same-origin"},
        {"origin": "null", "sec-fetch-site": "same-origin"},  # its own form under a strict referrer policy
    ],
)
def test_a_change_from_the_emulators_own_pages_or_a_client_is_applied(
    emulator: EmulatorServer, headers: dict[str, str]
) -> None:
    sent = {name: value.format(port=emulator.port) for name, value in headers.items()}
    sent["content-type"] = "application/json"
    assert throttle(emulator, sent) == 200


def test_there_is_no_post_twin_of_a_patch_route(emulator: EmulatorServer) -> None:
    assert throttle(emulator, {"content-type": "application/json"}, method="POST") == 405
    assert throttle(emulator, {}, method="POST") == 405


@settings(max_examples=200, deadline=None)
@given(
    origin=st.one_of(
        st.none(),
        st.text(max_size=40),
        st.builds(
            "{}://{}:{}".format,
            st.sampled_from(["http", "https", "ftp", "HTTP", ""]),
            st.sampled_from(["127.0.0.1", "localhost", "[::1]", "127.0.0.1.", "127.0.0.2"]),
            st.integers(0, 70000),
        ),
    ),
    site=st.sampled_from([None, "same-origin", "same-site", "cross-site", "none"]),
)
def test_only_the_emulators_own_origin_changes_anything(
    emulator: EmulatorServer, origin: str | None, site: str | None
) -> None:
    """Generated Origin and Sec-Fetch-Site values: a change is applied only when the request names no origin
    and no site (a client), or names the emulator's own origin (or null with same-origin, its own form)."""
    headers = {"content-type": "application/json"}
    clean = origin is None or all(32 <= ord(c) < 127 for c in origin)
    if not clean:
        return  # not a header value an HTTP client can send
    if origin is not None:
        headers["origin"] = origin
    if site is not None:
        headers["sec-fetch-site"] = site
    applied = throttle(emulator, headers) == 200
    written = re.fullmatch(r"https?://127\.0\.0\.1\.?:(\d+)", (origin or "").strip().lower())
    mine = written is not None and int(written[1]) == emulator.port  # the scheme cannot tell: one port, one server
    client = origin is None and site in (None, "same-origin")  # no browser, or one that says it is this origin
    allowed = client or mine or (origin == "null" and site == "same-origin")
    assert applied == allowed, (origin, site)
    assert json.loads(fetch(f"{emulator.url}/_emulator/faults").read())["throttle"] == 0
