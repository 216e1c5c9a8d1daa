"""Pushed receipts in the core: a push's body read (or refused whole), kept durably per campaign, and applied
to a campaign's tracker so that duplicates count once and an older receipt never overwrites a newer one."""

from __future__ import annotations

import itertools
import json
import os
import stat
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client.receipts.push_store import PushStore, campaign_folder
from airflow_provider_globesms.client.receipts.pushed import PushedReceipt, PushRefused, parse_push, read_receipt
from airflow_provider_globesms.client.receipts.tracker import DeliveryTracker

T0 = datetime(2026, 12, 8, 3, 0, tzinfo=timezone(timedelta(hours=8)))


def record(n: int, status: str = "1", task: str = "camp", seconds: int = 30, *, snake: bool = False) -> dict[str, str]:
    sent, received = T0 + timedelta(seconds=n), T0 + timedelta(seconds=n + seconds)
    fields = {
        "To": f"8526{n:07d}",
        "Status": status,
        "MessageId": f"9000{n:09d}",
        "SmsSize": "2",
        "TaskId": task,
        "SendDate": format_datetime(sent),
        "ReceiveDate": format_datetime(received),
        "ErrorCode": "DELIVERED" if status == "1" else "UNDELIV",
        "ErrorDescription": "success" if status == "1" else "not delivered",
    }
    if snake:
        names = {"To": "to", "Status": "status", "MessageId": "message_id", "SendDate": "send_date"}
        names.update(ReceiveDate="receive_date", ErrorCode="error_code", ErrorDescription="error_description")
        names.update(TaskId="task_id", SmsSize="sms_size")
        fields = {names[k]: v for k, v in fields.items()}
    return fields


# --- reading a push ----------------------------------------------------------------------------------


def test_both_spellings_read_alike() -> None:
    camel, snake = (parse_push(json.dumps([record(1, snake=s)]).encode()).receipts[0] for s in (False, True))
    assert camel == snake
    assert (camel.to, camel.status, camel.segments, camel.task_id) == ("85260000001", "delivered", 2, "camp")
    assert camel.receive_ts is not None
    assert camel.send_ts is not None
    assert camel.receive_ts - camel.send_ts == 30


def test_unreadable_records_become_dead_letters_with_reasons_and_the_rest_are_kept() -> None:
    body = [record(1), {"To": "85212345678"}, 7, record(2, status="9"), {"MessageId": "1", "To": "+1-x"}, record(3)]
    parsed = parse_push(json.dumps(body).encode())
    assert [r.message_id for r in parsed.receipts] == ["9000000000001", "9000000000003"]
    assert [(d.index, d.reason.split()[0]) for d in parsed.dead] == [
        (1, "MessageId"),
        (2, "not"),
        (3, "Status"),
        (4, "To"),
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{}", 400),
        (b"not json", 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (b"[" + b",".join([b"{}"] * 100_000) + b"]", 413),
        (b"[" + b" " * (5 * 1024 * 1024) + b"]", 413),
    ],
    ids=["object", "garbage", "deep", "100k-records", "oversized"],
)
def test_a_body_that_cannot_be_taken_is_refused_whole(body: bytes, status: int) -> None:
    with pytest.raises(PushRefused) as refused:
        parse_push(body)
    assert refused.value.status == status
    assert "{" not in refused.value.reason  # says why, never quotes the body


def test_a_nested_value_is_a_dead_letter_not_a_recursion() -> None:
    deep = {"MessageId": "1", "To": "85212345678", "Status": "1", "x": [[[[[[1]]]]]]}
    parsed = parse_push(json.dumps([deep, record(4)]).encode())
    assert len(parsed.receipts) == 1
    assert parsed.dead[0].reason == "not an object of plain values"


