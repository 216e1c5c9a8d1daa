"""``globesms-emulator`` / ``python -m airflow_provider_globesms.emulator``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from airflow_provider_globesms.client.wire.endpoint import is_loopback
from airflow_provider_globesms.emulator.config import (
    DEFAULT_KEYS,
    REQUEST_TIMEOUT,
    EmulatorConfig,
    Faults,
    check_push_url,
    parse_push_retry,
)


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _push_url(text: str) -> str | None:
    try:
        return check_push_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _push_retry(text: str) -> tuple[float, ...]:
    try:
        return parse_push_retry(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    """The command-line parser of ``globesms-emulator``."""
    p = argparse.ArgumentParser(
        prog="globesms-emulator",
        description="Local emulator of Alibaba Cloud's international SMS API (Dysmsapi 2018-05-01). "
        "Point the globesms connection's endpoint, or the official SDK, at the URL it prints.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 picks a free one)")
    p.add_argument(
        "--inspection-token",
        default=os.environ.get("GLOBESMS_EMULATOR_INSPECTION_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' on /_emulator/* (it shows numbers and texts); "
        "default: $GLOBESMS_EMULATOR_INSPECTION_TOKEN, else open",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="a Host name /_emulator/* also answers (a reverse proxy's); on loopback only loopback names are "
        "answered otherwise, against DNS rebinding; repeatable",
    )
    keys = p.add_argument_group("keys (default: AKID / SECRET)")
    keys.add_argument("--access-key-id", action="append", default=[], help="an AccessKeyId; repeatable")
    keys.add_argument("--access-key-secret", action="append", default=[], help="its secret, in the same order")
    keys.add_argument(
        "--keys-file", type=Path, help="a JSON object {id: secret} or lines 'id:secret' (# comments allowed)"
    )
    limits = p.add_argument_group("limits and simulation")
    limits.add_argument("--qps", type=_positive, default=2000.0, help="SendMessageToGlobe cap per key (default 2000)")
    limits.add_argument("--latency-ms", type=_non_negative, default=0.0, help="latency added to every API call")
    limits.add_argument("--latency-jitter-ms", type=_non_negative, default=0.0, help="+/- jitter on that latency")
    limits.add_argument(
        "--delivery-delay", type=_non_negative, default=1.0, help="seconds until a receipt is final (default 1)"
    )
    limits.add_argument("--failure-rate", type=_ratio, default=0.0, help="share of messages whose receipt fails")
    limits.add_argument("--db", default=":memory:", help="SQLite file for messages (default: in memory)")
    limits.add_argument(
        "--request-timeout",
        type=_positive,
        default=REQUEST_TIMEOUT,
        help=f"seconds for a request to arrive whole, else 408 and the connection closes (default {REQUEST_TIMEOUT:g})",
    )
    limits.add_argument("--seed", type=int, help="random seed, for repeatable runs")
    _add_fault_options(p)
    _add_push_options(p)
    return p


def _add_push_options(p: argparse.ArgumentParser) -> None:
    push = p.add_argument_group(
        "receipt push (Alibaba's HTTP batch push; change at run time via /_emulator/push and /_emulator/faults)"
    )
    push.add_argument(
        "--push-url", type=_push_url, help="POST delivery receipts here (http(s) on this machine only); default: none"
    )
    push.add_argument(
        "--push-interval", type=_non_negative, default=0.2, help="receipts final within this many s share a push"
    )
    push.add_argument("--push-batch", type=_whole, default=100, help="receipts in one push, at most (default 100)")
    push.add_argument("--push-timeout", type=_positive, default=3.0, help="seconds for the receiver's answer")
    push.add_argument(
        "--push-retry",
        type=_push_retry,
        default=(60.0, 300.0, 600.0),
        help="waits (s) before each retry of a failed push, comma-separated (default 60,300,600)",
    )
    push.add_argument("--push-drop", type=_ratio, default=0.0, help="share of pushes dropped, never sent")
    push.add_argument("--push-duplicate", type=_ratio, default=0.0, help="share of pushes sent twice")
    push.add_argument("--push-reorder", type=_ratio, default=0.0, help="share of pushes shuffled and held back")


def _add_fault_options(p: argparse.ArgumentParser) -> None:
    faults = p.add_argument_group("faults (shares of send calls; change at run time via /_emulator/faults)")
    faults.add_argument("--throttle-ratio", type=_ratio, default=0.0, help="answer 400 Throttling.User")
    faults.add_argument(
        "--unavailable-ratio",
        "--error-ratio",  # its name before 0.2
        dest="unavailable_ratio",
        type=_ratio,
        default=0.0,
        help="answer 503 ServiceUnavailable",
    )
    faults.add_argument("--reset-ratio", type=_ratio, default=0.0, help="reset the connection, unprocessed")
    faults.add_argument("--hang-ratio", type=_ratio, default=0.0, help="accept, then hold the reply")
    faults.add_argument("--hang-seconds", type=_non_negative, default=30.0, help="how long to hold (default 30)")


def read_keys(args: argparse.Namespace) -> dict[str, str]:
    """The AccessKeyId -> secret pairs given on the command line and in ``--keys-file``, else the defaults."""
    if len(args.access_key_id) != len(args.access_key_secret):
        raise SystemExit("globesms-emulator: give one --access-key-secret per --access-key-id")
    keys = dict(zip(args.access_key_id, args.access_key_secret, strict=True))
    if args.keys_file:
        text = args.keys_file.read_text()
        if text.lstrip().startswith("{"):
            keys.update({str(k): str(v) for k, v in json.loads(text).items()})
        else:
            for number, line in enumerate(text.splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                key_id, sep, secret = line.partition(":")
                if not sep or not key_id or not secret:
                    raise SystemExit(f"globesms-emulator: {args.keys_file}:{number}: expected 'id:secret'")
                keys[key_id.strip()] = secret.strip()
    return keys or dict(DEFAULT_KEYS)


def exposure_warning(host: str, has_token: bool) -> str | None:
    """What to say when the emulator listens beyond this machine (``None`` on loopback)."""
    if is_loopback(host):
        return None
    inspection = "is protected by its token" if has_token else "has no authentication: use --inspection-token"
    return (
        f"listening on {host}, reachable from other machines; the API accepts the configured keys and "
        f"/_emulator/* (every number and text sent) {inspection}"
    )


def announce(url: str, config: EmulatorConfig) -> None:
    """Say where the emulator listens, where to inspect it and where it pushes receipts."""
    print(f"globesms-emulator listening on {url} (keys: {', '.join(sorted(config.keys))})", flush=True)
    print(f"  inspect: {url}/_emulator/messages  stats: {url}/_emulator/stats", flush=True)
    if config.push_url:
        # The server only: a receiver's URL holds its secret in the path, never printed.
        where = urlsplit(config.push_url)
        print(f"  receipts pushed to {where.scheme}://{where.netloc}/...  push stats: {url}/_emulator/push", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the emulator from the command line."""
    args = parser().parse_args(argv)
    from airflow_provider_globesms.emulator.server import serve_forever

    config = EmulatorConfig(
        keys=read_keys(args),
        qps=args.qps,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        delivery_delay=args.delivery_delay,
        failure_rate=args.failure_rate,
        db=args.db,
        seed=args.seed,
        inspection_token=args.inspection_token,
        allowed_hosts=tuple(host.rstrip(".").lower() for host in args.allowed_host),
        request_timeout=args.request_timeout,
        faults=Faults(
            throttle=args.throttle_ratio,
            unavailable=args.unavailable_ratio,
            reset=args.reset_ratio,
            hang=args.hang_ratio,
            hang_seconds=args.hang_seconds,
            push_drop=args.push_drop,
            push_duplicate=args.push_duplicate,
            push_reorder=args.push_reorder,
        ),
        push_url=args.push_url,
        push_interval=args.push_interval,
        push_batch=args.push_batch,
        push_timeout=args.push_timeout,
        push_retry=args.push_retry,
    )

    warning = exposure_warning(args.host, bool(args.inspection_token))
    if warning:
        print(f"globesms-emulator: warning: {warning}", file=sys.stderr, flush=True)
    try:
        serve_forever(config, args.host, args.port, lambda url: announce(url, config))
    except OSError as exc:
        print(f"globesms-emulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print("globesms-emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
