"""The sandbox inbox at scale: what an open page costs with SMALL and LARGE stores, and what it does to sends.

The emulator serves its inbox from the same event loop that answers the API, so an open page that counts
every message on each refresh stalls every send behind it. Two measurements, each against a baseline taken
in the same run (never an absolute time):

1. Time per request of the pages' live parts (what an open tab fetches when its poll says something
   changed): the inbox, the campaigns, the biggest campaign, one number's thread, and a search for a rare term
   (one message) and for a common one (every message), over HTTP on a keep-alive connection to an emulator in
   its own process; and the figures each poll carries (``LiveFigures.read()``, in this process, on the same
   file). Each with a store of ``--small``
   messages (the baseline) and of ``--large`` messages, spread over ``--campaigns`` campaigns (the first
   holds half of them), a share ``--in-flight`` of each still waiting for its receipt. Every page shows the
   same number of messages at both sizes (one number has ``THREAD`` messages; the lists show a page), so the
   ratio is the cost of the store's size. Reported: LARGE/SMALL per request. Target: flat, about 1x (the
   figures and campaign pages read running totals and count only the messages in flight; the lists read an
   index in order; a search reads its trigram index from the newest end and counts up to 1,000). What still
   grows: the messages in flight (a share, so 200x more at 200x the size) and a
   campaign's receipts timed for its time to deliver (at most 10,000).
2. The tabs: latency (p50, p99, max) of signed SendMessageToGlobe calls, one after another, while ``--tabs``
   simulated open tabs each poll ``changes`` once a second and fetch one page's live part when it says the
   messages changed (every poll, while sends go on), against the same sends with no tab open (the baseline),
   at LARGE. Phases alternate. Every tab stays live: a poll holds no connection (an event stream per tab held
   one of the six a browser allows a host, and a seventh tab did not load).

The store is filled fast: rows built here and written through a fresh ``MessageStore`` on a ``--db`` file,
then the emulator starts on that file (``EmulatorConfig(db=path)``; filling ``EmulatorServer(...).gateway``
before ``start()`` works too, but would share this process's GIL with the tabs and the sender).

To measure another checkout (the code before a change), run from outside this repository (``python -m``
puts the working directory first on the path): ``cd /tmp && PYTHONPATH=/path/to/checkout python .../inbox.py``.

    python bench/inbox.py [--small 1000] [--large 200000] [--tabs 10] [--rounds 15] [--seconds 8]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emulator_process, median, number, save, table

import airflow_provider_globesms
from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.client.rules.models import DeliveryStatus
from airflow_provider_globesms.emulator import EmulatorConfig
from airflow_provider_globesms.emulator.gateway import Gateway
from airflow_provider_globesms.emulator.inbox import LiveFigures
from airflow_provider_globesms.emulator.store import MessageStore, StoredMessage

UI = "/_emulator/ui"
BIG = "bench-0"  # the campaign holding half the messages
WATCHED = number(0)  # the number whose thread is timed: THREAD messages at every size
THREAD = 50
FILL_CHUNK = 10_000
PAGES = {
    "inbox": f"{UI}?part=live",
    "campaigns": f"{UI}/campaigns?part=live",
    f"campaign {BIG}": f"{UI}/campaign?id={BIG}&part=live",
    "number's thread": f"{UI}/numbers/{WATCHED}?part=live",
    # Every text is "Hi customer {n}, our sale starts today.": one holds "customer 7,", every one "sale starts".
    "search, rare term": f"{UI}?q=customer%207%2C&part=live",
    "search, common term": f"{UI}?q=sale%20starts&part=live",
    # No text holds it, and every three-letter piece of it is common: the worst case, stopped by a budget.
    "search, absent term of common pieces": f"{UI}?q=sale%20sale%20sale&part=live",
    "search in one number's messages": f"{UI}?to={WATCHED}&q=sale&part=live",
}
FIGURES = "poll figures"


def stored(n: int, count: int, campaigns: int, in_flight: bool, rng: random.Random, now: float) -> StoredMessage:
    """Message ``n`` of ``count``: submitted over the last hour, final (95% delivered) or still in flight."""
    submitted = now - 3600 + 3600 * n / count
    task = BIG if n % 2 == 0 else f"bench-{1 + (n // 2) % (campaigns - 1)}"
    final_at = now + 7200 if in_flight else submitted + rng.uniform(1.0, 30.0)
    status = DeliveryStatus.FAILED if rng.random() < 0.05 else DeliveryStatus.DELIVERED
    return StoredMessage(
        message_id=f"BENCH{n:010d}",
        access_key_id="AKID",
        action="SendMessageToGlobe",
        to_number=WATCHED if n % max(1, count // THREAD) == 0 else number(n + 1),
        sender=None,
        message=f"Hi customer {n}, our sale starts today.",
        segments=1,
        encoding="GSM7",
        sms_type=None,
        task_id=task,
        channel_id=None,
        validity_period=None,
        country="HK",
        region=None,
        carrier=None,
        submitted_at=submitted,
        final_at=final_at,
        final_status=int(status),
        error_code="DELIVERED" if status == DeliveryStatus.DELIVERED else "UNDELIVERED",
        error_description="",
        request_id=f"REQ{n:010d}",
    )


def fill(path: str, count: int, campaigns: int, in_flight: float) -> float:
    """Write ``count`` messages to a new store file; the seconds it took."""
    rng = random.Random(count)
    now = time.time()
    started = time.perf_counter()
    store = MessageStore(path, flush_every=FILL_CHUNK)
    for start in range(0, count, FILL_CHUNK):
        chunk = range(start, min(count, start + FILL_CHUNK))
        store.add_many([stored(n, count, campaigns, rng.random() < in_flight, rng, now) for n in chunk])
    store.close()
    return time.perf_counter() - started


class Page:
    """GET requests on one keep-alive connection, as a browser tab makes them."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)

    def get(self, path: str) -> float:
        """Fetch ``path`` (it must answer 200); the seconds from request to the last byte."""
        started = time.perf_counter()
        self.connection.request("GET", path, headers={"accept": "text/html"})
        reply = self.connection.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"GET {path}: {reply.status} {body[:200]!r}")
        return time.perf_counter() - started

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def time_pages(url: str, rounds: int) -> dict[str, float]:
    """Median seconds per request of each live part (rounds interleaved, after one warm-up each)."""
    page = Page(url)
    samples: dict[str, list[float]] = {name: [] for name in PAGES}
    for path in PAGES.values():
        page.get(path)
    for _ in range(rounds):
        for name, path in PAGES.items():
            samples[name].append(page.get(path))
    page.close()
    return {name: median(values) for name, values in samples.items()}


