"""One example DAG by hand: ``make example NAME=<dag_id> [CONF=...]`` (``scripts/demo.py --only``) starts the
emulator, sets up a private Airflow home and runs that one DAG, as a user trying an example does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GLOBESMS_DEMO_DIR": str(tmp_path / "demo")}
    for name in [n for n in env if n.startswith(("AIRFLOW_", "AIRFLOW__"))]:
        del env[name]  # the tests' own Airflow home must not leak in: the script makes its own
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--only", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)


def test_one_example_runs_by_hand_and_says_what_it_sent(tmp_path: Path) -> None:
    done = run_example(tmp_path, "globesms_daily_notification")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": success" in done.stdout
    assert "report_ready: success (recipients 3," in done.stdout
    assert "emulator received 3 messages" in done.stdout
    assert "+852****4567" in done.stdout  # numbers masked
    assert "+85291234567" not in done.stdout
    assert (tmp_path / "demo" / "logs" / "globesms_daily_notification.log").is_file()


def test_a_run_conf_is_passed_and_a_failed_run_exits_non_zero(tmp_path: Path) -> None:
    done = run_example(tmp_path, "globesms_failure_alerts", "--conf", json.dumps({"simulate": "outage"}))
    assert done.returncode == 1, done.stdout + done.stderr
    assert ": failed" in done.stdout
    assert "emulator received" in done.stdout


def test_an_unknown_example_names_the_examples(tmp_path: Path) -> None:
    done = run_example(tmp_path, "globesms_no_such_dag")
    assert done.returncode != 0
    assert "no example DAG 'globesms_no_such_dag'" in done.stderr
    assert "globesms_weekly_promotion" in done.stderr
