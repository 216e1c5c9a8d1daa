"""A suppression list of a million numbers against a 100,000-row campaign: memory stays flat, time per row.

Each variant runs in its own process (peak RSS is per process): the validation pass of the campaign
(render, validate, deduplicate, as the operator runs it) without a suppression list (the baseline, in the
same run), then with a list of ``--entries`` numbers, read from a file and indexed on disk, a tenth of the
campaign's numbers among them, and with a list ten times smaller (flat memory means the same peak for
both sizes), and with a list where one entry in five is written otherwise than plain E.164 (spaces, a trunk
prefix, a full-width plus: each read in full, under every reading it may have). Reported: peak RSS of each,
the time to load the list and its cost per entry, and the time added per campaign row.

    python bench/suppression.py [--rows 100000] [--entries 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import save, table


def number(n: int) -> str:
    return f"+8529{1_000_000 + n % 8_999_999:07d}"


def spaced(n: int) -> str:
    """Every fifth entry of the mixed list as people also write it: spaces, a US trunk prefix, full width."""
    plain = number(n)
    if n % 5:
        return plain
    return [f"{plain[:4]} {plain[4:8]} {plain[8:]}", f"+1 1 212 555 {n % 10_000:04d}", f"\uff0b{plain[1:]}"][n // 5 % 3]


def write_inputs(folder: Path, rows: int, entries: int) -> tuple[Path, Path, Path, Path]:
    campaign = folder / "campaign.csv"
    with campaign.open("w") as handle:
        handle.write("to,name\n")
        handle.writelines(f"{number(n)},Customer {n}\n" for n in range(rows))
    big, small, mixed = folder / "optouts-big.txt", folder / "optouts-small.txt", folder / "optouts-mixed.txt"
    for path, count, written in ((big, entries, number), (small, entries // 10, number), (mixed, entries, spaced)):
        with path.open("w") as handle:  # every tenth campaign number, then numbers outside the campaign
            listed = [number(n) for n in range(0, rows, 10)]
            handle.writelines(f"{line}\n" for line in listed[:count])
            handle.writelines(f"{written(rows + n)}\n" for n in range(max(0, count - len(listed))))
    return campaign, big, small, mixed


def measure(campaign: str, optouts: str | None) -> dict[str, float]:
    """In a fresh process: load the list (if any), validate the campaign against it; seconds and peak RSS."""
    from airflow_provider_globesms.client import Credentials, GlobeSmsClient
    from airflow_provider_globesms.client.bulk import Campaign, SuppressionList, validate
    from airflow_provider_globesms.client.campaign.suppression_sources import suppression_entries
    from airflow_provider_globesms.client.rules.recipients import rows_from_csv

    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint="http://127.0.0.1:9")  # never contacted
    work = tempfile.mkdtemp(prefix="bench-suppression-")
    started = time.perf_counter()
    suppression = None
    if optouts is not None:
        with open(optouts) as handle:
            suppression = SuppressionList(work).load(suppression_entries(handle, optouts))
    loaded = time.perf_counter()
    plan = Campaign(client, lambda row: f"Hi {row['name']}, our sale starts today.", ["bench", "run", "t", "-1"])
    with open(campaign, newline="") as handle:
        report = validate(plan, rows_from_csv(handle, "to"), workdir=work, suppression=suppression)
    done = time.perf_counter()
    return {
        "load_seconds": loaded - started,
        "validate_seconds": done - loaded,
        "suppressed": report.suppressed,
        "valid": report.valid,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_variant(campaign: Path, optouts: Path | None, rounds: int) -> dict[str, float]:
    """The variant ``rounds`` times, each in a fresh process; the fastest (least disturbed) round."""
    args = [sys.executable, __file__, "--measure", str(campaign), str(optouts) if optouts else "-"]
    runs = []
    for _ in range(rounds):
        done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=3600)
        runs.append(dict(json.loads(done.stdout.strip().splitlines()[-1])))
    return min(runs, key=lambda r: r["validate_seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant; the fastest counts")
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        campaign, optouts = args.measure
        print(json.dumps(measure(campaign, None if optouts == "-" else optouts)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-suppression-") as folder:
        campaign, big, small, mixed = write_inputs(Path(folder), args.rows, args.entries)
        variants = {
            "no list (baseline)": (None, 1),
            f"{args.entries // 10:,} entries": (small, args.entries // 10),
            f"{args.entries:,} entries": (big, args.entries),
            f"{args.entries:,} entries, 1 in 5 not plain E.164": (mixed, args.entries),
        }
        results = {name: run_variant(campaign, path, args.rounds) for name, (path, _) in variants.items()}
    base = results["no list (baseline)"]
    rows = [
        [
            name,
            f"{r['peak_rss_mb']:.0f}",
            f"{r['load_seconds']:.1f}",
            f"{r['load_seconds'] / variants[name][1] * 1e6:.2f}" if variants[name][0] else "",
            f"{r['validate_seconds']:.1f}",
            f"{(r['validate_seconds'] - base['validate_seconds']) / args.rows * 1e6:+.1f}",
            int(r["suppressed"]),
        ]
        for name, r in results.items()
    ]
    print(f"Validation pass of {args.rows:,} rows against a suppression list (each variant in its own process)")
    headers = ["suppression list", "peak RSS MB", "load s", "load us/entry", "validate s", "added us/row", "suppressed"]
    print(table(headers, rows))
    big_rss = results[f"{args.entries:,} entries"]["peak_rss_mb"]
    print(f"peak RSS, {args.entries:,} entries / no list: {big_rss / base['peak_rss_mb']:.2f}x")
    save("suppression", {"rows": args.rows, "entries": args.entries, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
