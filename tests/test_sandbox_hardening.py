"""The sandbox inbox against a hostile or careless world: DNS rebinding, junk parameters, other digit scripts,
a large store, and ``sandbox_url`` values that would give broken or unsafe links.

The figures the inbox reads every second are running totals: a Hypothesis test checks them against a count
of the table after any mix of writes, refused rows, clears and reopened files.
"""

from __future__ import annotations

import itertools
import json
import socket
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms import links
from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.client.rules.models import DeliveryStatus
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_globesms.emulator.gateway import Gateway
from airflow_provider_globesms.emulator.inbox import campaign_summary, wire_number
from airflow_provider_globesms.emulator.store import MessageFilter, MessageStore
from airflow_provider_globesms.emulator.totals import CAMPAIGN_FIELDS, CAMPAIGN_IN_FLIGHT, IN_FLIGHT
from airflow_provider_globesms.links import sandbox_url, sandbox_url_problem
from tests.test_emulator_deadlines import _message
from tests.test_sandbox_inbox import fetch


def faults(emulator: EmulatorServer) -> dict[str, object]:
    settings = json.loads(fetch(f"{emulator.url}/_emulator/settings").read())
    return dict(settings["faults"])


# --- DNS rebinding: the inspection API answers loopback names only ----------------------------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("rebind.attacker.example", 421),
        ("rebind.attacker.example:8787", 421),
        ("127.0.0.1.nip.io", 421),
        ("[::1]evil.example", 421),
        ("127.0.0.1:80@evil.example", 421),
        ("[::1", 421),
        ("127.0.0.1 evil.example", 421),
        ("localhost.:8787", 200),
        ("LOCALHOST", 200),
        ("127.0.0.1", 200),
        ("localhost:1234", 200),
        ("[::1]:8787", 200),
        ("dev.localhost", 200),  # browsers resolve *.localhost themselves, never through DNS
    ],
)
def test_the_inspection_api_answers_only_requests_addressed_to_this_machine(host: str, status: int) -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url).send_message("+85291234567", "hi")
        for path in ("/_emulator/messages", "/_emulator/ui", "/_emulator/ui/changes", "/_emulator/settings"):
            reply = fetch(emulator.url + path, headers={"Host": host})
            assert reply.status == status, (host, path)
            if status == 421:
                assert b"85291234567" not in reply.read()
        changed = fetch(
            f"{emulator.url}/_emulator/faults",
            method="PATCH",
            data=json.dumps({"throttle": 1}).encode(),
            headers={"Host": host, "content-type": "application/json"},
        )
        assert changed.status == status
        assert faults(emulator)["throttle"] == (1 if status == 200 else 0)


def test_two_host_headers_are_refused_and_a_proxys_name_can_be_allowed() -> None:
    with EmulatorServer(EmulatorConfig(allowed_hosts=("sandbox.team",))) as emulator:
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as conn:
            conn.sendall(b"GET /_emulator/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 421")
        assert fetch(f"{emulator.url}/_emulator/messages", headers={"Host": "sandbox.team:443"}).status == 200
        assert fetch(f"{emulator.url}/_emulator/messages", headers={"Host": "other.team"}).status == 421


def test_the_api_itself_is_still_reached_by_any_name() -> None:
    """Signed calls prove who they are; SDKs configured with a host name in a hosts file keep working."""
    with EmulatorServer(EmulatorConfig()) as emulator:
        reply = fetch(f"{emulator.url}/", method="POST", data=b"", headers={"Host": "dysmsapi.example"})
        assert reply.status != 421


# --- junk parameters are a 4xx, never a 500 ---------------------------------------------------------------


@pytest.mark.parametrize("offset", ["9223372036854775808", "99999999999999999999999", "-1", "1e3"])
def test_an_offset_sqlite_cannot_hold_is_refused(offset: str) -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        assert fetch(f"{emulator.url}/_emulator/messages?offset={offset}").status == 422


def test_the_largest_offset_sqlite_holds_is_answered() -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        reply = fetch(f"{emulator.url}/_emulator/messages?offset={2**63 - 1}")
        assert (reply.status, json.loads(reply.read())["messages"]) == (200, [])


@pytest.mark.parametrize("seconds", ["1e999", "Infinity", "NaN", "-1"])
def test_a_hang_that_is_not_a_finite_number_of_seconds_is_refused(seconds: str) -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        body = f'{{"hang_seconds": "{seconds}"}}'.encode()
        reply = fetch(f"{emulator.url}/_emulator/faults", method="PATCH", data=body, headers=JSON)
        assert reply.status in (400, 422)
        assert faults(emulator)["hang_seconds"] == 30


JSON = {"content-type": "application/json"}


# --- numbers typed in other digit scripts ----------------------------------------------------------------


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize("table", [FULL_WIDTH, ARABIC_INDIC])
def test_a_number_in_another_digit_script_finds_its_messages(table: dict[int, str]) -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url).send_message("+85291234567", "hi")
        for typed in ("+852 9123 4567".translate(table), "85291234567".translate(table), "852-9123-4567x"):
            assert wire_number(typed).isascii()
        typed = "85291234567".translate(table)
        thread = fetch(f"{emulator.url}/_emulator/ui/numbers/{quote(typed)}").read().decode()
        assert 'data-count="1"' in thread
        listing = fetch(f"{emulator.url}/_emulator/ui?part=live&to=%2B{quote(typed)}").read().decode()
        assert listing.count('class="message"') == 1