@given(st.dictionaries(st.sampled_from(["To", "Status", "MessageId", "SendDate", "to", "x"]), st.text(max_size=30)))
def test_any_record_is_read_or_refused_with_a_reason(fields: dict[str, str]) -> None:
    reason = ""
    try:
        receipt = read_receipt(fields)
    except ValueError as exc:
        reason = str(exc)
    if reason:
        assert reason.split()[0] in {"MessageId", "To", "Status"}
        return
    assert receipt.to.isdigit()
    assert receipt.message_id
    assert receipt.status in {"delivered", "failed", "expired", "sending"}


# --- the store ---------------------------------------------------------------------------------------


def test_a_push_is_stored_per_campaign_owner_only_and_read_back(tmp_path: Path) -> None:
    store = PushStore(tmp_path)
    parsed = parse_push(json.dumps([record(1), record(2, task="other"), record(3), {"To": "1"}]).encode())
    assert store.write(parsed.receipts, parsed.dead, source="127.0.0.1") == 3
    assert [r.message_id for _, batch in store.receipts("camp") for r in batch] == ["9000000000001", "9000000000003"]
    assert [r.message_id for _, batch in store.receipts("other") for r in batch] == ["9000000000002"]
    assert store.dead_letters()[0]["records"][0]["reason"] == "MessageId is missing or not an id"
    for path in tmp_path.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert campaign_folder("camp") != campaign_folder("camp ")
    assert campaign_folder("") == "none"


