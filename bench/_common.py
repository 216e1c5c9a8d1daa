"""Shared by the benchmarks: an emulator in its own process, CPU readings, result tables."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[str, int]]:
    """``globesms-emulator`` on a free loopback port, in its own process; yields (url, pid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_globesms.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"emulator did not start: {line}{process.stderr.read() if process.stderr else ''}")
        yield line.split("listening on ")[1].split()[0], process.pid
    finally:
        process.terminate()
        process.communicate(timeout=30)


def sdk_client(url: str, algorithm: str | None = None) -> object:
    """The official SDK pointed at an emulator URL, the way its docs configure it."""
    from alibabacloud_dysmsapi20180501.client import Client
    from alibabacloud_tea_openapi import models as openapi_models

    config = openapi_models.Config(
        access_key_id="AKID",
        access_key_secret="SECRET",
        endpoint=url.removeprefix("http://"),
        protocol="HTTP",
        signature_algorithm=algorithm,
    )
    return Client(config)


def sdk_send(client: object, to: str, text: str, task_id: str = "bench") -> object:
    from alibabacloud_dysmsapi20180501 import models as sms_models

    request = sms_models.SendMessageToGlobeRequest(to=to, message=text, task_id=task_id)
    return client.send_message_to_globe(request)  # type: ignore[attr-defined]


def number(n: int) -> str:
    """Distinct valid Hong Kong mobile numbers, Alibaba's bare form."""
    return f"8529{1000000 + n % 8999999:07d}"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_per_call(call: Callable[[int], object], calls: int, offset: int = 0) -> float:
    """Process CPU seconds per ``call(n)``, over ``calls`` calls with n counting up from ``offset``."""
    started = time.process_time()
    for n in range(offset, offset + calls):
        call(n)
    return (time.process_time() - started) / calls


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def save(name: str, payload: dict[str, object]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    payload = {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload}
    path.write_text(json.dumps(payload, indent=2))
    return path
