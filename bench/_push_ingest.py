"""Part 1 of ``bench/receipts_push.py``: the receiver's durable ingest against parse + write in-process, and
(``--profile``) where the receiver's time goes."""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from _common import table
from _push_receiver import push_all, receiver_process, socket_port, stored_receipts, wait_listening
from _push_records import bodies, ingest_records

from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.receipts.pushed import parse_push

if TYPE_CHECKING:
    import uvicorn

TARGET = 20_000  # receipts/s through the receiver (issue 28)
PUSH_CLIENT = Path(__file__).resolve().parent / "_push_receiver.py"


def in_process(store: Path, payloads: Sequence[bytes]) -> dict[str, float]:
    """parse + durable write of each body, one after the other; the parse alone timed on the side."""
    target = PushStore(store)
    parse_s = 0.0
    started = time.perf_counter()
    for body in payloads:
        t0 = time.perf_counter()
        parsed = parse_push(body)
        parse_s += time.perf_counter() - t0
        target.write(parsed.receipts, parsed.dead)
    return {"seconds": time.perf_counter() - started, "parse_s": parse_s}


def ingest(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The same bodies read and written in this process, then POSTed to the receiver; prints the table."""
    payloads = bodies(ingest_records(args.ingest, args.campaigns), args.push_size)
    secret = secrets.token_urlsafe(32)
    local = in_process(workdir / "ingest-inproc", payloads)
    with receiver_process(workdir / "ingest-http", secret, workdir / "receiver-ingest.log") as port:
        http_run = push_all(port, secret, payloads, args.connections)
    stored = stored_receipts(workdir / "ingest-http")
    if stored != args.ingest:
        raise RuntimeError(f"{args.ingest} receipts pushed, {stored} stored")
    figures = {
        "receipts": args.ingest,
        "push_size": args.push_size,
        "pushes": len(payloads),
        "campaigns": args.campaigns,
        "connections": args.connections,
        "in_process_s": local["seconds"],
        "in_process_parse_s": local["parse_s"],
        "in_process_write_s": local["seconds"] - local["parse_s"],
        "in_process_per_s": args.ingest / local["seconds"],
        "receiver_s": http_run["seconds"],
        "receiver_per_s": args.ingest / http_run["seconds"],
    }
    figures.update(ratio=figures["receiver_per_s"] / figures["in_process_per_s"], target_per_s=TARGET)
    print_ingest(figures)
    return figures


def print_ingest(f: dict[str, Any]) -> None:
    """Part 1's table: in-process (its parse and its writes apart) against the receiver, and the target."""
    receipts, a, b = f["receipts"], f["in_process_per_s"], f["receiver_per_s"]
    print(
        f"1. Durable ingest of {receipts:,} receipts in pushes of {f['push_size']} "
        f"({f['pushes']} pushes, {f['campaigns']} campaigns each)"
    )
    rows = [
        ["(a) in-process: parse_push + PushStore.write (baseline)", f"{f['in_process_s']:.2f}", f"{a:,.0f}", "1.00x"],
        ["    of which parse_push", f"{f['in_process_parse_s']:.2f}", f"{receipts / f['in_process_parse_s']:,.0f}", ""],
        [
            "    of which PushStore.write (fsync'd)",
            f"{f['in_process_write_s']:.2f}",
            f"{receipts / f['in_process_write_s']:,.0f}",
            "",
        ],
        [
            f"(b) receiver over HTTP, {f['connections']} connections",
            f"{f['receiver_s']:.2f}",
            f"{b:,.0f}",
            f"{b / a:.2f}x",
        ],
    ]
    print(table(["what", "seconds", "receipts/s", "x in-process"], rows))
    print(f"   through the receiver {b:,.0f} receipts/s (target >= {TARGET:,}): {'PASS' if b >= TARGET else 'BELOW'}")


# --- where the receiver's time goes (--profile) -----------------------------------------------------


class TimedStore(PushStore):
    """A ``PushStore`` whose writes (in the receiver's worker threads) are timed and counted."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.write_s, self.writes, self._lock = 0.0, 0, threading.Lock()

    def write(self, *args: Any, **kwargs: Any) -> int:
        """``PushStore.write``, its seconds added to ``write_s``."""
        started = time.perf_counter()
        try:
            return super().write(*args, **kwargs)
        finally:
            with self._lock:
                self.write_s += time.perf_counter() - started
                self.writes += 1


def in_process_server(store: PushStore, secret: str, port: int) -> uvicorn.Server:
    """The receiver app under uvicorn as the CLI configures it, its info lines (two per push) left out."""
    import uvicorn
    from fastapi import FastAPI

    from airflow_provider_globesms.receiver import cli
    from airflow_provider_globesms.receiver.app import URL_PREFIX, receiver_app

    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    root.mount(URL_PREFIX, receiver_app(store, secret))
    parsed = cli.build_parser().parse_args(["--store", "x", "--port", str(port), "--log-level", "warning"])
    return uvicorn.Server(cli.server_config(root, parsed))


def profiled_push(
    server: uvicorn.Server, port: int, command: list[str], env: dict[str, str]
) -> tuple[cProfile.Profile, float]:
    """Serve in a thread under cProfile while ``command`` (the client process) pushes; returns the profile and
    the client's seconds from its first request to its last answer."""
    profiler = cProfile.Profile()

    def serve() -> None:
        profiler.enable()
        try:
            server.run()
        finally:
            profiler.disable()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    wait_listening(port)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    server.should_exit = True
    thread.join(timeout=60)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return profiler, float(json.loads(done.stdout)["seconds"])


def profile_receiver(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The receiver app served by uvicorn in a thread of this process, as the CLI configures it, cProfile on
    the event loop's thread and ``PushStore.write`` timed in the worker threads; a client process pushes."""
    payload_file = workdir / "profile-bodies.bin"
    payload_file.write_bytes(
        msgspec.msgpack.encode(bodies(ingest_records(args.ingest, args.campaigns), args.push_size))
    )
    secret = secrets.token_urlsafe(32)
    store = TimedStore(workdir / "profile-store")
    with socket_port() as port:
        server = in_process_server(store, secret, port)
        command = [sys.executable, str(PUSH_CLIENT), str(payload_file), str(port), str(args.connections)]
        profiler, seconds = profiled_push(server, port, command, {**os.environ, "PUSH_SECRET": secret})
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(25)
    loop_cpu = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\n   profile (--profile): the receiver in this process (log level warning), {args.ingest:,} receipts")
    print(f"   in {seconds:.2f} s")
    print(f"   ({args.ingest / seconds:,.0f} receipts/s under cProfile, which slows the event loop's thread)")
    print(f"   event loop thread: {loop_cpu:.2f} s of profiled functions' own time")
    print(f"   PushStore.write in worker threads: {store.write_s:.2f} s summed over {store.writes} pushes")
    print("   the event loop's thread, by own time:")
    print("\n".join("     " + line for line in text.getvalue().splitlines()[:45] if line.strip()))
    return {"seconds": seconds, "per_s": args.ingest / seconds, "loop_cpu_s": loop_cpu, "write_s": store.write_s}
