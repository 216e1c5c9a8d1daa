"""bench/receipts_push.py runs end to end at tiny sizes (``--quick``): it prints its ratios and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_receipts_push_bench_runs_quick() -> None:
    name = "receipts_push_smoke"  # not the real run's file
    out = ROOT / "bench" / "out" / f"{name}.json"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "bench/receipts_push.py", "--quick", "--out", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "x in-process" in done.stdout
    assert "scaled poll time / push sensor time:" in done.stdout
    saved = json.loads(out.read_text())
    out.unlink()
    ingest, push, poll = saved["ingest"], saved["sensor"]["push"], saved["sensor"]["poll"]
    assert ingest["in_process_per_s"] > 0
    assert ingest["receiver_per_s"] > 0
    assert ingest["ratio"] == pytest.approx(ingest["receiver_per_s"] / ingest["in_process_per_s"])
    assert push["query_calls"] == 0  # receipts by push: QueryMessage never asked
    assert push["delivered"] + push["failed"] == push["messages"]
    assert poll["query_calls"] >= poll["messages"]
    assert saved["sensor"]["ratio"] > 0
