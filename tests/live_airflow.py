"""A real Airflow on this machine, for the live tests: api-server, scheduler, dag-processor and triggerer
(LocalExecutor, SQLite) in a temporary AIRFLOW_HOME on free loopback ports.

Everything it starts runs in its own process group and is stopped on exit (SIGTERM, then SIGKILL after a
bounded wait). Waits are bounded; on a timeout the error carries the tail of every component's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = {"success", "failed"}
DB_BUSY_SECONDS = 60  # how long an Airflow component waits for SQLite's write lock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveAirflow:
    """``with LiveAirflow(home, dags, env) as airflow: airflow.api("GET", "/dags")``."""

    def __init__(
        self,
        home: Path,
        dags: Path,
        env: Mapping[str, str] | None = None,
        extra_components: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.home = home
        self.dags = dags
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # component name -> its `airflow` arguments
        self.components: dict[str, list[str]] = {name: [name] for name in COMPONENTS}
        self.components["api-server"] += ["--port", str(self.port), "--host", "127.0.0.1"]
        self.components.update(extra_components or {})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        airflow = Path(sys.executable).with_name("airflow")
        self.airflow = str(airflow if airflow.exists() else shutil.which("airflow"))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API_AUTH__JWT_SECRET": "live-test-jwt-secret-0123456789abcdef",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            **(env or {}),
        }
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in self.env:
            # SQLite's default 5 s busy timeout: a loaded 2-core CI machine with a scheduler, a triggerer,
            # a DAG processor and eight task processes writing saw "database is locked" (500) on a trigger
            self.env.update(
                AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS="live_db_settings.CONNECT_ARGS",
                AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC="live_db_settings.CONNECT_ARGS",
                PYTHONPATH=os.pathsep.join(filter(None, [str(home / "pythonpath"), os.environ.get("PYTHONPATH")])),
            )

    # --- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> LiveAirflow:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` command in this home; raises with its output when it fails."""
        done = subprocess.run(
            [self.airflow, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "component-logs").mkdir(exist_ok=True)
        (self.home / "pythonpath").mkdir(exist_ok=True)
        (self.home / "pythonpath" / "live_db_settings.py").write_text(
            f"CONNECT_ARGS = {{'timeout': {DB_BUSY_SECONDS}}}\n"
        )
        self.cli("db", "migrate", timeout=300)
        database = self.home / "airflow.db"
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in self.env and database.exists():
            # Write-ahead logging (kept in the file): readers no longer block the writer nor it them. In the
            # default journal a loaded machine saw a trigger wait a minute behind the scheduler's readers.
            with contextlib.closing(sqlite3.connect(database)) as db:
                db.execute("PRAGMA journal_mode=WAL")
        for name in self.components:
            self.launch(name)
        self.wait_for("the API server to answer", self._healthy, timeout=120)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def kill(self, name: str) -> None:
        """SIGKILL one component and every process under it, as if its machine died (a Celery worker's
        pool, supervisors and tasks included, whatever process group they moved to)."""
        process = self.processes.pop(name)
        for doomed in [process.pid, *_descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(doomed, signal.SIGKILL)
        process.wait(timeout=10)

    def launch(self, name: str) -> None:
        """Start one component (again), in its own process group, appending to its log."""
        log = (self.home / "component-logs" / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [self.airflow, *self.components[name]],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    # --- waiting ------------------------------------------------------------------------------------

    def report(self) -> str:
        """The tail of every component's log, for a failure message."""
        parts = []
        for name in self.components:
            path = self.home / "component-logs" / f"{name}.log"
            tail = path.read_bytes()[-2500:].decode(errors="replace") if path.exists() else "(no log)"
            state = self.processes[name].poll() if name in self.processes else "stopped"
            parts.append(f"--- {name} (exit code {state}) ---\n{tail}")
        return "\n".join(parts)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({process.returncode}) while waiting for {what}\n{self.report()}"
                    )
            result = check()
            if result:
                return result
            time.sleep(every)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.report()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    # --- the REST API v2 ----------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201, 204)) -> Any:
        if self._token is None:
            with urllib.request.urlopen(f"{self.url}/auth/token", timeout=30) as reply:
                self._token = json.loads(reply.read())["access_token"]
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"authorization": f"Bearer {self._token}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2 * DB_BUSY_SECONDS) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        if status not in expect:
            raise AssertionError(f"{method} {path} -> {status}: {raw[:2000]!r}{self._server_error(status)}")
        return json.loads(raw) if raw else None

    def _server_error(self, status: int) -> str:
        """For a 500, the API server's last error lines (its answer hides the cause)."""
        log = self.home / "component-logs" / "api-server.log"
        if status != 500 or not log.exists():
            return ""
        lines = log.read_text(errors="replace").splitlines()
        errors = [line for line in lines if "Error" in line or "locked" in line]
        return "\napi-server log:\n" + "\n".join(errors[-8:])[-3000:]

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120) -> None:
        def parsed() -> bool:
            known = {d["dag_id"] for d in self.api("GET", "/dags?limit=100")["dags"]}
            return set(dag_ids) <= known

        self.wait_for(f"the DAGs {dag_ids} to be parsed", parsed, timeout, every=1)
        errors = self.api("GET", "/importErrors")["import_errors"]
        if errors:
            raise AssertionError(f"import errors: {errors}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> str:
        """Create a run with our own run id, so a retry after a lost answer cannot make a second run."""
        run_id = f"manual__live__{uuid.uuid4().hex[:12]}"
        body = {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf or {}}
        for attempt in range(8):
            try:
                self.api("POST", f"/dags/{dag_id}/dagRuns", body, expect=(200, 201, 409) if attempt else (200, 201))
                return run_id
            except (AssertionError, TimeoutError) as exc:
                # A database error (SQLite busy under load) rolled the run back, the answer was lost, or the DAG
                # was not (re)serialized yet after an unpause on a loaded machine ("Dag ... not found", 404):
                # try again, as a person would; a 409 then means the run exists.
                retryable = "-> 500" in str(exc) or "-> 404" in str(exc) or isinstance(exc, TimeoutError)
                if not retryable or attempt == 7:
                    raise
                time.sleep(2 + 2 * attempt)
        raise AssertionError("unreachable")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
            return run if run["state"] in TERMINAL_RUN_STATES else None

        return dict(self.wait_for(f"run {run_id} of {dag_id} to finish", finished, timeout, every=1))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        quoted = urllib.parse.quote(run_id, safe="")
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=1000")["task_instances"])


def parent_pid(pid: int) -> int:
    """The parent of a process, read from /proc."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(parent_pid(int(entry.name)), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def reported(text: str) -> int:
    """How many alerts an alert text reports: itself (unless it is a digest), and a digest's "+N more"."""
    more = re.search(r"\+(\d+) more since \d\d:\d\d UTC", text)
    return (0 if text.startswith("Airflow: +") else 1) + (int(more.group(1)) if more else 0)


def storm_spread(airflow: LiveAirflow, dag_id: str, run_id: str, task_id: str = "load") -> float:
    """Seconds from the first to the last end of a storm's failing tasks."""
    ends = [
        datetime.fromisoformat(ti["end_date"]).timestamp()
        for ti in airflow.task_instances(dag_id, run_id)
        if ti["task_id"] == task_id and ti["end_date"]
    ]
    return max(ends) - min(ends)