def test_a_partial_write_is_never_read(tmp_path: Path) -> None:
    store = PushStore(tmp_path)
    store.write(parse_push(json.dumps([record(1)]).encode()).receipts)
    folder = tmp_path / "receipts" / campaign_folder("camp")
    (folder / ".00000000000000000001-0123456789abcdef0123456789abcdef.json.partial").write_text("[[")
    (folder / "junk.json").write_text("[[")
    assert len(store.names("camp")) == 1


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    store = PushStore(tmp_path)

    def push(start: int) -> None:
        for n in range(start, start + 200, 10):
            store.write(parse_push(json.dumps([record(n + k) for k in range(10)]).encode()).receipts)

    threads = [threading.Thread(target=push, args=(s,)) for s in range(0, 1600, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [r.message_id for _, batch in store.receipts("camp") for r in batch]
    assert len(ids) == len(set(ids)) == 1600


def test_a_store_that_cannot_write_raises_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "receipts").write_text("a file where a folder should be")
    store = PushStore(tmp_path)
    with pytest.raises(NotADirectoryError):
        store.write(parse_push(json.dumps([record(1)]).encode()).receipts)
    assert store.names("camp") == []


# --- the tracker -------------------------------------------------------------------------------------


def tracker_with(tmp_path: Path, count: int, name: str = "t") -> DeliveryTracker:
    tracker = DeliveryTracker(tmp_path / f"{name}.sqlite3")
    lines = [
        {"message_id": f"9000{n:09d}", "to": f"+8526{n:07d}", "campaign_id": "camp", "row": n} for n in range(count)
    ]
    tracker.load(lines, "source")
    return tracker


def test_pushed_receipts_settle_the_campaign_without_polling(tmp_path: Path) -> None:
    store = PushStore(tmp_path / "push")
    store.write(parse_push(json.dumps([record(n, "1" if n % 4 else "2") for n in range(40)]).encode()).receipts)
    with tracker_with(tmp_path, 40) as tracker:
        assert tracker.campaigns() == ["camp"]
        assert tracker.read_pushed(store, ["camp"]).became_final == 40
        summary = tracker.summary()
        assert (summary["delivered"], summary["failed"], summary["pending"], summary["receipts_pushed"]) == (
            30,
            10,
            0,
            40,
        )
        assert summary["p50_seconds_to_deliver"] == 30.0
        assert tracker.read_pushed(store, ["camp"]).objects == 0  # each object is read once


def test_an_older_receipt_never_overwrites_a_newer_final_state(tmp_path: Path) -> None:
    newer, older = (
        PushedReceipt("9000000000001", "85260000001", "delivered", receive_ts=200.0),
        PushedReceipt("9000000000001", "85260000001", "failed", error_code="X", receive_ts=100.0),
    )
    for order in ([newer, older], [older, newer]):
        with tracker_with(tmp_path, 2, name=str(len(order) * id(order[0]))) as tracker:
            for receipt in order:
                tracker.apply_pushed([receipt])
            assert [r["delivery_status"] for r in tracker.records()][1] == "delivered"


def test_messages_wait_out_the_grace_before_they_are_polled(tmp_path: Path) -> None:
    tracker = DeliveryTracker(tmp_path / "g.sqlite3")
    tracker.load([{"message_id": "1"}, {"message_id": "2"}], "a", loaded_at=1000.0)
    tracker.load([{"message_id": "1"}, {"message_id": "2"}, {"message_id": "3"}], "b", loaded_at=2000.0)
    assert (tracker.due(None), tracker.due(1500.0), tracker.due(999.0), tracker.due(2000.0)) == (3, 2, 0, 3)
    assert tracker.first_loaded_at() == 1000.0
    tracker.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    receipts=st.lists(
        st.tuples(st.integers(0, 29), st.sampled_from("126"), st.integers(0, 50)), min_size=1, max_size=80
    ),
    cuts=st.lists(st.integers(0, 80), max_size=6),
    order=st.randoms(use_true_random=False),
)
def test_duplicates_reordering_and_batching_change_no_count(
    tmp_path_factory: pytest.TempPathFactory, receipts: list[tuple[int, str, int]], cuts: list[int], order: object
) -> None:
    """Whatever order and batching receipts come in, each message ends with its latest final receipt."""
    built = [
        PushedReceipt(
            f"9000{n:09d}",
            f"8526{n:07d}",
            {"1": "delivered", "2": "failed", "6": "expired"}[s],
            task_id="camp",
            receive_ts=float(t),
        )
        for n, s, t in receipts
    ]
    expected: dict[str, tuple[float, set[str]]] = {}
    for r in built:  # the latest time wins; between equal times, whichever came first stays
        assert r.receive_ts is not None
        best = expected.get(r.message_id)
        if best is None or r.receive_ts > best[0]:
            expected[r.message_id] = (r.receive_ts, {r.status})
        elif r.receive_ts == best[0]:
            best[1].add(r.status)
    shuffled = list(built)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    shuffled += shuffled[: len(shuffled) // 3]  # duplicates
    bounds = sorted({0, len(shuffled), *(c for c in cuts if c < len(shuffled))})
    store = PushStore(tmp_path_factory.mktemp("push"))
    for a, b in itertools.pairwise(bounds):
        store.write(shuffled[a:b])
    folder = tmp_path_factory.mktemp("tracker")
    with tracker_with(folder, 30) as tracker:
        tracker.read_pushed(store, ["camp"])
        final = {r["message_id"]: r["delivery_status"] for r in tracker.records()}
        assert tracker.pending() == 30 - len(expected)
        for message_id, (_, statuses) in expected.items():
            assert final[message_id] in statuses


def test_sending_receipts_are_not_final(tmp_path: Path) -> None:
    with tracker_with(tmp_path, 1) as tracker:
        assert tracker.apply_pushed([PushedReceipt("9000000000000", "85260000000", "sending")]) == 0
        assert tracker.pending() == 1


def test_a_tracker_file_from_before_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE receipts (id INTEGER PRIMARY KEY, row INTEGER, to_number TEXT, message_id TEXT,"
        " segments INTEGER NOT NULL DEFAULT 0, send_status TEXT, status TEXT NOT NULL, error_code TEXT,"
        " error_description TEXT, send_date TEXT, receive_date TEXT, seconds REAL, checks INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO receipts (row, message_id, status) VALUES (1, '9000000000000', 'pending');"
    )
    db.commit()
    db.close()
    os.chmod(path, 0o600)
    with DeliveryTracker(path) as tracker:
        assert tracker.apply_pushed([PushedReceipt("9000000000000", "85260000000", "delivered", receive_ts=1.0)]) == 1
        assert tracker.due(0.0) == 0