# --- a campaign's figures -------------------------------------------------------------------------------


def test_time_to_deliver_counts_delivered_receipts_and_p95_is_the_nearest_rank() -> None:
    gateway = Gateway(EmulatorConfig(), clock=lambda: 1000.0)
    n = itertools.count()
    for delay in range(1, 21):  # 20 delivered, 1 s to 20 s
        gateway.store.add(_message(next(n), task_id="c", submitted_at=10.0, final_at=10.0 + delay))
    for _ in range(5):  # failures are quick and must not pull the time to deliver down
        gateway.store.add(_message(next(n), task_id="c", submitted_at=10.0, final_at=10.1, final_status=2))
    gateway.store.add(_message(next(n), task_id="c", submitted_at=990.0, final_at=2000.0))  # still sending
    summary = campaign_summary(gateway, "c")
    assert summary is not None
    assert (summary["delivered"], summary["failed"], summary["sending"]) == (20, 5, 1)
    assert summary["median_seconds"] == 10.5
    assert summary["p95_seconds"] == 19.0  # nearest rank: the 19th of 20, not the largest
    assert summary["delivery_rate"] == 0.8


# --- running totals equal a count of the table -----------------------------------------------------------

TASKS = st.sampled_from([None, "", "a", "b/2", "50%"])
ROW = st.fixed_dictionaries(
    {
        "task_id": TASKS,
        "segments": st.integers(1, 7),
        "submitted_at": st.floats(0, 100),
        "delay": st.floats(0, 50),
        "final_status": st.sampled_from([DeliveryStatus.DELIVERED, DeliveryStatus.FAILED]),
        "poison": st.sampled_from([None, None, None, None, {"validity_period": 10**30}]),
    }
)
STEP = st.one_of(ROW, st.just("clear"), st.just("reopen"))


def counted(db_path: Path, now: float) -> tuple[dict[str, int], list[tuple[object, ...]]]:
    """What the table holds, counted the slow way: the formulas the totals replace."""
    db = sqlite3.connect(db_path)
    by_status = "SUM(final_at > ?), SUM(final_at <= ? AND final_status = 1), SUM(final_at <= ? AND final_status = 2)"
    totals = f"SELECT {by_status}, COALESCE(SUM(segments), 0), COUNT(*) FROM messages"  # noqa: S608 - constants
    row = db.execute(totals, (now,) * 3).fetchone()
    campaigns = db.execute(
        f"SELECT COALESCE(task_id, ''), COUNT(*), SUM(segments), {by_status}, MIN(submitted_at), "  # noqa: S608
        "MAX(submitted_at) FROM messages GROUP BY 1 ORDER BY 1",
        (now,) * 3,
    ).fetchall()
    db.close()
    names = ("sending", "delivered", "failed", "segments", "total")
    return dict(zip(names, (value or 0 for value in row), strict=True)), campaigns


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(STEP, max_size=40),
    flush_every=st.integers(1, 9),
    moments=st.lists(st.floats(0, 160), min_size=1, max_size=4),
)
def test_running_totals_equal_a_count_of_the_table(
    tmp_path_factory: pytest.TempPathFactory, steps: list[object], flush_every: int, moments: list[float]
) -> None:
    db_path = tmp_path_factory.mktemp("totals") / "messages.db"
    store = MessageStore(str(db_path), flush_every=flush_every)
    for n, step in enumerate(steps):
        if step == "clear":
            store.clear()
        elif step == "reopen":  # an emulator started again on its --db file adds up what is there
            store.close()
            store = MessageStore(str(db_path), flush_every=flush_every)
        else:
            assert isinstance(step, dict)
            fields = {k: v for k, v in step.items() if k not in ("delay", "poison")}
            fields["final_at"] = step["submitted_at"] + step["delay"]
            store.add(_message(n, **fields, **(step["poison"] or {})))
    for now in moments:
        store.flush()
        expected, campaigns = counted(db_path, now)
        assert {**store.status_counts(now), "total": store.count()} == expected
        got = sorted(
            tuple(c[name] for name in CAMPAIGN_FIELDS[:6]) + (c["first_at"], c["last_at"])  # noqa: RUF005
            for c in store.campaigns(now, limit=1000)
        )
        assert got == [tuple(row) for row in campaigns]
        for campaign in campaigns:
            assert store.campaigns(now, limit=1, task_id=str(campaign[0]))[0]["messages"] == campaign[1]
    store.close()


