"""How many signed SendMessageToGlobe requests per second the emulator sustains on this machine.

The emulator runs in its own process (no QPS cap, no added latency) and verifies every signature,
stores every message and answers as the gateway would. The load comes from pre-signed requests sent
over keep-alive connections by an asyncio generator in this process, so signing costs nothing during
the measurement. Baseline in the same run: a bare uvicorn app that answers a fixed JSON without any
work, driven by the same generator: the ceiling of the server stack on this machine.

    python bench/emulator_throughput.py [--requests 20000] [--rounds 3] [--connections 64]

Target (issue 3): at least 3,000 requests/s with signatures verified.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emulator_process, median, process_cpu_seconds, save, table

from airflow_provider_globesms.client import Credentials
from airflow_provider_globesms.client.wire.http11 import encode_request
from airflow_provider_globesms.client.wire.signing import sign_v1, sign_v3

TARGET = 3000.0

BARE_APP = """
import socket, uvicorn
BODY = b'{"RequestId":"x","ResponseCode":"OK","MessageId":"1","Segments":"1"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print("listening on http://127.0.0.1:%d" % sock.getsockname()[1], flush=True)
config = uvicorn.Config(app, log_level="warning", access_log=False, http="httptools", loop="uvloop",
                        lifespan="off", proxy_headers=False)
uvicorn.Server(config).run(sockets=[sock])
"""


def presign(port: int, count: int, scheme: str, start: int) -> list[bytes]:
    credentials = Credentials("AKID", "SECRET")
    signer = sign_v3 if scheme == "v3" else sign_v1
    host = f"127.0.0.1:{port}"
    out = []
    for n in range(start, start + count):
        params = {
            "To": f"8529{1000000 + n % 9000000:07d}",
            "Message": f"Hi customer {n}, your code is {n % 10000:04d}",
            "TaskId": "bench",
        }
        signed = signer(credentials, host=host, action="SendMessageToGlobe", params=params)
        out.append(encode_request(signed.method, signed.target, signed.headers))
    return out


async def blast(port: int, requests: list[bytes], connections: int) -> tuple[float, int]:
    """Send every request; return (seconds, OK answers)."""
    queue = list(reversed(requests))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                writer.write(queue.pop())
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                ok += b'"ResponseCode":"OK"' in body
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started, ok


def measure(url: str, pid: int, requests: list[bytes], connections: int) -> tuple[float, float, int]:
    port = int(url.rsplit(":", 1)[1])
    cpu_before = process_cpu_seconds(pid)
    seconds, ok = asyncio.run(blast(port, requests, connections))
    cpu = process_cpu_seconds(pid) - cpu_before
    return len(requests) / seconds, cpu / len(requests), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    rows = []
    results: dict[str, dict[str, float]] = {}

    bare = subprocess.Popen([sys.executable, "-c", BARE_APP], stdout=subprocess.PIPE, text=True)
    try:
        assert bare.stdout is not None
        bare_url = bare.stdout.readline().split("listening on ")[1].strip()
        port = int(bare_url.rsplit(":", 1)[1])
        _wait_for(port)
        bare_rounds = [
            measure(bare_url, bare.pid, presign(port, args.requests, "v3", r * args.requests), args.connections)
            for r in range(args.rounds)
        ]
        results["bare uvicorn (baseline)"] = {
            "rate": median([r[0] for r in bare_rounds]),
            "min": min(r[0] for r in bare_rounds),
            "cpu_us": median([r[1] for r in bare_rounds]) * 1e6,
        }
    finally:
        bare.terminate()
        bare.communicate(timeout=30)

    with emulator_process("--qps", "1000000000") as (url, pid):
        port = int(url.rsplit(":", 1)[1])
        for scheme in ("v3", "v1"):
            rates: list[tuple[float, float]] = []
            for r in range(args.rounds):
                requests = presign(port, args.requests, scheme, (r + 10) * args.requests)
                rate, cpu, ok = measure(url, pid, requests, args.connections)
                if ok != len(requests):
                    print(f"{len(requests) - ok} requests were not answered OK", file=sys.stderr)
                    return 2
                rates.append((rate, cpu))
            results[f"emulator, {scheme.upper()} verified"] = {
                "rate": median([r[0] for r in rates]),
                "min": min(r[0] for r in rates),
                "cpu_us": median([r[1] for r in rates]) * 1e6,
            }

    baseline = results["bare uvicorn (baseline)"]["rate"]
    for name, result in results.items():
        rows.append(
            [
                name,
                f"{result['rate']:.0f}",
                f"{result.get('min', result['rate']):.0f}",
                f"{result['cpu_us']:.0f}",
                f"{result['rate'] / baseline:.2f}x",
            ]
        )
    print(
        f"Signed SendMessageToGlobe requests/s, median of {args.rounds} rounds x {args.requests} requests, "
        f"{args.connections} keep-alive connections"
    )
    print(table(["server", "req/s", "worst round", "server CPU us/req", "vs bare uvicorn"], rows))
    v3 = results["emulator, V3 verified"]["rate"]
    print()
    verdict = "PASS" if v3 >= TARGET else "FAIL"
    print(f"emulator (V3): {v3:.0f} req/s = {v3 / TARGET:.2f}x the {TARGET:.0f}/s target: {verdict}")
    save("emulator_throughput", {"results": results, "target": TARGET})
    return 0 if v3 >= TARGET else 1


def _wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
