"""One example DAG by hand: ``make example NAME=<dag_id> [CONF=...]`` (``scripts/demo.py --only``) starts the
emulator, sets up a private Airflow home and runs that one DAG, as a user trying an example does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS_OUTPUT = ROOT / "docs" / "examples" / "example_by_hand.txt"  # on the docs' "Try it" page


def run_example(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GLOBESMS_DEMO_DIR": str(tmp_path / "demo")}
    for name in [n for n in env if n.startswith(("AIRFLOW_", "AIRFLOW__"))]:
        del env[name]  # the tests' own Airflow home must not leak in: the script makes its own
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--only", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)


def shape(line: str) -> str:
    """A line of output without what changes from run to run (the port, the run's time and its digests, the
    dates in the texts); counts, masked numbers and texts stay."""
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    line = re.sub(r"manual__\d{4}-\d\d-\d\dT[\d:._+-]+", "RUN", line)
    line = re.sub(r"\b[0-9a-f]{10,}\b", "DIGEST", line)
    return re.sub(r"\d{4}-\d{2}-\d{2}", "DATE", line).rstrip()


def test_one_example_runs_by_hand_and_prints_what_the_docs_show(tmp_path: Path) -> None:
    """The docs' "Try it" page shows this run's output: the same lines, give or take dates and digests."""
    demo = tmp_path / "demo"
    done = run_example(tmp_path, "globesms_templated_campaign")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "send_reminders: success (recipients 12, valid 10, invalid 2, total 12, accepted 10," in done.stdout
    assert "emulator received 10 messages" in done.stdout
    assert "+852****4567" in done.stdout  # numbers masked
    assert "+85291234567" not in done.stdout
    assert (demo / "logs" / "globesms_templated_campaign.log").is_file()
    printed = [shape(line.replace(f"{demo}/", ".demo/")) for line in done.stdout.splitlines()]
    shown = [shape(line) for line in DOCS_OUTPUT.read_text(encoding="utf-8").splitlines()]
    assert shown == printed, "docs/examples/example_by_hand.txt no longer shows what it prints"


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