def time_figures(path: str, rounds: int) -> float:
    """Median seconds of ``LiveFigures.read()`` on the store file, a second apart on its clock each time."""
    ticks = iter(range(1_000_000))
    base = time.time()
    gateway = Gateway(EmulatorConfig(db=path), clock=lambda: base + next(ticks))
    figures = LiveFigures(gateway)
    figures.read()  # warm-up
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        figures.read()
        samples.append(time.perf_counter() - started)
    gateway.store.close()
    return median(samples)


class Tab(threading.Thread):
    """An open inbox tab, as its script runs: polls ``changes`` once a second and fetches its page's live part
    each time the answer says the messages changed (the sends below change them every poll)."""

    def __init__(self, url: str, path: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.path, self.stop = url, path, stop
        self.fetches: list[float] = []
        self.polls = 0

    def run(self) -> None:
        """Poll until told to stop; fetch the live part after each poll that says changed."""
        page = Page(self.url)
        cursor = ""
        try:
            while not self.stop.is_set():
                page.connection.request("GET", f"{UI}/changes?since={cursor}", headers={"accept": "application/json"})
                answer = json.loads(page.connection.getresponse().read())
                cursor, self.polls = answer["cursor"], self.polls + 1
                if answer["changed"]:
                    self.fetches.append(page.get(self.path))
                self.stop.wait(1.0)
        finally:
            page.close()


def send_latencies(url: str, seconds: float, first: int) -> list[float]:
    """Seconds per signed SendMessageToGlobe call, one after another for ``seconds``."""
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=url)
    latencies = []
    n = first
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        client.send_message(f"+{number(n)}", "Your code is 123456", task_id="bench-live")
        latencies.append(time.perf_counter() - started)
        n += 1
        time.sleep(0.01)  # a DAG's pace, not a flood: the stall is what is measured
    client.close()
    return latencies


def with_tabs(url: str, tabs: int, seconds: float, first: int) -> tuple[list[float], list[float], int]:
    """Send latencies while ``tabs`` tabs are open (after their first poll); their page fetch times and polls."""
    stop = threading.Event()
    opened = [Tab(url, list(PAGES.values())[i % len(PAGES)], stop) for i in range(tabs)]
    for tab in opened:
        tab.start()
    time.sleep(1.5)  # every tab has polled once
    latencies = send_latencies(url, seconds, first)
    stop.set()
    for tab in opened:
        tab.join(timeout=30)
    return latencies, [f for tab in opened for f in tab.fetches], sum(tab.polls for tab in opened)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(len(ordered) * share + 0.999999) - 1))]


