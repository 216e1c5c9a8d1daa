"""The real parts of a distributed Airflow, started on free loopback ports in a temporary folder and stopped
afterwards: PostgreSQL (Debian's server binaries, run as the ``postgres`` user), Redis (Debian's
``redis-server``) and an S3-compatible server (moto's server mode, in this process)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.live_airflow import free_port

# Debian's server binaries, newest version installed
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), default=Path("/nonexistent"))


def postgres_installed() -> bool:
    """Whether Debian's PostgreSQL server binaries are here (``make cluster-parts`` installs them as root)."""
    return (PG_BIN / "initdb").exists() and shutil.which("runuser" if os.geteuid() == 0 else "true") is not None


def _wait(what: str, ready: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not start within {timeout:.0f} s")


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server with an ``airflow`` database; yields its SQLAlchemy URL.

    Its folder is its own (the ``postgres`` user cannot enter pytest's private temporary folders)."""
    folder = Path(tempfile.mkdtemp(prefix="globesms-postgres-"))
    data, port = folder / "pgdata", free_port()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "pg.log"),
                                "-w", "start"), check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run(_as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "airflow"),
                       check=True, capture_output=True)  # fmt: skip
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/airflow"
    finally:
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis(folder: Path) -> Iterator[str]:
    """A Redis server (no persistence); yields its URL."""
    port = free_port()
    log = (folder / "redis.log").open("wb")
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait("redis", lambda: b"ready to accept" in (folder / "redis.log").read_bytes().lower())
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def s3_server(bucket: str) -> Iterator[str]:
    """moto's S3-compatible server in a thread, with ``bucket`` created; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        s3.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
