"""Part 2 of ``bench/receipts_push.py``: a campaign's delivery sensor on pushed receipts (waiting for the last
share, and with every receipt already pushed) beside the polling baseline, each DAG in ``_push_child.py``."""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import msgspec
from _common import ROOT, emulator_process, table
from _push_receiver import push_all, receiver_process
from _push_records import bodies, receipt, to_number, write_results

CHILD = Path(__file__).resolve().parent / "_push_child.py"
CAMPAIGN_ID = "bench-campaign-0"
POLL_CAMPAIGN_ID = "bench-poll"


# --- the child and what it is doing -----------------------------------------------------------------


def run_child(mode: str, home: Path, params: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """One ``_push_child.py`` run to its end; its result, checked."""
    command = [sys.executable, str(CHILD), mode, str(home), json.dumps(params)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)
    return child_result(mode, done.stdout, done.stderr)


def child_result(mode: str, stdout: str, stderr: str) -> dict[str, Any]:
    """The child's ``RESULT`` line; an error, with its last lines, if there is none or the run failed."""
    if "RESULT " not in stdout:
        raise RuntimeError(f"{mode} child gave no result:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.split("RESULT ", 1)[1].splitlines()[0])
    if result["state"] != "success":
        errors = [line for line in (stdout + stderr).splitlines() if "Error" in line or "Exception" in line]
        raise RuntimeError(f"{mode} child did not succeed: {result} {errors[-5:]}")
    return result


def query_calls(emulator: str) -> int:
    """QueryMessage calls the emulator has answered so far."""
    with urlopen(f"{emulator}/_emulator/stats", timeout=30) as answer:  # noqa: S310 - our loopback emulator
        actions = json.loads(answer.read())["actions"]
    return int(actions.get("QueryMessage", {}).get("requests", 0))


def tracker_count(home: Path, query: str) -> int | None:
    """A count in the running sensor's tracker (under its Airflow home), read only; None before there is one."""
    path = next(home.rglob("receipts.sqlite3"), None)
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
    """How many of the running sensor's messages have no final receipt yet."""
    return tracker_count(home, "SELECT COUNT(*) FROM receipts WHERE status = 'pending'")


# --- the campaign on pushed receipts --------------------------------------------------------------------


@dataclass
class Campaign:
    """A campaign's results file and its push bodies: ``early`` pushed first, ``late`` while the sensor waits."""

    count: int
    store: Path
    early: list[bytes]
    late: list[bytes]
    late_receipts: int
    secret: str
    params: dict[str, Any]  # the push child's


def prepare_campaign(workdir: Path, emulator: str, args: argparse.Namespace) -> Campaign:
    """Write the campaign's results file and cut its receipts into pushes; the last ``--last-share`` apart."""
    count, results, store = args.campaign, workdir / "campaign-results.jsonl", workdir / "campaign-store"
    write_results(results, CAMPAIGN_ID, count)
    payloads = bodies([receipt(CAMPAIGN_ID, 0, n) for n in range(count)], args.push_size)
    last = max(1, round(len(payloads) * args.last_share))
    early, late = payloads[:-last], payloads[-last:]
    params = {
        "results": str(results),
        "store": str(store),
        "campaign_id": CAMPAIGN_ID,
        "emulator": emulator,
        "poke_interval": args.poke_interval,
    }
    late_receipts = sum(len(msgspec.json.decode(b)) for b in late)
    return Campaign(count, store, early, late, late_receipts, secrets.token_urlsafe(32), params)


def sensor_waiting(
    home: Path, c: Campaign, port: int, connections: int
) -> tuple[dict[str, Any], dict[str, float], float]:
    """The push sensor started, and once it has read the early pushes (so it waits for the rest), the late
    ones pushed. Returns its result, the late pushes' timing, and when it was seen waiting (epoch)."""
    command = [sys.executable, str(CHILD), "push", str(home), json.dumps(c.params)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) as child:
        deadline = time.monotonic() + 1800
        while tracker_read(home) < len(c.early):
            if child.poll() is not None or time.monotonic() > deadline:
                out, err = child.communicate()
                raise RuntimeError(f"the sensor never read the first pushes:\n{out[-2000:]}\n{err[-2000:]}")
            time.sleep(0.2)
        waiting_at = time.time()
        if (pending := tracker_pending(home)) != c.late_receipts:
            raise RuntimeError(f"{pending} messages pending after the first pushes; {c.late_receipts} expected")
        tail = push_all(port, c.secret, c.late, min(connections, len(c.late)))
        out, err = child.communicate(timeout=1800)
    return child_result("push", out, err), tail, waiting_at


def campaign(workdir: Path, emulator: str, args: argparse.Namespace) -> dict[str, Any]:
    """The push sensor (i) already waiting when the last share arrives, (ii) with every receipt pushed."""
    c = prepare_campaign(workdir, emulator, args)
    with receiver_process(c.store, c.secret, workdir / "receiver-campaign.log") as port:
        pushed = push_all(port, c.secret, c.early, args.connections)
        queries_before = query_calls(emulator)
        latency_run, tail, waiting_at = sensor_waiting(workdir / "home-latency", c, port, args.connections)
    # (ii) Every receipt already pushed: a fresh Airflow home reads the whole campaign at once.
    whole = run_child("push", workdir / "home-whole", c.params)
    push_queries = query_calls(emulator) - queries_before
    for run in (latency_run, whole):
        summary = run["summary"]
        if summary["tracked"] != c.count or summary["pending"] or summary["receipts_pushed"] != c.count:
            raise RuntimeError(f"the sensor's summary is not the whole campaign: {summary}")
    ingested, last_answer_at = c.count - c.late_receipts, tail["last_answer_at"]
    return {
        "messages": c.count,
        "pushes": len(c.early) + len(c.late),
        "http_ingest_receipts": ingested,
        "http_ingest_s": pushed["seconds"],
        "http_ingest_per_s": ingested / pushed["seconds"],
        "whole_sensor_s": whole["sensor_s"],
        "whole_task_s": whole["task_s"],
        "whole_dag_test_s": whole["seconds"],
        "whole_peak_rss_mb": whole["peak_rss_mb"],
        "whole_pokes": whole["pokes"],
        "whole_poke_s": whole["poke_s"],
        "query_calls": push_queries,
        "last_share": args.last_share,
        "last_receipts": c.late_receipts,
        "last_pushes": len(c.late),
        "poke_interval_s": args.poke_interval,
        "waited_before_last_push_s": last_answer_at - waiting_at,
        "latency_s": latency_run["ended_at"] - last_answer_at,
        "latency_to_task_end_s": latency_run["task_ended_at"] - last_answer_at,
        "latency_to_last_poke_s": latency_run["last_poke_ended_at"] - last_answer_at,
        "latency_pokes": latency_run["pokes"],
        "latency_poke_s": latency_run["poke_s"],
        "latency_run_sensor_s": latency_run["sensor_s"],
        "latency_peak_rss_mb": latency_run["peak_rss_mb"],
        "delivered": whole["summary"]["delivered"],
        "failed": whole["summary"]["failed"],
    }


# --- the polling baseline -------------------------------------------------------------------------------


def write_recipients(path: Path, count: int) -> None:
    """A CSV of ``count`` customers for ``_operator_child.MESSAGE``, as ``bench/bulk_send.py`` writes them."""
    with path.open("w") as handle:
        handle.write("to,name,parcel\n")
        handle.writelines(f"+{to_number(n)},Customer {n},HK{n:08d}\n" for n in range(count))


def polling(workdir: Path, emulator: str, args: argparse.Namespace) -> dict[str, Any]:
    """``--poll`` messages sent by the operator, then the sensor asking QueryMessage, in one ``dag.test()``."""
    recipients = workdir / "poll-recipients.csv"
    write_recipients(recipients, args.poll)
    params = {"recipients": str(recipients), "campaign_id": POLL_CAMPAIGN_ID, "emulator": emulator}
    before = query_calls(emulator)
    run = run_child("poll", workdir / "home-poll", {**params, "poke_interval": args.poke_interval})
    calls = query_calls(emulator) - before
    sent, summary = run["send_summary"], run["summary"]
    if sent["accepted"] != args.poll:
        raise RuntimeError(f"the operator did not get every message accepted: {sent}")
    if summary["tracked"] != args.poll or summary["pending"]:
        raise RuntimeError(f"the polling sensor's summary is not every message: {summary}")
    return {
        "messages": args.poll,
        "send_s": sent["seconds"],
        "send_task_s": run["send_task_s"],
        "sensor_s": run["sensor_s"],
        "task_s": run["task_s"],
        "dag_test_s": run["seconds"],
        "pokes": run["pokes"],
        "poke_s": run["poke_s"],
        "query_calls": calls,
        "peak_rss_mb": run["peak_rss_mb"],
        "per_s": args.poll / run["sensor_s"],
    }


# --- both, and their table ------------------------------------------------------------------------------


def sensors(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The push sensor's campaign and the polling baseline against one emulator; prints the table."""
    with emulator_process("--delivery-delay", "0") as (emulator, _):
        push = campaign(workdir, emulator, args)
        poll = polling(workdir, emulator, args)
    scale = args.campaign / args.poll
    scaled = poll["sensor_s"] * scale
    ratio = scaled / push["whole_sensor_s"]
    print_sensors(push, poll, args, scaled)
    print(f"   scaled poll time / push sensor time: {ratio:.1f}x")
    return {"push": push, "poll": poll, "scale": scale, "poll_scaled_s": scaled, "ratio": ratio}


def print_sensors(push: dict[str, Any], poll: dict[str, Any], args: argparse.Namespace, scaled: float) -> None:
    """Part 2's table: the push sensor's two runs, then polling and its time scaled to the campaign."""
    n, p = f"{args.campaign:,}", f"{args.poll:,}"
    print(f"\n2. Delivery sensor on a {n}-message campaign (dag.test in its own process and Airflow home)")
    print("   sensor: its execute(), first poke to summary; task: the task instance's duration (adds Airflow's")
    print("   per-task start-up in dag.test); dag.test: all of it")
    rows = [
        [
            f"receipts pushed through the receiver ({push['http_ingest_receipts']:,}, {args.connections} connections)",
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
            f"push sensor waiting, last {push['last_receipts']:,} receipts pushed (poke_interval "
            f"{args.poke_interval:g} s): last push's answer to sensor done / task end",
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
        ["  peak RSS of the child (the send task's included: one dag.test)", f"{poll['peak_rss_mb']:.0f} MB"],
        [f"poll sensor scaled x{args.campaign / args.poll:g} to {n} messages", f"{scaled:,.0f} s"],
    ]
    print(table(["what", "value"], rows))
