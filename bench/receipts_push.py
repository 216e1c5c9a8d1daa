"""Receipts pushed by Alibaba: the receiver's durable ingest, and a million-message campaign's delivery sensor
finishing on pushed receipts, beside QueryMessage polling (issue 28).

Baselines measured in the same run:

1. Ingest (``--ingest`` receipts in pushes of ``--push-size``, spread over ``--campaigns`` campaigns): the
   same bodies (a) read and written in this process, ``PushStore.write(parse_push(body).receipts)``, without
   HTTP (the baseline: parse + durable write, one push after the other), and (b) POSTed to the standalone
   receiver (``python -m airflow_provider_globesms.receiver.cli``, its own process, a local store folder) by
   ``--connections`` keep-alive connections in flight. Receipts/s for each, and (b)/(a); target >= 20,000/s
   through the receiver. ``--profile``: the receiver app also served by uvicorn in this process, cProfile
   on its event loop's thread and the store's writes timed, while a client process pushes the same bodies.
2. A campaign of ``--campaign`` messages: its results file (one JSON line per message, as the operator writes
   it) and its receipts pushed through the receiver over HTTP (a second ingest figure, at scale). Then
   ``GlobeSmsDeliverySensor(receipts_by_push=True)`` in ``dag.test()`` in a process of its own with a fresh
   Airflow home, connected to the emulator: (i) already running when the last ``--last-share`` of the
   receipts arrives (``--poke-interval``): latency from the last push's answer to the task's end; (ii) with
   every receipt already pushed: the task's wall time (start to success), QueryMessage calls at the emulator
   (0 expected), the child's peak RSS. Beside it, polling: ``--poll`` messages sent by
   ``SendGlobeSmsOperator`` to the emulator (receipts final at once), then the same sensor with
   ``receipts_by_push=False`` asking QueryMessage (capped at 300/s); its wall time scaled to ``--campaign``
   messages, and that over the push sensor's wall time.

    python bench/receipts_push.py [--ingest 200000] [--push-size 500] [--connections 12] [--campaign 1000000]
                                  [--last-share 0.01] [--poll 10000] [--poke-interval 2] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import http.client
import io
import json
import os
import pstats
import queue
import resource
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _common import ROOT, emulator_process, number, save, table

from airflow_provider_globesms.client.receipts.push_store import RECEIPTS, PushStore
from airflow_provider_globesms.client.receipts.pushed import parse_push

TARGET = 20_000  # receipts/s through the receiver (issue 28)
QUERY_CAP = 300  # QueryMessage calls per second, the API's (and the emulator's) cap
GATEWAY_TZ = timezone(timedelta(hours=8))
SENT_AT = datetime(2026, 5, 11, 9, 30, tzinfo=GATEWAY_TZ)
ERRORS = [("", ""), ("", ""), ("", ""), ("IS_CLOSE", "The number is switched off"), ("MO_BLACK", "Blocked")]
QUICK = {"ingest": 4000, "campaign": 4000, "poll": 200, "connections": 4}


# --- the records ------------------------------------------------------------------------------------


def message_id(campaign: int, n: int) -> str:
    return f"{1_000_000 + campaign}{n:012d}"


def to_number(n: int) -> str:
    """Distinct valid Hong Kong mobile numbers, as a receipt's ``To`` carries them (digits only)."""
    return number(n)


@functools.lru_cache(maxsize=4096)
def dates(sent_second: int, delay: int) -> tuple[str, str]:
    sent = SENT_AT + timedelta(seconds=sent_second)
    return format_datetime(sent), format_datetime(sent + timedelta(seconds=delay))


