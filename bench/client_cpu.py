"""CPU per send: our client beside the official Alibaba SDK, in the same run, against the same emulator.

The emulator runs in its own process with no added latency and no QPS cap, so what is measured here is
each client's own CPU (process time of this process) for a complete SendMessageToGlobe: validation,
signing, the HTTP exchange and parsing the reply. Rounds alternate between the two clients and the
medians are compared, which cancels most of the noise of a shared machine.

    python bench/client_cpu.py [--sends 600] [--rounds 7]

Target (issue 27): ours at most 0.3x the SDK's, validation included.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_per_call, emulator_process, median, number, save, sdk_client, sdk_send, table

from airflow_provider_globesms.client import Credentials, GlobeSmsClient

TARGET = 0.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=600, help="sends per client per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with emulator_process("--qps", "1000000000", "--delivery-delay", "0") as (url, _pid):
        ours_v3 = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=url)
        ours_v1 = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=url, signature_version="v1")
        sdk_v3 = sdk_client(url)
        sdk_v1 = sdk_client(url, "v2")

        def text(n: int) -> str:
            return f"Hi customer {n}, your verification code is {n % 10000:04d}."

        def ours(client: GlobeSmsClient) -> Callable[[int], object]:
            # "+852..." as users write it: parsed and validated by the client on every send.
            return lambda n: client.send_message(f"+{number(n)}", text(n), task_id="bench")

        def sdk(client: object) -> Callable[[int], object]:
            return lambda n: sdk_send(client, number(n), text(n))

        contenders = {
            "ours V3": ours(ours_v3),
            "official SDK V3": sdk(sdk_v3),
            "ours V1": ours(ours_v1),
            "official SDK V1": sdk(sdk_v1),
        }
        for send in contenders.values():  # warm up connections and caches
            cpu_per_call(send, 100, 0)
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        offset = 1000
        for _ in range(args.rounds):
            for name, send in contenders.items():
                samples[name].append(cpu_per_call(send, args.sends, offset))
                offset += args.sends

    us = {name: median(values) * 1e6 for name, values in samples.items()}
    ratio_v3 = us["ours V3"] / us["official SDK V3"]
    ratio_v1 = us["ours V1"] / us["official SDK V1"]
    rows = [
        [name, f"{us[name]:.0f}", f"{min(samples[name]) * 1e6:.0f}", f"{max(samples[name]) * 1e6:.0f}"]
        for name in contenders
    ]
    print(f"CPU per SendMessageToGlobe, median of {args.rounds} rounds x {args.sends} sends (microseconds)")
    print(table(["client", "median", "min", "max"], rows))
    print()
    print(
        f"ours / official SDK, V3: {ratio_v3:.2f}x   (target <= {TARGET}x: {'PASS' if ratio_v3 <= TARGET else 'FAIL'})"
    )
    print(f"ours / official SDK, V1: {ratio_v1:.2f}x")
    path = save(
        "client_cpu",
        {
            "microseconds_per_send": us,
            "ratio_v3": ratio_v3,
            "ratio_v1": ratio_v1,
            "sends": args.sends,
            "rounds": args.rounds,
        },
    )
    print(f"saved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0 if ratio_v3 <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
