"""``make demo``: run the example DAGs against the local emulator and show what happened.

Everything stays on this machine: a project-local AIRFLOW_HOME (.demo/airflow, SQLite), the emulator
on a free loopback port, each example DAG run with ``dag.test()``. Airflow's own logs go to
.demo/logs/<dag>.log; the terminal shows a short summary per DAG and what the emulator received.
Stops the emulator on the way out, also when interrupted. Running it again works.

``make example NAME=<dag_id> [CONF='{"key": "value"}']`` (``scripts/demo.py --only <dag_id> [--conf JSON]``)
runs one example DAG the same way and prints each task's state and summary and what the emulator received:
the way to try one example by hand (loading an example file and calling ``dag.test()`` yourself needs the
Airflow home, the DAG's serialization and a connection, which this sets up). ``GLOBESMS_DEMO_DIR`` moves
``.demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("GLOBESMS_DEMO_DIR") or ROOT / ".demo")
EXAMPLES = ROOT / "example_dags"
LARGE_ROWS = 8000
_children: list[subprocess.Popen[str]] = []  # stopped by the signal handler too
_terminal: tuple[int, int] | None = None  # the real stdout/stderr while Airflow's logs are redirected


def say(text: str = "") -> None:
    print(text, flush=True)


def shown(path: object) -> str:
    """A path as the reader can use it: relative to the current folder when it is inside it."""
    text, here = str(path), f"{Path.cwd()}/"
    return text[len(here) :] if text.startswith(here) else text


from airflow_provider_globesms.testing import run_dag, xcom_values  # noqa: E402 - after the constants above


def mask(number: str) -> str:
    from airflow_provider_globesms.client import mask_number

    return mask_number(number)


def stop(process: subprocess.Popen[str]) -> None:
    """Ask a child to stop; kill it if it has not within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def receiver() -> Iterator[str]:
    """The push receiver (``globesms-receiver``) in its own process, keeping receipts in .demo/push; gives the
    URL the emulator pushes to. Its secret is made here and passed in its environment, never on a command line."""
    secret, port = secrets.token_urlsafe(32), free_port()
    store = DEMO / "push"
    command = [
        sys.executable,
        "-m",
        "airflow_provider_globesms.receiver.cli",
        "--port",
        str(port),
        "--store",
        str(store),
    ]
    environment = {**os.environ, "GLOBESMS_PUSH_SECRET": secret}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    _children.append(process)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "receiving at" not in line:
            raise SystemExit(f"the push receiver did not start: {line}")
        os.environ["AIRFLOW__GLOBESMS__PUSH_URI"] = str(store)  # where the sensor reads what was pushed
        yield f"http://127.0.0.1:{port}/globesms/push/{secret}/receipts"
    finally:
        stop(process)


@contextmanager
def emulator() -> Iterator[str]:
    """The emulator in its own process: receipts after about a second, 5% of them failing, each pushed to the
    push receiver as Alibaba pushes them (retried after 1, 5 and 10 s)."""
    stack = ExitStack()
    push_url = stack.enter_context(receiver())
    command = [
        sys.executable,
        "-m",
        "airflow_provider_globesms.emulator",
        "--port",
        "0",
        "--delivery-delay",
        "1",
        "--failure-rate",
        "0.05",
        "--latency-ms",
        "20",
        "--seed",
        "42",
        "--push-url",
        push_url,
        "--push-retry",
        "1,5,10",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _children.append(process)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"the emulator did not start: {line}{process.stderr.read() if process.stderr else ''}")
        yield line.split("listening on ")[1].split()[0]
    finally:
        stop(process)
        stack.close()  # the receiver, after the emulator that pushes to it


