"""The send ledger: durable records, object-storage segments, and settling a crash by replay."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.client.bulk import BulkSender, Campaign, Spill, validate
from airflow_provider_globesms.client.ledger.object_ledger import SegmentLedger
from airflow_provider_globesms.client.ledger.sqlite_ledger import LedgerEntry, SqliteLedger, Status, message_key
from airflow_provider_globesms.client.results.report import ResultsWriter
from airflow_provider_globesms.client.rules.recipients import rows_from_records
from airflow_provider_globesms.client.wire.signing import SignedRequest
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from tests.emulator_helpers import StoppedClock, send

SCOPE = ("dag", "run", "task", "-1")


def signed(n: int = 0) -> SignedRequest:
    return SignedRequest("POST", f"/?To=852912345{n:02d}", {"host": "h", "authorization": "x"})


def mark_pending(ledger: SqliteLedger, key: str, row: int, to: str, request: SignedRequest) -> None:
    """Durably record that ``request`` is about to be sent, as the sender does before sending it."""
    ledger.write_many([LedgerEntry(key, Status.PENDING, row, to, request=request, updated_at=time.time())])


def test_keys_depend_on_the_task_instance_number_and_text() -> None:
    base = message_key(SCOPE, "85291234567", "hello")
    assert base == message_key(SCOPE, "85291234567", "hello")
    assert (
        len(
            {
                base,
                message_key(SCOPE, "85291234567", "hello!"),
                message_key(SCOPE, "85291234568", "hello"),
                message_key(("dag", "run", "task", "0"), "85291234567", "hello"),
                message_key(("dag", "run2", "task", "-1"), "85291234567", "hello"),
            }
        )
        == 5
    )


def test_sqlite_ledger_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with SqliteLedger(path) as ledger:
        mark_pending(ledger, "k1", 1, "85291234567", signed(1))
        mark_pending(ledger, "k2", 2, "85291234568", signed(2))
        ledger.record(LedgerEntry("k2", Status.ACCEPTED, 2, "85291234568", message_id="m2", segments=1))
    with SqliteLedger(path) as reopened:
        (pending,) = reopened.pending()
        assert (pending.key, pending.request) == ("k1", signed(1))
        accepted = reopened.get("k2")
        assert accepted is not None
        assert (accepted.status, accepted.message_id) == (Status.ACCEPTED, "m2")
        assert reopened.counts() == {"pending": 1, "accepted": 1}


def test_buffered_outcomes_are_visible_before_they_are_flushed(tmp_path: Path) -> None:
    with SqliteLedger(tmp_path / "l.sqlite3") as ledger:
        ledger.record(LedgerEntry("k", Status.FAILED, 1, "85291234567", error_code="X"))
        entry = ledger.get("k")
        assert entry is not None
        assert entry.status is Status.FAILED


@pytest.fixture(params=["pathlib", "object-storage"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.param == "pathlib":
        yield tmp_path / "remote"
    else:
        yield ObjectStoragePath(f"memory://ledgers/{tmp_path.name}")


def test_segment_ledger_replays_its_log_elsewhere(remote: object) -> None:
    first = SegmentLedger(remote)  # type: ignore[arg-type]
    first.write_many([LedgerEntry(f"k{n}", Status.PENDING, n, "85291234567", request=signed(n)) for n in range(3)])
    first.record(LedgerEntry("k0", Status.ACCEPTED, 0, "85291234567", message_id="m0"))
    first.record(LedgerEntry("k1", Status.FAILED, 1, "85291234567", error_code="Throttling.User"))
    first.close()
    # Another worker, another local mirror: the same state.
    second = SegmentLedger(remote)  # type: ignore[arg-type]
    assert second.counts() == {"accepted": 1, "failed": 1, "pending": 1}
    (pending,) = second.pending()
    assert (pending.key, pending.request) == ("k2", signed(2))
    second.close()


def test_a_pending_batch_is_one_remote_write(remote: object) -> None:
    ledger = SegmentLedger(remote)  # type: ignore[arg-type]
    ledger.write_many([LedgerEntry(f"k{n}", Status.PENDING, n, "1", request=signed(n)) for n in range(50)])
    names = [p.name for p in remote.iterdir()]  # type: ignore[attr-defined]
    assert len(names) == 1
    assert names[0].endswith("-w.jsonl")
    ledger.close()


def test_a_crash_is_settled_by_replaying_what_was_pending() -> None:
    """Two messages were pending when a worker died: one had reached the API, one had not.

    Replaying each stored request settles both: the gateway refuses the nonce it has seen (the message
    arrived, so it is not resent) and accepts the one it has not (so it is sent, once).
    """
    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as emulator, tempfile.TemporaryDirectory() as workdir:
        client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
        rows = [{"to": "+85291234567", "name": "Ann"}, {"to": "+6591234567", "name": "Bo"}]
        campaign = Campaign(client, lambda r: f"Hi {r['name']}", SCOPE)
        spill = Spill(campaign, workdir)
        validate(campaign, rows_from_records(rows), on_row=spill.add, workdir=workdir)
        arrived, never_left = list(spill)
        ledger = SqliteLedger(Path(workdir) / "ledger.sqlite3")
        for message in (arrived, never_left):
            request = client.sign("SendMessageToGlobe", message.params)  # type: ignore[union-attr]
            mark_pending(ledger, message.key, message.row, message.to, request)  # type: ignore[union-attr]
            if message is arrived:
                assert send(emulator, request).code == "OK"  # ...and then the worker died
        with (Path(workdir) / "results.jsonl").open("wb") as handle:
            sender = BulkSender(campaign, ledger, ResultsWriter(handle), progress_interval=0)
            summary = sender.run(spill, total=2)
        assert summary.recovered == 2
        assert (summary.skipped_already_sent, summary.arrived, summary.sent) == (1, 1, 0)  # arrived: not "sent"
        by_row = {e.row: e for e in ledger.entries()}
        assert [by_row[1].to, by_row[2].to] == ["+852****4567", "+65****4567"]  # stored masked
        assert by_row[1].status is Status.ARRIVED
        assert by_row[2].status is Status.ACCEPTED
        assert by_row[2].message_id
        assert sorted(m["to"] for m in emulator.messages()) == ["6591234567", "85291234567"]
        ledger.close()
        spill.close()


def _campaign(emulator: EmulatorServer, workdir: str, count: int = 1) -> tuple[Campaign, Spill]:
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
    rows = [{"to": f"+8529123{n:04d}", "name": f"C{n}"} for n in range(count)]
    campaign = Campaign(client, lambda r: f"Hi {r['name']}", SCOPE)
    spill = Spill(campaign, workdir)
    validate(campaign, rows_from_records(rows), on_row=spill.add, workdir=workdir)
    return campaign, spill


def test_a_worker_killed_while_a_throttled_message_waits_still_sends_it_once() -> None:
    """The refusal is made durable before the backoff: a replay would otherwise meet the consumed nonce and
    wrongly conclude that the message had arrived."""
    import asyncio

    with EmulatorServer(EmulatorConfig(qps=1, delivery_delay=0)) as emulator, tempfile.TemporaryDirectory() as workdir:
        clock = StoppedClock(emulator)  # one second that lasts until the test moves on, however slow
        GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url).send_message(
            "+6591234567", "fills the second"
        )
        campaign, spill = _campaign(emulator, workdir)
        (message,) = list(spill)
        ledger = SqliteLedger(Path(workdir) / "ledger.sqlite3")

        async def killed_during_backoff() -> None:
            with (Path(workdir) / "r1.jsonl").open("wb") as handle:
                sender = BulkSender(campaign, ledger, ResultsWriter(handle), progress_interval=0)
                attempt = asyncio.create_task(sender.run_async(spill, total=1))
                for _ in range(2000):  # until the throttled attempt is on record
                    entry = ledger.get(message.key)  # type: ignore[union-attr]
                    if entry is not None and entry.status is Status.FAILED:
                        break
                    await asyncio.sleep(0.005)
                attempt.cancel()  # the worker dies while waiting for its retry
                with pytest.raises(asyncio.CancelledError):
                    await attempt

        asyncio.run(killed_during_backoff())
        assert len(emulator.messages()) == 1  # only the message that filled the second
        clock.advance(2)  # the next second: the cap has room again
        with (Path(workdir) / "r2.jsonl").open("wb") as handle:
            summary = BulkSender(campaign, ledger, ResultsWriter(handle), progress_interval=0).run(spill, total=1)
        assert (summary.accepted, summary.recovered) == (1, 0)
        assert sorted(m["to"] for m in emulator.messages()) == ["6591234567", "85291230000"]
        ledger.close()
        spill.close()


class BrokenLedger(SqliteLedger):
    def write_many(self, entries: object) -> None:
        raise OSError(28, "No space left on device")


def test_a_ledger_that_cannot_be_written_stops_everything_before_sending() -> None:
    from airflow_provider_globesms.client.bulk import LedgerError

    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as emulator, tempfile.TemporaryDirectory() as workdir:
        campaign, spill = _campaign(emulator, workdir, count=20)
        ledger = BrokenLedger(Path(workdir) / "ledger.sqlite3")
        with (Path(workdir) / "r.jsonl").open("wb") as handle, pytest.raises(LedgerError, match="No space left"):
            BulkSender(campaign, ledger, ResultsWriter(handle), progress_interval=0).run(spill, total=20)
        assert emulator.messages() == []
        ledger.close()
        spill.close()


def test_segment_names_stay_ordered_past_a_clock_running_ahead(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    ahead = SegmentLedger(remote)
    ahead._clock = time.time_ns() + 600 * 10**9  # this worker's clock is ten minutes ahead
    ahead.write_many([LedgerEntry("k", Status.FAILED, 1, "85291234567", error_code="X")])
    ahead.close()
    behind = SegmentLedger(remote)  # a correct clock, later
    behind.write_many([LedgerEntry("k", Status.ACCEPTED, 1, "85291234567", message_id="m")])
    behind.close()
    third = SegmentLedger(remote)
    entry = third.get("k")
    assert entry is not None
    assert entry.status is Status.ACCEPTED  # the later write wins, whatever the clocks said
    third.close()


def test_a_millionth_segment_is_still_read(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    ledger = SegmentLedger(remote)
    ledger._sequence = 1_000_000
    mark_pending(ledger, "k", 1, "85291234567", signed(1))
    ledger.close()
    assert [e.key for e in SegmentLedger(remote).pending()] == ["k"]


class Lines:
    """A logger that keeps its lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, /, *args: object) -> None:
        self.lines.append(msg % args if args else msg)

    warning = error = exception = info