def stall(url: str, tabs: int, seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """p50/p99/max send latency with no tab open and with ``tabs`` open, phases alternating."""
    alone: list[float] = []
    busy: list[float] = []
    fetches: list[float] = []
    polls = 0
    for r in range(rounds):
        alone += send_latencies(url, seconds, 1_000_000 * (2 * r + 1))
        latencies, fetched, polled = with_tabs(url, tabs, seconds, 1_000_000 * (2 * r + 2))
        busy += latencies
        fetches += fetched
        polls += polled
    results = {}
    for name, values in (("no tab (baseline)", alone), (f"{tabs} tabs open", busy)):
        results[name] = {
            "sends": len(values),
            "p50_ms": percentile(values, 0.50) * 1e3,
            "p99_ms": percentile(values, 0.99) * 1e3,
            "max_ms": max(values) * 1e3,
        }
    results[f"{tabs} tabs open"]["tab_fetch_median_ms"] = median(fetches) * 1e3 if fetches else float("nan")
    results[f"{tabs} tabs open"]["tab_fetches"] = len(fetches)
    results[f"{tabs} tabs open"]["polls"] = polls
    return results


def measure_size(
    count: int, args: argparse.Namespace, then: Callable[[str], object] | None = None
) -> tuple[dict[str, float], float, object]:
    """Fill a store of ``count`` messages; time the figures and the pages (and run ``then(url)``)."""
    with tempfile.TemporaryDirectory(prefix="bench-inbox-") as folder:
        path = str(Path(folder) / "messages.db")
        filled = fill(path, count, args.campaigns, args.in_flight)
        seconds = {FIGURES: time_figures(path, args.rounds)}
        with emulator_process("--db", path, "--qps", "1000000000", "--delivery-delay", "1") as (url, _pid):
            seconds.update(time_pages(url, args.rounds))
            extra = then(url) if then is not None else None
    return seconds, filled, extra


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1_000, help="messages in the baseline store")
    parser.add_argument("--large", type=int, default=200_000, help="messages in the large store (up to 1,000,000)")
    parser.add_argument("--campaigns", type=int, default=8, help="campaigns the messages are spread over (>= 2)")
    parser.add_argument("--in-flight", type=float, default=0.01, help="share of messages still awaiting a receipt")
    parser.add_argument("--rounds", type=int, default=15, help="requests per page and size (median counts)")
    parser.add_argument("--tabs", type=int, default=10, help="open tabs during the stall measurement")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of sends per stall phase")
    parser.add_argument("--stall-rounds", type=int, default=2, help="alternations of no tab / tabs")
    args = parser.parse_args()
    if args.campaigns < 2 or not 0 <= args.in_flight <= 1 or args.small > args.large:
        parser.error("--campaigns >= 2, --in-flight in [0, 1], --small <= --large")
    return args


def main() -> int:
    """Measure both sizes, then the stall at LARGE; print the tables, save bench/out/inbox.json."""
    args = parse_args()
    code = Path(airflow_provider_globesms.__file__).parent.parent
    totals = importlib.util.find_spec("airflow_provider_globesms.emulator.totals") is not None
    small, small_fill, _ = measure_size(args.small, args)
    large, large_fill, found = measure_size(
        args.large, args, lambda url: stall(url, args.tabs, args.seconds, args.stall_rounds)
    )
    contention: dict[str, dict[str, float]] = found  # type: ignore[assignment]
    print(f"code: {code} ({'with' if totals else 'without'} emulator/totals.py)")
    print(
        f"store: {args.small:,} vs {args.large:,} messages over {args.campaigns} campaigns, "
        f"{args.in_flight:.0%} in flight (filled in {small_fill:.1f} s / {large_fill:.1f} s)"
    )
    ratios = {name: large[name] / small[name] for name in small}
    rows = [[n, f"{small[n] * 1e3:.2f}", f"{large[n] * 1e3:.2f}", f"{ratios[n]:.1f}x"] for n in small]
    print(f"Time per request, median of {args.rounds} (target: LARGE/SMALL flat, about 1x)")
    print(table(["live part", "SMALL ms", "LARGE ms", "LARGE/SMALL"], rows))
    rare, common = ratios["search, rare term"], ratios["search, common term"]
    sizes = f"{args.large:,} vs {args.small:,} messages"
    print(f"search, {sizes}: rare term {rare:.1f}x, common term {common:.1f}x (target <= 5x)")
    print()
    base = contention["no tab (baseline)"]
    rows = [
        [name, f"{int(r['sends'])}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}"]
        for name, r in contention.items()
    ]
    print(f"Signed send calls at LARGE ({args.large:,} messages), {args.stall_rounds} x {args.seconds:g} s per phase")
    print(table(["open tabs", "sends", "p50 ms", "p99 ms", "max ms"], rows))
    busy = contention[f"{args.tabs} tabs open"]
    stall_ratios = {k: busy[k] / base[k] for k in ("p50_ms", "p99_ms", "max_ms")}
    print(", ".join(f"{k.removesuffix('_ms')} tabs/none: {v:.1f}x" for k, v in stall_ratios.items()))
    print(f"tab live-part fetch, median: {busy['tab_fetch_median_ms']:.1f} ms over {int(busy['tab_fetches'])} fetches")
    print(f"tabs: {args.tabs} open, every one polled once a second and refreshed ({int(busy['polls'])} polls)")
    save(
        "inbox",
        {
            "code": str(code),
            "running_totals": totals,
            "args": vars(args),
            "seconds_per_request": {"small": small, "large": large},
            "ratios": ratios,
            "stall": contention,
            "stall_ratios": stall_ratios,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
