"""Leases on the send ledger: of two copies of one task instance, only one holds the ledger at a time."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_globesms.client.errors import LeaseHeldError, LeaseLostError
from airflow_provider_globesms.client.ledger.lease import FileLease, Holder, LeasePath, ObjectLease

REPO = Path(__file__).resolve().parent.parent

# A second copy of the task instance, in another process: takes the lock, says so, then hangs.
CHILD = """
import sys, time
from airflow_provider_globesms.client.ledger.lease import FileLease, Holder
FileLease(sys.argv[1], Holder(description="child copy")).acquire(wait=5)
print("locked", flush=True)
time.sleep(60)
"""


def race(attempt: Callable[[], None], copies: int = 8) -> tuple[int, list[BaseException]]:
    """Run ``attempt`` in ``copies`` threads released at once; return the wins and the errors."""
    barrier = threading.Barrier(copies)
    wins: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait(timeout=10)
        try:
            attempt()
            wins.append(1)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return len(wins), errors


# ---------------------------------------------------------------------------------------------------
# FileLease


def test_holder_json_round_trips_and_garbage_is_no_holder() -> None:
    holder = Holder(description="dag.task run 1")
    assert Holder.from_json(holder.to_json()) == holder
    assert holder.host == socket.gethostname()
    assert holder.pid == os.getpid()
    for garbage in ("", "{", "[]", "null", '{"host": "h"}', json.dumps({**json.loads(holder.to_json()), "pid": "1"})):
        assert Holder.from_json(garbage) is None


def test_a_second_file_lease_in_the_same_process_is_refused_then_gets_it_after_release(tmp_path: Path) -> None:
    path = tmp_path / "ledgers" / "ti.sqlite3.lease"  # the parent directory does not exist yet
    first = FileLease(path, Holder(description="dag.task run 1"))
    first.acquire(wait=0)
    second = FileLease(path, Holder())
    with pytest.raises(LeaseHeldError) as caught:
        second.acquire(wait=0.3, poll=0.05)
    text = str(caught.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()} (dag.task run 1)" in text
    assert "wait for it to finish" in text
    assert "released when its process exits" in text
    assert caught.value.holder == first.holder
    with pytest.raises(LeaseLostError):
        second.check()
    first.check()
    first.release()
    first.release()  # idempotent
    with pytest.raises(LeaseLostError):
        first.check()
    with second:
        second.check()
    with pytest.raises(LeaseLostError):
        second.check()


def test_a_killed_process_releases_its_file_lock(tmp_path: Path) -> None:
    path = tmp_path / "ti.lease"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        lease = FileLease(path, Holder())
        with pytest.raises(LeaseHeldError, match=f"pid {child.pid} on host .* \\(child copy\\)"):
            lease.acquire(wait=0.2, poll=0.05)
        child.send_signal(signal.SIGKILL)  # no cleanup runs: only the kernel can release the lock
        child.wait(timeout=10)
        started = time.monotonic()
        lease.acquire(wait=5, poll=0.02)
        assert time.monotonic() - started < 3  # at once, not after the 5 s wait (loose: CI machines stall)
        lease.check()
        lease.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_waiting_copy_gets_the_file_lock_when_the_holder_releases(tmp_path: Path) -> None:
    path = tmp_path / "ti.lease"
    first = FileLease(path, Holder())
    first.acquire()
    releaser = threading.Timer(0.3, first.release)
    second = FileLease(path, Holder())
    started = time.monotonic()  # before the timer is armed: a stall in between cannot shorten the wait
    releaser.start()
    second.acquire(wait=5, poll=0.02)
    waited = time.monotonic() - started
    releaser.join()
    assert 0.25 <= waited < 3
    second.check()
    second.release()


def test_a_lock_held_by_a_process_that_wrote_no_name_is_still_held(tmp_path: Path) -> None:
    path = tmp_path / "ti.lease"
    path.write_text("\x00garbage{")
    with path.open("r+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(LeaseHeldError, match="has not written its name") as caught:
            FileLease(path, Holder()).acquire(wait=0.1, poll=0.05)
        assert caught.value.holder is None


def test_of_racing_file_leases_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "ti.lease"
    leases: list[FileLease] = []

    def attempt() -> None:
        lease = FileLease(path, Holder())
        lease.acquire(wait=0.2, poll=0.05)
        leases.append(lease)

    wins, errors = race(attempt)
    assert wins == 1
    assert len(errors) == 7
    assert all(isinstance(error, LeaseHeldError) for error in errors)
    leases[0].release()


def test_a_deleted_lock_file_is_a_lost_lease(tmp_path: Path) -> None:
    path = tmp_path / "ti.lease"
    lease = FileLease(path, Holder())
    lease.acquire()
    path.unlink()  # a new copy would lock a new file: ours no longer excludes it
    with pytest.raises(LeaseLostError, match="deleted or replaced"):
        lease.check()
    lease.release()


# ---------------------------------------------------------------------------------------------------
# ObjectLease, on a local directory and on an ObjectStoragePath (memory://, standing in for s3://)


@pytest.fixture(params=["pathlib", "object-storage"])
def lease_dir(request: pytest.FixtureRequest, tmp_path: Path) -> LeasePath:
    if request.param == "pathlib":
        return tmp_path / "ledger" / "lease"
    return ObjectStoragePath(f"memory://leases-{uuid.uuid4().hex}/ti1")


def lease_names(directory: LeasePath) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_exclusive_create_refuses_an_existing_object(lease_dir: LeasePath) -> None:
    lease_dir.mkdir(parents=True, exist_ok=True)
    target = lease_dir / "lease-000000000001.json"
    with target.open("x") as handle:
        handle.write("first")
    for mode in ("x", "xb"):
        with pytest.raises(FileExistsError), target.open(mode) as handle:
            handle.write("second" if mode == "x" else b"second")
    assert target.read_text() == "first"


def test_a_second_object_lease_is_refused_naming_the_holder(lease_dir: LeasePath) -> None:
    first = ObjectLease(lease_dir, Holder(description="dag.task run 1"), ttl=5)
    first.acquire(wait=0)
    assert first.generation == 1
    second = ObjectLease(lease_dir, Holder(), ttl=5)
    started = time.time()
    with pytest.raises(LeaseHeldError) as caught:
        second.acquire(wait=0.3, poll=0.05)
    text = str(caught.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()} (dag.task run 1)" in text
    assert "until" in text
    assert "wait for it to finish" in text
    assert "expires after its TTL" in text
    assert caught.value.holder is not None
    assert caught.value.holder.token == first.holder.token
    assert caught.value.expires_at is not None
    assert caught.value.expires_at > started + 4
    with pytest.raises(LeaseLostError):
        second.check()
    first.check()
    first.release()
    assert lease_names(lease_dir) == ["lease-000000000001.json"]


def test_a_holder_that_stops_renewing_is_taken_over_after_expiry_and_knows_it(lease_dir: LeasePath) -> None:
    frozen = ObjectLease(lease_dir, Holder(), ttl=0.6, skew=0.2, renew=False)  # a frozen or dead holder
    started = time.monotonic()  # before the lease is taken: a stall after it cannot shorten the wait
    frozen.acquire(wait=0)
    frozen.check()
    taker = ObjectLease(lease_dir, Holder(), ttl=0.6, skew=0.2)
    taker.acquire(wait=5, poll=0.05)
    assert 0.5 <= time.monotonic() - started < 3  # after expires_at + skew, not before
    assert taker.generation == 2
    with pytest.raises(LeaseLostError, match="lost"):
        frozen.check()
    frozen.release()  # lost: must not touch the taker's lease
    taker.check()
    taker.release()
    assert lease_names(lease_dir) == ["lease-000000000001.json", "lease-000000000002.json"]


def test_a_newer_generation_means_the_lease_is_lost(lease_dir: LeasePath) -> None:
    holder = ObjectLease(lease_dir, Holder(), ttl=5)
    holder.acquire(wait=0)
    other = Holder(description="a copy whose clock ran ahead")
    with (lease_dir / "lease-000000000002.json").open("w") as handle:
        handle.write(json.dumps({**json.loads(other.to_json()), "expires_at": time.time() + 5}))
    with pytest.raises(LeaseLostError, match="took generation 2"):
        holder.check()
    holder.release()
    with pytest.raises(LeaseHeldError, match="a copy whose clock ran ahead"):
        ObjectLease(lease_dir, Holder()).acquire(wait=0)


def test_of_racing_object_leases_exactly_one_wins(lease_dir: LeasePath) -> None:
    leases: list[ObjectLease] = []

    def attempt() -> None:
        lease = ObjectLease(lease_dir, Holder(), ttl=5)
        lease.acquire(wait=0.3, poll=0.05)
        leases.append(lease)

    wins, errors = race(attempt)
    assert (wins, len(errors)) == (1, 7), errors
    assert all(isinstance(error, LeaseHeldError) for error in errors)
    assert lease_names(lease_dir) == ["lease-000000000001.json"]
    leases[0].check()
    leases[0].release()


def test_release_lets_the_next_copy_in_at_once(lease_dir: LeasePath) -> None:
    with ObjectLease(lease_dir, Holder(), ttl=30) as first:
        first.check()
    with pytest.raises(LeaseLostError):
        first.check()
    second = ObjectLease(lease_dir, Holder(), ttl=30)
    second.acquire(wait=0)
    assert second.generation == 2
    second.release()
    second.release()  # idempotent


def test_a_holder_whose_lease_expired_takes_it_again_without_waiting_for_itself(lease_dir: LeasePath) -> None:
    lease = ObjectLease(lease_dir, Holder(), ttl=0.3, skew=5, renew=False)
    lease.acquire(wait=0)
    time.sleep(0.35)
    with pytest.raises(LeaseLostError, match="expired"):
        lease.check()
    lease.acquire(wait=0)  # its own object, still within the skew margin, does not block it
    assert lease.generation == 2
    lease.check()
    lease.release()


def test_renewal_keeps_a_live_holder_beyond_several_ttls(lease_dir: LeasePath) -> None:
    holder = ObjectLease(lease_dir, Holder(), ttl=2, skew=0.5)  # renewed every 2/3 s: a stall must exceed 1 s
    holder.acquire(wait=0)
    with pytest.raises(LeaseHeldError):
        ObjectLease(lease_dir, Holder(), ttl=2, skew=0.5).acquire(wait=6.0, poll=0.1)
    holder.check()
    assert holder.generation == 1
    holder.release()


class FlakyDir:
    """A local directory behind a store that can be cut off: every call fails while ``down``."""

    def __init__(self, path: Path, state: dict[str, bool]) -> None:
        self.path, self.state = path, state

    @property
    def name(self) -> str:
        return self.path.name

    def _reachable(self) -> None:
        if self.state["down"]:
            raise OSError("the store is unreachable")

    def __truediv__(self, other: str) -> FlakyDir:
        return FlakyDir(self.path / other, self.state)

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        self._reachable()
        self.path.mkdir(mode, parents, exist_ok)

    def iterdir(self) -> Iterator[FlakyDir]:
        self._reachable()
        return (FlakyDir(p, self.state) for p in self.path.iterdir())

    def open(self, mode: str) -> IO[Any]:
        self._reachable()
        return self.path.open(mode)

    def exists(self) -> bool:
        self._reachable()
        return self.path.exists()

    def read_text(self) -> str:
        self._reachable()
        return self.path.read_text()


def test_a_holder_cut_off_from_the_store_stops_at_its_expiry(tmp_path: Path) -> None:
    state = {"down": False}
    holder = ObjectLease(FlakyDir(tmp_path, state), Holder(), ttl=0.6, skew=0.2)
    holder.acquire(wait=0)
    state["down"] = True
    holder.check()  # unreachable, but no one can take the lease before it expires
    time.sleep(0.7)
    with pytest.raises(LeaseLostError, match="expired"):
        holder.check()
    state["down"] = False
    with pytest.raises(LeaseLostError):
        holder.check()  # lost for good, even once the store is back
    taker = ObjectLease(FlakyDir(tmp_path, {"down": False}), Holder(), ttl=0.6, skew=0.2)
    taker.acquire(wait=3, poll=0.05)
    assert taker.generation == 2
    holder.release()
    taker.release()