def test_totals_stay_true_with_a_second_writer_and_for_a_file_from_before_they_existed(tmp_path: Path) -> None:
    db_path = tmp_path / "messages.db"
    first = MessageStore(str(db_path), flush_every=1)
    for n in range(5):
        first.add(_message(n, task_id="a", final_at=2.0))
    second = MessageStore(str(db_path), flush_every=1)  # another emulator on the same --db file
    for n in range(5, 12):
        second.add(_message(n, task_id="b", final_at=90.0))
    for store in (first, second):
        assert {**store.status_counts(50.0), "total": store.count()} == counted(db_path, 50.0)[0]
        by_campaign = {c["task_id"]: (c["messages"], c["sending"], c["delivered"]) for c in store.campaigns(50.0)}
        assert by_campaign == {"a": (5, 0, 5), "b": (7, 7, 0)}
    first.close()
    second.close()
    raw = sqlite3.connect(db_path)  # totals that stopped being kept: added up anew when the trigger is made
    raw.executescript("DROP TRIGGER messages_counted; INSERT INTO messages SELECT * FROM messages LIMIT 0;")
    raw.execute("UPDATE status_totals SET messages = messages + 100")
    raw.commit()
    raw.close()
    reopened = MessageStore(str(db_path))
    expected, campaigns = counted(db_path, 50.0)
    assert {**reopened.status_counts(50.0), "total": reopened.count()} == expected
    assert len(reopened.campaigns(50.0)) == len(campaigns) == 2
    reopened.add(_message(99, task_id="a", final_at=1.0))
    assert reopened.count() == 13
    reopened.close()
    raw = sqlite3.connect(db_path)  # a file from before the totals existed
    raw.executescript("DROP TRIGGER messages_counted; DROP TABLE status_totals; DROP TABLE campaign_totals;")
    raw.close()
    older = MessageStore(str(db_path))
    assert {**older.status_counts(50.0), "total": older.count()} == counted(db_path, 50.0)[0]
    assert older.count() == 13
    older.close()


# --- the inbox's reads are ranges of an index, never a scan or a sort of every message --------------------


def plan(store: MessageStore, match: MessageFilter, newest_first: bool = True) -> str:
    clause, args = match.where()
    order = "DESC" if newest_first else ""
    query = f"SELECT * FROM messages {clause} ORDER BY submitted_at {order}, rowid {order} LIMIT 200"  # noqa: S608
    return " / ".join(str(row[-1]) for row in store._db.execute(f"EXPLAIN QUERY PLAN {query}", args))


@pytest.mark.parametrize(
    "match",
    [MessageFilter(), MessageFilter(to="85291234567"), MessageFilter(task_id="promo"), MessageFilter(task_id="")],
)
def test_the_inbox_lists_read_an_index_in_order(match: MessageFilter) -> None:
    store = MessageStore()
    found = plan(store, match)
    assert "USING INDEX" in found or "USING COVERING INDEX" in found, found
    assert "TEMP B-TREE" not in found, found  # no sort of the matching rows
    assert found.startswith("SCAN messages USING INDEX messages_submitted") or "SEARCH" in found, found


def test_the_figures_and_a_campaigns_receipts_read_ranges() -> None:
    store = MessageStore()
    for query, args in [
        (IN_FLIGHT, (1,)),
        (CAMPAIGN_IN_FLIGHT, ("c", 1, 5.0)),
        (
            "SELECT final_at - submitted_at FROM messages WHERE COALESCE(task_id, '') = ? AND final_status = ? "
            "AND final_at <= ? ORDER BY final_at DESC LIMIT ?",
            ("c", 1, 5.0, 10),
        ),
    ]:
        found = " / ".join(str(row[-1]) for row in store._db.execute(f"EXPLAIN QUERY PLAN {query}", args))
        assert found.startswith("SEARCH messages USING"), found


# --- sandbox_url: only an address the inbox can be served at --------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)//",
        "ftp://127.0.0.1:8787",
        "127.0.0.1:8787",
        "http://",
        "http://127.0.0.1:8787/?token=secret",
        "http://127.0.0.1:8787/#frag",
        "http://127.0.0.1:8787/sandbox/",
        "http://user:secret@127.0.0.1:8787",
        "http://127.0.0.1:port",
        "http://127.0.0.1:8787?",
        "http://127.0.0.1:8787#",
        "http://127.0.0.1:87\n87",
        'http://127.0.0.1"onmouseover=x:8787',
        "http://127.0.0.1:0",
        "http://@127.0.0.1:8787",
        "http://127.0.0.1:99999",
    ],
)
def test_a_sandbox_url_that_would_give_broken_or_unsafe_links_is_ignored(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert sandbox_url_problem(url)
    links._warn_once.cache_clear()
    monkeypatch.setenv("AIRFLOW__GLOBESMS__SANDBOX_URL", url)
    assert sandbox_url() is None
    assert sandbox_url() is None
    assert caplog.text.count("sandbox_url is ignored") == 1  # said once, not at every link
    assert "secret" not in caplog.text


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
        ("http://127.0.0.1:8787/", "http://127.0.0.1:8787"),
        ("https://sandbox.internal", "https://sandbox.internal"),
        (" http://[::1]:8787// ", "http://[::1]:8787"),
    ],
)
def test_a_sandbox_url_names_scheme_host_and_port(url: str, base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__GLOBESMS__SANDBOX_URL", url)
    assert sandbox_url() == base
