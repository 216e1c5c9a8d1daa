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
   ``receipts_by_push=False`` on its summary asking QueryMessage (capped at 300/s), both in one ``dag.test()``;
   the sensor's wall time scaled to ``--campaign`` messages, and that over the push sensor's wall time.

The parts live beside this entry point: ``_push_records.py`` (receipts, push bodies, results file),
``_push_receiver.py`` (the receiver process and its pushing client), ``_push_ingest.py`` (1),
``_push_sensor.py`` (2) and ``_push_child.py`` (the DAG run by ``dag.test()`` in its own process).

    python bench/receipts_push.py [--ingest 200000] [--push-size 500] [--connections 12] [--campaign 1000000]
                                  [--last-share 0.01] [--poll 10000] [--poke-interval 2] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, save
from _push_ingest import ingest, profile_receiver
from _push_sensor import sensors

QUICK = {"ingest": 4000, "campaign": 4000, "poll": 200, "connections": 4}


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; with ``--quick`` the tiny sizes are the defaults, and flags given still win."""
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
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parts asked for, print their tables, and save their figures under ``bench/out/``."""
    args = arguments(argv)
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
    sys.exit(main())
