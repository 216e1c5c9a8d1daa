"""The inbox's text search reads a trigram index (issue 22): the same answers as a substring scan, a page
read from the index's newest end, counts that stop at 1,000, and an index kept true by SQLite itself."""

from __future__ import annotations

import sqlite3
import string
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer, search
from airflow_provider_globesms.emulator import store as store_module
from airflow_provider_globesms.emulator.store import MessageFilter, MessageStore
from tests.test_emulator_deadlines import _message
from tests.test_sandbox_inbox import fetch

WORDS = st.text(alphabet=string.ascii_letters + " %_\"'éüß漢字😀", min_size=0, max_size=16)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(WORDS, min_size=1, max_size=15), needle=WORDS.filter(lambda t: len(t) >= search.MIN_TERM))
def test_the_index_finds_every_text_holding_the_term(texts: list[str], needle: str) -> None:
    """Every text that holds the term as written is found, newest first; none that does not hold it in any
    case is; for ASCII the answer is exactly the case-blind substring scan's."""
    store = MessageStore()
    for n, text in enumerate(texts):
        store.add(_message(n, message=text))
    found = [m.message_id for m in store.find(MessageFilter(text=needle), limit=1000, newest_first=True)]
    holding = {f"m{n}" for n, text in enumerate(texts) if needle in text}
    assert holding <= set(found)
    assert all(needle.casefold() in texts[int(m[1:])].casefold() for m in found)
    assert found == sorted(found, key=lambda m: -int(m[1:]))
    if needle.isascii() and all(t.isascii() for t in texts):
        assert set(found) == {f"m{n}" for n, text in enumerate(texts) if needle.lower() in text.lower()}
    assert store.count(MessageFilter(text=needle)) == len(found)


def test_a_count_stops_at_its_cap_and_the_page_says_so() -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        store = emulator.gateway.store
        store.add_many([_message(n, message=f"hello {n}") for n in range(1500)])
        assert store.count(MessageFilter(text="hello"), up_to=search.COUNT_CAP + 1) == search.COUNT_CAP + 1
        assert store.count(MessageFilter(text="hello")) == 1500
        page = fetch(f"{emulator.url}/_emulator/ui?q=hello&part=live").read().decode()
        assert "1,000+ messages, newest 200 shown" in page
        short = fetch(f"{emulator.url}/_emulator/ui?q=lo&part=live").read().decode()
        assert "looks at the newest 10,000 messages" in short


def plan(store: MessageStore, match: MessageFilter) -> str:
    query, args = store._text_query(match, "1", newest_first=True)
    return " ".join(str(row[3]) for row in store._db.execute(f"EXPLAIN QUERY PLAN {query} LIMIT 200", args))


def test_a_search_reads_the_index_from_its_newest_end() -> None:
    """The text index in its own order (no sort of the matches); one number's messages by their index."""
    store = MessageStore()
    store.add_many([_message(n, message=f"parcel {n} on its way") for n in range(50)])
    for match in (MessageFilter(text="parcel"), MessageFilter(text="parcel", status="delivered", now=10.0)):
        found = plan(store, match)
        assert "VIRTUAL TABLE" in found
        assert "TEMP B-TREE" not in found, found
    number = plan(store, MessageFilter(text="parcel", to="85291234567"))
    assert "messages_number" in number
    assert "VIRTUAL TABLE" not in number


def test_a_rare_term_of_common_pieces_is_looked_up_by_its_rarest() -> None:
    store = MessageStore()
    store.add_many([_message(n, message=f"Your code is {n % 997:04d}. Thanks") for n in range(3000)])
    lookup = search.rarest(store._db, "code is 0042")
    assert " AND " in lookup
    assert "code" not in lookup  # every message has it
    expected = {f"m{n}" for n in range(3000) if n % 997 == 42}
    assert {m.message_id for m in store.find(MessageFilter(text="code is 0042"), limit=1000)} == expected


def test_clearing_empties_the_index_and_a_file_from_before_gets_one(tmp_path: Path) -> None:
    store = MessageStore()
    store.add_many([_message(n, message="parcel on its way") for n in range(5)])
    assert store.count(MessageFilter(text="parcel")) == 5
    store.clear()
    assert store.count(MessageFilter(text="parcel")) == 0
    store.add(_message(9, message="another parcel"))
    assert [m.message_id for m in store.find(MessageFilter(text="parcel"))] == ["m9"]

    path = tmp_path / "old.sqlite3"
    old = MessageStore(str(path))
    old.add_many([_message(n, message=f"receipt {n}") for n in range(3)])
    old.close()
    with sqlite3.connect(path) as db:  # as a version before the index wrote it
        db.executescript("DROP TRIGGER messages_indexed; DROP TABLE messages_text;")
    reopened = MessageStore(str(path))
    assert reopened.count(MessageFilter(text="receipt")) == 3
    reopened.close()


def test_a_pages_search_and_its_count_share_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The list of a search and its count read within one ``BUDGET`` between them (a page cost two budgets,
    125 ms for an absent term of common pieces at 200,000 messages); outside a page each search has its own."""
    clock = [0.0]
    monkeypatch.setattr(store_module, "time", SimpleNamespace(perf_counter=lambda: clock[0], time=time.time))
    store = MessageStore()
    store.add_many([_message(n, message=f"hello {n}") for n in range(3000)])
    match = MessageFilter(text="hello")
    with store.one_search_budget():
        assert len(store.find(match, limit=200, newest_first=True)) == 200
        assert not store.search_cut
        clock[0] += search.BUDGET * 1.01  # the list took the whole budget: the count gets none
        assert store.count(match) < 3000
        assert store.search_cut
    assert store.count(match) == 3000  # a budget of its own, from the clock's now
    assert not store.search_cut