@contextmanager
def logs_to(path: Path) -> Iterator[None]:
    """Send everything written to stdout/stderr (Airflow's logs) to a file, at the descriptor level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    global _terminal
    sys.stdout.flush()
    sys.stderr.flush()
    saved = _terminal = os.dup(1), os.dup(2)
    with path.open("w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            _terminal = None


def emulator_get(url: str, path: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url + path, timeout=30) as response:  # noqa: S310 - our loopback emulator
        return json.loads(response.read())


def prepare_airflow(url: str) -> None:
    home = DEMO / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLES),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__GLOBESMS__SANDBOX_URL=url,  # each send task links to its campaign in the sandbox inbox
        AIRFLOW_CONN_GLOBESMS_DEFAULT=json.dumps(
            {"conn_type": "globesms", "login": "AKID", "password": "SECRET", "extra": {"endpoint": url}}
        ),
    )
    with logs_to(DEMO / "logs" / "setup.log"):
        from airflow.utils import db

        db.initdb()


def run(dag_id: str, conf: dict[str, Any] | None = None, label: str = "") -> Any:
    from airflow.dag_processing.dagbag import DagBag

    with logs_to(DEMO / "logs" / f"{dag_id}{label}.log"):
        bag = DagBag(dag_folder=str(EXAMPLES / f"{dag_id}.py"))
        if bag.import_errors:
            raise SystemExit(f"{dag_id} does not import: {bag.import_errors}")
        return run_dag(bag.dags[dag_id], run_conf=conf)


def received(url: str, since: int) -> list[dict[str, Any]]:
    return list(emulator_get(url, f"/_emulator/messages?limit=100000&offset={since}")["messages"])


def show_received(messages: list[dict[str, Any]], samples: int = 2) -> None:
    statuses = Counter(m["status"] for m in messages)
    say(f"   emulator received {len(messages)} messages ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))})")
    for m in messages[:samples]:
        say(f"     {mask(m['to'])}: {m['message']!r} ({m['segments']} segment, TaskId {m['task_id']})")


def keep_serving(url: str) -> None:
    """``make demo KEEP=1``: leave the emulator up, its inbox holding what the examples sent, until Ctrl-C."""
    say(f"\nThe emulator stays up: open {url}/_emulator/ui to see what the examples sent. Ctrl-C stops it.")
    while True:
        signal.pause()


def main(keep: bool = False) -> int:
    started = time.monotonic()
    problems: list[str] = []
    with emulator() as url:
        home, logs = shown(DEMO / "airflow"), shown(DEMO / "logs")
        say(f"globesms demo: emulator at {url}; Airflow home {home} (SQLite); logs in {logs}")
        say(f"SMS sandbox inbox (live): {url}/_emulator/ui")
        prepare_airflow(url)
        seen = 0

        say("\n== globesms_daily_notification: a scheduled text to the team")
        dag_run = run("globesms_daily_notification")
        (summary,) = xcom_values(dag_run, "report_ready")
        say(f"   {dag_run.state}: accepted {summary['accepted']}, segments {summary['segments']}")
        messages = received(url, seen)
        seen += len(messages)
        show_received(messages, 1)
        problems += [] if dag_run.state == "success" else ["globesms_daily_notification did not succeed"]

        say("\n== globesms_templated_campaign: personalised texts from a CSV, then delivery receipts")
        dag_run = run("globesms_templated_campaign")
        sent = (xcom_values(dag_run, "send_reminders") or [{}])[0]
        receipts = (xcom_values(dag_run, "wait_for_receipts") or [{}])[0]
        say(
            f"   {dag_run.state}: accepted {sent.get('accepted')}, invalid rows skipped {sent.get('invalid')}, "
            f"delivered {receipts.get('delivered')}, failed {receipts.get('failed')} "
            f"{receipts.get('failed_by_code') or ''}, segments {sent.get('segments')}"
        )
        say(f"   receipts per recipient: {shown(receipts.get('results_uri'))}")
        messages = received(url, seen)
        seen += len(messages)
        show_received(messages)
        problems += [] if dag_run.state == "success" else ["globesms_templated_campaign did not succeed"]

        seen, problems = demo_receipts_by_push(url, seen, problems)

        for simulate, expected in (("transient", "success"), ("outage", "failed")):
            say(f"\n== globesms_failure_alerts, simulate={simulate}: SMS alerts from callbacks")
            dag_run = run("globesms_failure_alerts", {"simulate": simulate}, label=f"-{simulate}")
            messages = received(url, seen)
            seen += len(messages)
            say(f"   {dag_run.state} (expected {expected}); {len(messages)} alert(s):")
            for m in messages:
                say(f"     {mask(m['to'])}: {m['message']!r}")
            if dag_run.state != expected:
                problems.append(f"globesms_failure_alerts ({simulate}) ended {dag_run.state}, not {expected}")

        say(f"\n== globesms_fan_out: {LARGE_ROWS:,} recipients in mapped shards sharing the account's QPS cap")
        fan_started = time.monotonic()
        dag_run = run("globesms_fan_out", {"sample_rows": LARGE_ROWS})
        totals = (xcom_values(dag_run, "total") or [{}])[0]
        shards = xcom_values(dag_run, "send_shard")
        say(
            f"   {dag_run.state}: {len(shards)} shards, accepted {totals.get('accepted')}, failed "
            f"{totals.get('failed')}, segments {totals.get('segments')} in {time.monotonic() - fan_started:.0f} s"
        )
        messages = received(url, seen)
        seen += len(messages)
        show_received(messages, 1)
        windows = emulator_get(url, "/_emulator/stats")["windows"]["SendMessageToGlobe"]["AKID"]
        say(
            f"   busiest second at the emulator: {windows['peak_accepted_1s']} sends (shards of 450/s each, at most 4 "
            "at once: never over the account's 2,000/s)"
        )
        problems += [] if dag_run.state == "success" else ["globesms_fan_out did not succeed"]
        report(started, seen, problems)
        if keep:
            keep_serving(url)
    return 1 if problems else 0


def task_line(dag_run: Any, ti: Any) -> str:
    """A task's state, and for an unmapped one its summary's non-zero counts and results file."""
    name = f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id
    summary = (xcom_values(dag_run, ti.task_id) or [None])[0] if ti.map_index < 0 else None
    if not isinstance(summary, dict):
        return f"{name}: {ti.state}"
    counts = ", ".join(f"{k} {v}" for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool) and v)
    where = f"; {shown(summary['results_uri'])}" if summary.get("results_uri") else ""
    return f"{name}: {ti.state} ({counts}){where}"


def demo_receipts_by_push(url: str, seen: int, problems: list[str]) -> tuple[int, list[str]]:
    """The example whose receipts the emulator pushes to the receiver: settled without one QueryMessage."""
    say("\n== globesms_receipts_by_push: receipts pushed to the receiver, read by a deferred sensor")
    dag_run = run("globesms_receipts_by_push")
    receipts = (xcom_values(dag_run, "wait_for_pushed_receipts") or [{}])[0]
    queries = emulator_get(url, "/_emulator/stats")["actions"].get("QueryMessage", {}).get("requests", 0)
    say(
        f"   {dag_run.state}: {receipts.get('receipts_pushed')} of {receipts.get('tracked')} receipts came by push "
        f"(kept in {shown(DEMO / 'push')}); delivered {receipts.get('delivered')}; QueryMessage calls so far "
        f"{queries} (the templated campaign's sensor polls)"
    )
    messages = received(url, seen)
    show_received(messages, 1)
    failed = [] if dag_run.state == "success" else ["globesms_receipts_by_push did not succeed"]
    return seen + len(messages), problems + failed


def run_one(dag_id: str, conf: dict[str, Any] | None, keep: bool = False) -> int:
    """One example DAG, by hand: every task's state and summary, and what the emulator received."""
    if not (EXAMPLES / f"{dag_id}.py").is_file():
        names = sorted(p.stem for p in EXAMPLES.glob("globesms_*.py"))
        raise SystemExit(f"no example DAG {dag_id!r}; the examples: {', '.join(names)}")
    with emulator() as url:
        log = shown(DEMO / "logs" / f"{dag_id}.log")
        say(f"{dag_id}: emulator at {url}; Airflow home {shown(DEMO / 'airflow')}; log {log}")
        prepare_airflow(url)
        dag_run = run(dag_id, conf)
        say(f"   run {dag_run.run_id}: {dag_run.state}")
        for ti in sorted(dag_run.get_task_instances(), key=lambda ti: (ti.task_id, ti.map_index)):
            say(f"   {task_line(dag_run, ti)}")
        show_received(received(url, 0), 3)
        if keep:
            keep_serving(url)
    return 0 if dag_run.state == "success" else 1