def test_progress_is_logged_from_the_send_loop_while_it_runs() -> None:
    """A line every interval while the sends wait on the API (a task on the send's own loop, no thread), and
    its counts are the summary's as they stood: never ahead of the messages done."""
    with (
        EmulatorServer(EmulatorConfig(delivery_delay=0, latency_ms=150)) as emulator,
        tempfile.TemporaryDirectory() as workdir,
    ):
        client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
        rows = [{"to": f"+8529123{n:04d}"} for n in range(40)]
        campaign = Campaign(client, lambda r: "Hi", SCOPE)
        spill = Spill(campaign, workdir)
        validate(campaign, rows_from_records(rows), on_row=spill.add, workdir=workdir)
        ledger = SqliteLedger(Path(workdir) / "ledger.sqlite3")
        logger = Lines()
        with (Path(workdir) / "results.jsonl").open("wb") as handle:
            sender = BulkSender(
                campaign, ledger, ResultsWriter(handle), concurrency=2, progress_interval=0.2, logger=logger
            )
            summary = sender.run(spill, total=40)
    assert summary.accepted == 40
    progress = [line for line in logger.lines if line.startswith("progress: ")]
    assert len(progress) >= 3, logger.lines  # 40 sends, 2 at a time, 150 ms each: about 3 s
    done = [int(line.split()[1].split("/")[0]) for line in progress]
    assert done == sorted(done)
    assert 0 < done[-1] <= 40
    for line, count in zip(progress, done, strict=True):
        assert int(line.split("accepted ")[1].split(",")[0]) <= count
