"""``globesms-receiver``: the push receiver served by uvicorn on its own, without Airflow.

The secret comes from ``$GLOBESMS_PUSH_SECRET`` or ``--secret-file`` (owner-only, as ssh wants its keys),
never from the command line, where ``ps`` would show it. The store is ``--store`` or ``$GLOBESMS_PUSH_URI``:
a local folder, or an fsspec URI (``s3://bucket/prefix``) opened with ``upath.UPath`` and the storage
options in ``$GLOBESMS_PUSH_STORAGE_OPTIONS`` (JSON, e.g. ``{"endpoint_url": "http://127.0.0.1:5000"}``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.receipts.pushed import MAX_BODY_BYTES, MAX_RECORDS
from airflow_provider_globesms.receiver.app import DEFAULT_BODY_TIMEOUT, URL_PREFIX, receiver_app
from airflow_provider_globesms.receiver.redaction import install_log_redaction

SECRET_ENV = "GLOBESMS_PUSH_SECRET"  # noqa: S105 (the variable's name, not a secret)
STORE_ENV = "GLOBESMS_PUSH_URI"
STORAGE_OPTIONS_ENV = "GLOBESMS_PUSH_STORAGE_OPTIONS"
DEFAULT_PORT = 8788
HEADERS_CAP = 16 * 1024  # Alibaba's pushes carry a few short headers; a flood of header bytes is refused
CONCURRENCY_CAP = 100  # connections at once; more are answered 503 (Alibaba pushes again)


class SetupError(Exception):
    """The receiver cannot start as configured; the message says what to change."""


def read_secret_file(path: str) -> str:
    """The secret in ``path`` (surrounding whitespace removed); ``SetupError`` unless the file is this
    user's and readable by no one else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise SetupError(f"cannot open the secret file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())  # of the file opened, not of whatever the path names later
        if not stat.S_ISREG(info.st_mode):
            raise SetupError(f"the secret file {path} is not a regular file")
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise SetupError(
                f"the secret file {path} must be owned by this user and readable by no one else (chmod 600 {path})"
            )
        return handle.read(4096).decode("utf-8").strip()


def load_secret(secret_file: str | None) -> str:
    """The secret: from ``secret_file`` when given, else ``$GLOBESMS_PUSH_SECRET``; ``SetupError`` if none."""
    if secret_file:
        return read_secret_file(secret_file)
    secret = os.environ.get(SECRET_ENV, "").strip()
    if not secret:
        raise SetupError(f"no secret: set ${SECRET_ENV} or pass --secret-file (never the secret itself)")
    return secret


def open_store(location: str | None) -> PushStore:
    """The store at ``location``: a local folder, or an fsspec URI with ``$GLOBESMS_PUSH_STORAGE_OPTIONS``."""
    if not location:
        raise SetupError(f"no store: pass --store or set ${STORE_ENV}")
    if "://" not in location or location.startswith(("file://", "local://")):  # as Airflow names the disk
        return PushStore(Path(location.removeprefix("file://").removeprefix("local://")).expanduser())
    try:
        options = json.loads(os.environ.get(STORAGE_OPTIONS_ENV) or "{}")
    except ValueError:
        raise SetupError(f"${STORAGE_OPTIONS_ENV} is not JSON") from None
    if not isinstance(options, dict):
        raise SetupError(f"${STORAGE_OPTIONS_ENV} must be a JSON object")
    from upath import UPath  # only for object storage: fsspec's start-up cost is not a local store's

    try:
        return PushStore(UPath(location, **options))
    except (ValueError, ImportError) as exc:  # an unknown scheme, or its fsspec package missing
        raise SetupError(f"cannot open the store: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        prog="globesms-receiver",
        description="Receive Alibaba's HTTP batch push of delivery receipts at "
        f"http://HOST:PORT{URL_PREFIX}/push/<secret>/receipts and keep them durably. The secret comes from "
        f"${SECRET_ENV} or --secret-file.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--store", default=os.environ.get(STORE_ENV), help=f"folder or URI (default: ${STORE_ENV})")
    parser.add_argument("--secret-file", help="an owner-only file holding the secret (else $GLOBESMS_PUSH_SECRET)")
    parser.add_argument(
        "--allow", action="append", default=[], metavar="CIDR", help="accept pushes only from here (repeatable)"
    )
    parser.add_argument("--max-records", type=int, default=MAX_RECORDS, help=f"per push (default: {MAX_RECORDS})")
    parser.add_argument("--max-bytes", type=int, default=MAX_BODY_BYTES, help=f"per body (default: {MAX_BODY_BYTES})")
    parser.add_argument(
        "--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT, help="seconds a body may take to arrive"
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="trust X-Forwarded-For from these proxies (comma-separated); default: trust none, the socket's "
        "address is the source the allowlist checks",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's own logging setup, with the receiver's logger on the same output."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["airflow_provider_globesms"] = {"handlers": ["default"], "level": level.upper()}
    return config


def server_config(app: FastAPI, args: argparse.Namespace) -> uvicorn.Config:
    """uvicorn's settings: small limits everywhere a client could hold the server."""
    return uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        http="h11",  # the header cap below is h11's (httptools has none to set)
        h11_max_incomplete_event_size=HEADERS_CAP,
        timeout_keep_alive=5,
        limit_concurrency=CONCURRENCY_CAP,
        timeout_graceful_shutdown=int(args.body_timeout) + 30,  # a push being stored finishes on SIGTERM
        proxy_headers=args.forwarded_allow_ips is not None,
        forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=False,
        access_log=True,
        log_config=log_config(args.log_level),
        log_level=args.log_level,
    )


def build(args: argparse.Namespace) -> uvicorn.Server:
    """The server for ``args``: the receiver mounted at ``/globesms``, as the api-server mounts it."""
    receiver = receiver_app(
        open_store(args.store),
        load_secret(args.secret_file),
        allow=args.allow,
        max_bytes=args.max_bytes,
        max_records=args.max_records,
        body_timeout=args.body_timeout,
    )
    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    root.mount(URL_PREFIX, receiver)
    config = server_config(root, args)
    install_log_redaction()  # again after uvicorn's dictConfig (it keeps filters; this makes sure)
    return uvicorn.Server(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the receiver until SIGTERM or SIGINT (uvicorn finishes the pushes in progress, then exits 0)."""
    args = build_parser().parse_args(argv)
    try:
        server = build(args)
    except (SetupError, ValueError) as exc:
        print(f"globesms-receiver: {exc}", file=sys.stderr)
        return 2
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"globesms-receiver: receiving at http://{shown}:{args.port}{URL_PREFIX}/push/***/receipts", flush=True)
    stop_on_signals(server)
    server.run()
    return 0 if server.started else 1


def stop_on_signals(server: uvicorn.Server) -> None:
    """SIGTERM and SIGINT stop the server gracefully, and the command then exits 0.

    uvicorn handles both while it serves, and once stopped raises the signal again under the handler it
    found: with the default one the process would die by the signal. This one only asks the server to
    stop, so a signal during start-up stops it too, and the re-raised one ends nothing.
    """

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)


if __name__ == "__main__":
    sys.exit(main())