def report(started: float, seen: int, problems: list[str]) -> None:
    say(
        f"\nDone in {time.monotonic() - started:.0f} s; the emulator received {seen} messages; "
        "nothing left this machine."
    )
    for problem in problems:
        say(f"PROBLEM: {problem} (see {DEMO / 'logs'})")


def _stop(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM: stop every process we started and leave at once.

    Unwinding politely is not enough: dag.test() runs tasks in this process and may hold on to an
    interrupted task. Nothing else needs cleaning: a later run settles what the ledgers left pending.
    """
    for child in _children:
        if child.poll() is None:
            child.terminate()
    for child in _children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    if _terminal is not None:
        os.dup2(_terminal[0], 1)
        os.dup2(_terminal[1], 2)
    os.write(2, f"\ninterrupted ({signal.Signals(signum).name}); the emulator was stopped\n".encode())
    os._exit(130)


if __name__ == "__main__":
    # Installed before anything runs: asyncio then leaves SIGINT to us instead of taking it over.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keep", action="store_true", help="leave the emulator (and its inbox) up, until Ctrl-C")
    parser.add_argument("--only", metavar="DAG_ID", help="run this one example DAG")
    parser.add_argument("--conf", type=json.loads, help="the run's conf (JSON), with --only")
    args = parser.parse_args()
    sys.exit(run_one(args.only, args.conf, args.keep) if args.only else main(keep=args.keep))