def receipt(campaign_id: str, campaign: int, n: int) -> dict[str, str]:
    """A pushed receipt as Alibaba writes it: every value a string, dates RFC 2822 in +0800."""
    code, description = ERRORS[n // 20 % len(ERRORS)] if n % 20 == 0 else ("", "")
    send_date, receive_date = dates(n // 2000, 2 + n % 17)
    return {
        "To": to_number(n),
        "Status": "2" if code else "1",
        "MessageId": message_id(campaign, n),
        "SmsSize": str(1 + n % 3 // 2),
        "TaskId": campaign_id,
        "SendDate": send_date,
        "ReceiveDate": receive_date,
        "ErrorCode": code,
        "ErrorDescription": description,
    }


def bodies(receipts: Sequence[dict[str, str]], size: int) -> list[bytes]:
    encode = msgspec.json.encode
    return [encode(receipts[i : i + size]) for i in range(0, len(receipts), size)]


def ingest_records(count: int, campaigns: int) -> list[dict[str, str]]:
    """``count`` receipts of ``campaigns`` campaigns, interleaved as one push carries several campaigns."""
    return [receipt(f"bench-campaign-{n % campaigns}", n % campaigns, n) for n in range(count)]


def write_results(path: Path, campaign_id: str, count: int) -> None:
    """The operator's results file: one JSON line per accepted message."""
    encode = msgspec.json.Encoder().encode
    with path.open("wb") as handle:
        for n in range(count):
            line = {
                "row": n + 1,
                "to": "+" + to_number(n),
                "status": "accepted",
                "campaign_id": campaign_id,
                "message_id": message_id(0, n),
                "segments": 1 + n % 3 // 2,
            }
            handle.write(encode(line) + b"\n")


# --- the receiver and its client --------------------------------------------------------------------


@contextlib.contextmanager
def receiver_process(store: Path, secret: str, log: Path) -> Iterator[int]:
    """``globesms-receiver`` as users start it (access log on), on a free port; yields the port."""
    with socket_port() as port, log.open("w") as out:
        env = {**os.environ, "GLOBESMS_PUSH_SECRET": secret}
        command = [sys.executable, "-m", "airflow_provider_globesms.receiver.cli", "--store", str(store)]
        process = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, process)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=60)


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    yield port


def wait_listening(port: int, process: subprocess.Popen[bytes] | None = None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the receiver exited with {process.returncode}")
        with contextlib.suppress(OSError):
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        time.sleep(0.05)
    raise RuntimeError("the receiver did not start listening")


def push_all(port: int, secret: str, payloads: Sequence[bytes], connections: int) -> dict[str, float]:
    """POST every body over ``connections`` keep-alive connections, each in a thread; each answer must be
    ``200 {"code": 0}``. Returns the seconds from the first request to the last answer, and its epoch."""
    path = f"/globesms/push/{secret}/receipts"
    work: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    for body in payloads:
        work.put(body)
    for _ in range(connections):
        work.put(None)
    failures: list[str] = []
    last_answer = [0.0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while (body := work.get()) is not None:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                answer = conn.getresponse()
                data = answer.read()
                if answer.status != 200 or json.loads(data).get("code") != 0:
                    failures.append(f"{answer.status} {data[:200]!r}")
                last_answer[0] = max(last_answer[0], time.time())
        except Exception as exc:
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} pushes not taken: {failures[:3]}")
    return {"seconds": seconds, "last_answer_at": last_answer[0]}


def stored_receipts(store: Path) -> int:
    decode = msgspec.json.Decoder(list[Any]).decode
    return sum(len(decode(p.read_bytes())) for p in (store / RECEIPTS).glob("*/*.json"))


# --- 1. ingest ------------------------------------------------------------------------------------


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
    records = ingest_records(args.ingest, args.campaigns)
    payloads = bodies(records, args.push_size)
    secret = secrets.token_urlsafe(32)
    local = in_process(workdir / "ingest-inproc", payloads)
    with receiver_process(workdir / "ingest-http", secret, workdir / "receiver-ingest.log") as port:
        http_run = push_all(port, secret, payloads, args.connections)
    stored = stored_receipts(workdir / "ingest-http")
    if stored != args.ingest:
        raise RuntimeError(f"{args.ingest} receipts pushed, {stored} stored")
    a, b = args.ingest / local["seconds"], args.ingest / http_run["seconds"]
    write_s = local["seconds"] - local["parse_s"]
    print(
        f"1. Durable ingest of {args.ingest:,} receipts in pushes of {args.push_size} "
        f"({len(payloads)} pushes, {args.campaigns} campaigns each)"
    )
    print(
        table(
            ["what", "seconds", "receipts/s", "x in-process"],
            [
                [
                    "(a) in-process: parse_push + PushStore.write (baseline)",
                    f"{local['seconds']:.2f}",
                    f"{a:,.0f}",
                    "1.00x",
                ],
                ["    of which parse_push", f"{local['parse_s']:.2f}", f"{args.ingest / local['parse_s']:,.0f}", ""],
                ["    of which PushStore.write (fsync'd)", f"{write_s:.2f}", f"{args.ingest / write_s:,.0f}", ""],
                [
                    f"(b) receiver over HTTP, {args.connections} connections",
                    f"{http_run['seconds']:.2f}",
                    f"{b:,.0f}",
                    f"{b / a:.2f}x",
                ],
            ],
        )
    )
    print(f"   through the receiver {b:,.0f} receipts/s (target >= {TARGET:,}): {'PASS' if b >= TARGET else 'BELOW'}")
    return {
        "receipts": args.ingest,
        "push_size": args.push_size,
        "pushes": len(payloads),
        "campaigns": args.campaigns,
        "connections": args.connections,
        "in_process_s": local["seconds"],
        "in_process_parse_s": local["parse_s"],
        "in_process_write_s": write_s,
        "in_process_per_s": a,
        "receiver_s": http_run["seconds"],
        "receiver_per_s": b,
        "ratio": b / a,
        "target_per_s": TARGET,
    }


# --- 1b. where the receiver's time goes (--profile) -----------------------------------------------------


def profile_receiver(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The receiver app served by uvicorn in a thread of this process, as the CLI configures it, cProfile on
    the event loop's thread and ``PushStore.write`` timed in the worker threads; a client process pushes."""
    import uvicorn
    from fastapi import FastAPI

    from airflow_provider_globesms.receiver import cli
    from airflow_provider_globesms.receiver.app import URL_PREFIX, receiver_app

    records = ingest_records(args.ingest, args.campaigns)
    payload_file = workdir / "profile-bodies.bin"
    payload_file.write_bytes(msgspec.msgpack.encode(bodies(records, args.push_size)))
    secret = secrets.token_urlsafe(32)
    store = PushStore(workdir / "profile-store")
    write_s, writes, write_lock = [0.0], [0], threading.Lock()
    original = store.write

    def timed_write(*a: Any, **k: Any) -> int:
        t0 = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            with write_lock:
                write_s[0] += time.perf_counter() - t0
                writes[0] += 1

    store.write = timed_write  # type: ignore[method-assign]
    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    root.mount(URL_PREFIX, receiver_app(store, secret))
    with socket_port() as port:
        # As the CLI serves it, but its info lines (two per push) left out of the bench's output.
        parsed = cli.build_parser().parse_args(["--store", "x", "--port", str(port), "--log-level", "warning"])
        config = cli.server_config(root, parsed)
        server = uvicorn.Server(config)
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
        command = [sys.executable, __file__, "--client", str(payload_file), str(port), str(args.connections)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PUSH_SECRET": secret})
        server.should_exit = True
        thread.join(timeout=60)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    seconds = json.loads(done.stdout)["seconds"]
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(25)
    loop_cpu = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\n   profile (--profile): the receiver in this process (log level warning), {args.ingest:,} receipts")
    print(f"   in {seconds:.2f} s")
    print(f"   ({args.ingest / seconds:,.0f} receipts/s under cProfile, which slows the event loop's thread)")
    print(f"   event loop thread: {loop_cpu:.2f} s of profiled functions' own time")
    print(f"   PushStore.write in worker threads: {write_s[0]:.2f} s summed over {writes[0]} pushes")
    print("   the event loop's thread, by own time:")
    print("\n".join("     " + line for line in text.getvalue().splitlines()[:45] if line.strip()))
    return {"seconds": seconds, "per_s": args.ingest / seconds, "loop_cpu_s": loop_cpu, "write_s": write_s[0]}


def client_main(payload_file: str, port: str, connections: str) -> None:
    payloads = msgspec.msgpack.decode(Path(payload_file).read_bytes(), type=list[bytes])
    result = push_all(int(port), os.environ["PUSH_SECRET"], payloads, int(connections))
    print(json.dumps(result))


# --- 2. the sensor ------------------------------------------------------------------------------------


def run_child(mode: str, home: Path, params: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, str(home), json.dumps(params)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)
    return child_result(mode, done.stdout, done.stderr)


def child_result(mode: str, stdout: str, stderr: str) -> dict[str, Any]:
    if "RESULT " not in stdout:
        raise RuntimeError(f"{mode} child gave no result:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.split("RESULT ", 1)[1].splitlines()[0])
    if result["state"] != "success":
        errors = [line for line in (stdout + stderr).splitlines() if "Error" in line or "Exception" in line]
        raise RuntimeError(f"{mode} child did not succeed: {result} {errors[-5:]}")
    return result


def query_calls(emulator: str) -> int:
    with urlopen(f"{emulator}/_emulator/stats", timeout=30) as answer:  # noqa: S310 - our loopback emulator
        actions = json.loads(answer.read())["actions"]
    return int(actions.get("QueryMessage", {}).get("requests", 0))


def tracker_file(home: Path) -> Path | None:
    return next(home.rglob("receipts.sqlite3"), None)


def tracker_count(home: Path, query: str) -> int | None:
    """A count in the running sensor's tracker (under its Airflow home), read only; None before there is one."""
    path = tracker_file(home)
    if path is None:
        return None
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute(query).fetchone()[0])
        finally:
            db.close()
    return None


def tracker_read(home: Path) -> int:
    """How many pushed objects the running sensor has read (cheap: asked every 0.2 s while it works)."""
    return tracker_count(home, "SELECT COUNT(*) FROM pushed_read") or 0


def tracker_pending(home: Path) -> int | None:
    return tracker_count(home, "SELECT COUNT(*) FROM receipts WHERE status = 'pending'")


def campaign(workdir: Path, emulator: str, args: argparse.Namespace) -> dict[str, Any]:
    count, campaign_id = args.campaign, "bench-campaign-0"
    results, store = workdir / "campaign-results.jsonl", workdir / "campaign-store"
    write_results(results, campaign_id, count)
    payloads = bodies([receipt(campaign_id, 0, n) for n in range(count)], args.push_size)
    last = max(1, round(len(payloads) * args.last_share))
    early, late = payloads[:-last], payloads[-last:]
    late_receipts = sum(len(msgspec.json.decode(b)) for b in late)
    secret = secrets.token_urlsafe(32)
    params = {
        "results": str(results),
        "store": str(store),
        "campaign_id": campaign_id,
        "emulator": emulator,
        "poke_interval": args.poke_interval,
    }
    with receiver_process(store, secret, workdir / "receiver-campaign.log") as port:
        pushed = push_all(port, secret, early, args.connections)
        queries_before = query_calls(emulator)
        # (i) The sensor already waiting when the last share arrives.
        home = workdir / "home-latency"
        command = [sys.executable, __file__, "--child", "push", str(home), json.dumps(params)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) as child:
            deadline = time.monotonic() + 1800
            while tracker_read(home) < len(early):
                if child.poll() is not None or time.monotonic() > deadline:
                    out, err = child.communicate()
                    raise RuntimeError(f"the sensor never read the first pushes:\n{out[-2000:]}\n{err[-2000:]}")
                time.sleep(0.2)
            waiting_at = time.time()
            if (pending := tracker_pending(home)) != late_receipts:
                raise RuntimeError(f"{pending} messages pending after the first pushes; {late_receipts} expected")
            tail = push_all(port, secret, late, min(args.connections, len(late)))
            out, err = child.communicate(timeout=1800)
        latency_run = child_result("push", out, err)
    ingest_s = pushed["seconds"]
    ingested = count - late_receipts
    # (ii) Every receipt already pushed: a fresh Airflow home reads the whole campaign at once.
    whole = run_child("push", workdir / "home-whole", params)
    push_queries = query_calls(emulator) - queries_before
    latency = latency_run["ended_at"] - tail["last_answer_at"]
    task_latency = latency_run["task_ended_at"] - tail["last_answer_at"]
    for run in (latency_run, whole):
        summary = run["summary"]
        if summary["tracked"] != count or summary["pending"] or summary["receipts_pushed"] != count:
            raise RuntimeError(f"the sensor's summary is not the whole campaign: {summary}")
    return {
        "messages": count,
        "pushes": len(payloads),
        "http_ingest_receipts": ingested,
        "http_ingest_s": ingest_s,
        "http_ingest_per_s": ingested / ingest_s,
        "whole_sensor_s": whole["sensor_s"],
        "whole_task_s": whole["task_s"],
        "whole_dag_test_s": whole["seconds"],
        "whole_peak_rss_mb": whole["peak_rss_mb"],
        "whole_pokes": whole["pokes"],
        "whole_poke_s": whole["poke_s"],
        "query_calls": push_queries,
        "last_share": args.last_share,
        "last_receipts": late_receipts,
        "last_pushes": len(late),
        "poke_interval_s": args.poke_interval,
        "waited_before_last_push_s": tail["last_answer_at"] - waiting_at,
        "latency_s": latency,
        "latency_to_task_end_s": task_latency,
        "latency_to_last_poke_s": latency_run["last_poke_ended_at"] - tail["last_answer_at"],
        "latency_pokes": latency_run["pokes"],
        "latency_poke_s": latency_run["poke_s"],
        "latency_run_sensor_s": latency_run["sensor_s"],
        "latency_peak_rss_mb": latency_run["peak_rss_mb"],
        "delivered": whole["summary"]["delivered"],
        "failed": whole["summary"]["failed"],
    }


def send_campaign(emulator: str, path: Path, count: int, campaign_id: str) -> float:
    """``count`` messages sent to the emulator by the client (at its 2,000/s cap, 64 in flight), written to
    ``path`` as the operator writes its results file; returns the seconds it took."""
    import asyncio

    from airflow_provider_globesms.client import AsyncGlobeSmsClient, Credentials, GlobeSmsClient
    from airflow_provider_globesms.client.aio import run

    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator)
    encode = msgspec.json.Encoder().encode

    async def main() -> None:
        sender = AsyncGlobeSmsClient(client, max_connections=64)
        slots = asyncio.Semaphore(64)

        async def one(n: int) -> bytes:
            request = client.build_send_request("+" + to_number(n), "Your code is 1234.", task_id=campaign_id)
            async with slots:
                sent = await sender.send(request)
            line = {"row": n + 1, "to": "+" + to_number(n), "status": "accepted", "campaign_id": campaign_id}
            return encode({**line, "message_id": sent.message_id, "segments": sent.segments}) + b"\n"

        try:
            lines = await asyncio.gather(*(one(n) for n in range(count)))
        finally:
            await sender.aclose()
        path.write_bytes(b"".join(lines))

    started = time.perf_counter()
    run(main())
    return time.perf_counter() - started


def polling(workdir: Path, emulator: str, args: argparse.Namespace) -> dict[str, Any]:
    results = workdir / "poll-results.jsonl"
    send_s = send_campaign(emulator, results, args.poll, "bench-poll")
    before = query_calls(emulator)
    params = {"results": str(results), "emulator": emulator, "poke_interval": args.poke_interval}
    run = run_child("poll", workdir / "home-poll", params)
    calls = query_calls(emulator) - before
    summary = run["summary"]
    if summary["tracked"] != args.poll or summary["pending"]:
        raise RuntimeError(f"the polling sensor's summary is not every message: {summary}")
    return {
        "messages": args.poll,
        "send_s": send_s,
        "sensor_s": run["sensor_s"],
        "task_s": run["task_s"],
        "dag_test_s": run["seconds"],
        "pokes": run["pokes"],
        "poke_s": run["poke_s"],
        "query_calls": calls,
        "peak_rss_mb": run["peak_rss_mb"],
        "per_s": args.poll / run["sensor_s"],
    }


def sensors(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    with emulator_process("--delivery-delay", "0") as (emulator, _):
        push = campaign(workdir, emulator, args)
        poll = polling(workdir, emulator, args)
    scale = args.campaign / args.poll
    scaled = poll["sensor_s"] * scale
    ratio = scaled / push["whole_sensor_s"]
    n, p = f"{args.campaign:,}", f"{args.poll:,}"
    print(f"\n2. Delivery sensor on a {n}-message campaign (dag.test in its own process and Airflow home)")
    print("   sensor: its execute(), first poke to summary; task: the task instance's duration (adds Airflow's")
    print("   per-task start-up in dag.test); dag.test: all of it")
    print(
        table(
            ["what", "value"],
            [
                [
                    f"receipts pushed through the receiver ({push['http_ingest_receipts']:,}, "
                    f"{args.connections} connections)",
                    f"{push['http_ingest_per_s']:,.0f}/s",
                ],
                [
                    "push sensor, every receipt already pushed: sensor / task / dag.test",
                    f"{push['whole_sensor_s']:.1f} / {push['whole_task_s']:.1f} / {push['whole_dag_test_s']:.1f} s",
                ],
                [
                    "  pokes (seconds each); the rest is the summary and the results file written",
                    f"{push['whole_pokes']} ({', '.join(f'{x:.1f}' for x in push['whole_poke_s'])})",
                ],
                ["  QueryMessage calls (both push sensor runs)", push["query_calls"]],
                ["  peak RSS of the child", f"{push['whole_peak_rss_mb']:.0f} MB"],
                [
                    f"push sensor waiting, last {push['last_receipts']:,} receipts pushed "
                    f"(poke_interval {args.poke_interval:g} s): last push's answer to sensor done / task end",
                    f"{push['latency_s']:.1f} / {push['latency_to_task_end_s']:.1f} s",
                ],
                [
                    "  of which: last push's answer to the end of the poke that saw it",
                    f"{push['latency_to_last_poke_s']:.1f} s",
                ],
                ["  peak RSS of that child", f"{push['latency_peak_rss_mb']:.0f} MB"],
                [
                    f"poll sensor (receipts_by_push=False), {p} messages: sensor / task",
                    f"{poll['sensor_s']:.1f} / {poll['task_s']:.1f} s",
                ],
                ["  QueryMessage calls", poll["query_calls"]],
                ["  peak RSS of the child", f"{poll['peak_rss_mb']:.0f} MB"],
                [f"poll sensor scaled x{scale:g} to {n} messages", f"{scaled:,.0f} s"],
            ],
        )
    )
    print(f"   scaled poll time / push sensor time: {ratio:.1f}x")
    return {"push": push, "poll": poll, "scale": scale, "poll_scaled_s": scaled, "ratio": ratio}


# --- the Airflow child ----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM): ``ru_maxrss`` would carry over the bench's own peak,
    which Linux keeps across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(mode: str, home: str, raw: str) -> None:
    """One DAG in ``dag.test()`` with a fresh Airflow home; prints ``RESULT {json}``."""
    params = json.loads(raw)
    os.makedirs(f"{home}/dags")
    connection = {
        "conn_type": "globesms",
        "login": "AKID",
        "password": "SECRET",
        "extra": {"endpoint": params["emulator"]},
    }
    os.environ.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__DAGS_FOLDER=f"{home}/dags",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        AIRFLOW_CONN_GLOBESMS_DEFAULT=json.dumps(connection),
    )
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.sdk import DAG
    from airflow.utils import db
    from airflow.utils.session import create_session

    from airflow_provider_globesms.sensors.globesms import GlobeSmsDeliverySensor

    # The sensor's own wall time: its execute() from the first poke to the summary returned (the task
    # instance's duration adds Airflow's per-task start-up in dag.test(), about 5 s here).
    pokes, timing = [0], dict[str, Any]()
    original_poke, original_execute = GlobeSmsDeliverySensor.poke, GlobeSmsDeliverySensor.execute

    def counted_poke(self: GlobeSmsDeliverySensor, context: Any) -> bool:
        pokes[0] += 1
        started = time.perf_counter()
        try:
            return original_poke(self, context)
        finally:
            timing["poke_s"] = [*timing.get("poke_s", []), round(time.perf_counter() - started, 3)]
            timing["last_poke_ended_at"] = time.time()

    def timed_execute(self: GlobeSmsDeliverySensor, context: Any) -> Any:
        timing["started_at"], started = time.time(), time.perf_counter()
        try:
            return original_execute(self, context)
        finally:
            timing["sensor_s"], timing["ended_at"] = time.perf_counter() - started, time.time()

    GlobeSmsDeliverySensor.poke = counted_poke  # type: ignore[method-assign]
    GlobeSmsDeliverySensor.execute = timed_execute  # type: ignore[method-assign]
    db.initdb()
    with DAG(f"bench_receipts_{mode}", schedule=None) as dag:
        if mode == "push":
            GlobeSmsDeliverySensor(
                task_id="sensor",
                messages=params["results"],
                receipts_by_push=True,
                campaign_id=params["campaign_id"],
                push_uri=params["store"],
                poke_interval=params["poke_interval"],
                timeout=3600,
            )
        else:
            GlobeSmsDeliverySensor(
                task_id="sensor",
                messages=params["results"],
                receipts_by_push=False,
                poke_interval=params["poke_interval"],
                timeout=3600,
            )
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)  # type: ignore[no-untyped-call]
    bag = DagBag(dag_folder=f"{home}/dags")
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    started = time.monotonic()
    run = dag.test()
    seconds = time.monotonic() - started
    (sensor_ti,) = run.get_task_instances()
    result = {
        "state": str(run.state),
        "seconds": seconds,
        "task_s": (sensor_ti.end_date - sensor_ti.start_date).total_seconds(),
        "task_ended_at": sensor_ti.end_date.timestamp(),
        **timing,
        "pokes": pokes[0],
        "peak_rss_mb": peak_rss_mb(),
        "summary": sensor_ti.xcom_pull(task_ids="sensor"),
    }
    print("RESULT " + json.dumps(result, default=str), flush=True)


# --- main ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest", type=int, default=200_000, help="receipts for the ingest figures; 0 to skip")
    parser.add_argument("--push-size", type=int, default=500, help="receipts in one push")
    parser.add_argument("--campaigns", type=int, default=4, help="campaigns (TaskIds) the ingest pushes spread over")
    parser.add_argument("--connections", type=int, default=12, help="pushes in flight, one keep-alive connection each")
    parser.add_argument("--campaign", type=int, default=1_000_000, help="messages in the sensor's campaign; 0 to skip")
    parser.add_argument("--last-share", type=float, default=0.01, help="receipts pushed while the sensor waits")
    parser.add_argument("--poll", type=int, default=10_000, help="messages the polling sensor tracks")
    parser.add_argument("--poke-interval", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes, for the smoke test: {QUICK}")
    parser.add_argument("--profile", action="store_true", help="also profile the receiver in this process")
    parser.add_argument("--out", default="receipts_push", help="the JSON's name under bench/out/")
    args = parser.parse_args(argv)
    if args.quick:  # the tiny sizes as defaults: flags given still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    saved: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "out"}}
    with tempfile.TemporaryDirectory(prefix="globesms-bench-push-") as tmp:
        workdir = Path(tmp)
        if args.ingest:
            saved["ingest"] = ingest(workdir, args)
        if args.profile and args.ingest:
            saved["profile"] = profile_receiver(workdir, args)
        if args.campaign and args.poll:
            saved["sensor"] = sensors(workdir, args)
    path = save(args.out, saved)
    print(f"\nwritten: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main(*sys.argv[2:5])
    elif sys.argv[1:2] == ["--client"]:
        client_main(*sys.argv[2:5])
    else:
        sys.exit(main())
