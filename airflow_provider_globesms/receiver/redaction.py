"""Keeping the push URL's secret out of every log: the access loggers, and the request's own scope.

The secret is a path segment (``/globesms/push/<secret>/receipts``), so every access log line would carry
it. Two servers log requests two ways, and both are covered:

- uvicorn's access log (the standalone receiver; Airflow's api-server up to 3.1) is a ``logging`` record
  on ``uvicorn.access`` whose args hold the raw path: ``SecretPathFilter`` on that logger rewrites them.
- Airflow 3.2 and later switch uvicorn's access log off and log each request from an ASGI middleware
  (``HttpAccessLogMiddleware``, structlog, ``http.access``) reading ``scope["path"]`` after the app answered;
  structlog there writes straight to the output, past any ``logging.Filter``. ``RedactPathMiddleware``
  therefore rewrites the path in the request's scope itself (the one dict every layer shares) before
  the response starts, so whatever logs the request afterwards reads the redacted path.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MASK = "***"
# Everything after "/push/" up to the request line's " HTTP/", else to the end of the value. No character
# can be trusted to end the secret: a decoded path may hold "/" (from %2F), spaces, quotes, "?" or "#"
# (from %20, %22, %3F, %23: a secret pasted with a stray character), and each would have ended a narrower
# pattern with the rest of the secret left in the line.
_SEGMENT = re.compile(r"/push/.*?(?= HTTP/|$)", re.IGNORECASE | re.DOTALL)
# The loggers whose records can name a request's path: uvicorn's (standalone and Airflow 3.1), gunicorn's
# (Airflow 3.2+ with [api] server_type = gunicorn), and Airflow's access logger when routed through logging.
ACCESS_LOGGERS = ("uvicorn.access", "uvicorn.error", "gunicorn.access", "gunicorn.error", "http.access")


def _mask_match(match: re.Match[str]) -> str:
    # Keep the readable tail ("/receipts") so a redacted line still says which route was asked for.
    return f"/push/{MASK}/receipts" if match.group().lower().endswith("/receipts") else f"/push/{MASK}"


def redact_path(text: str) -> str:
    """``text`` with whatever follows ``/push/`` in a path replaced by ``***`` (``/push/***/receipts``);
    a percent-encoded path is decoded first, so ``/%70ush/...`` cannot slip past."""
    if "%" in text and _SEGMENT.search(unquote(text)):
        text = unquote(text)
    return _SEGMENT.sub(_mask_match, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_path(value)
    if isinstance(value, bytes):
        return redact_path(value.decode("latin-1")).encode("latin-1")
    return value


class SecretPathFilter(logging.Filter):
    """Rewrites any ``/push/<secret>/`` in a record's message and args to ``/push/***/``; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place (every handler then sees the redacted record); always keep it."""
        if isinstance(record.msg, str):
            record.msg = redact_path(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_value(arg) for key, arg in record.args.items()}
        return True


def install_log_redaction(names: tuple[str, ...] = ACCESS_LOGGERS) -> None:
    """Put one ``SecretPathFilter`` on each named logger (idempotent: a second call adds none).

    A filter on the logger (not a handler) holds whatever handlers a later ``dictConfig`` installs, and
    it is inherited by forked workers; in spawned workers the app factory runs again and calls this.
    """
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, SecretPathFilter) for existing in logger.filters):
            logger.addFilter(SecretPathFilter())


def redact_scope(scope: Scope) -> None:
    """Rewrite the request's ``path`` and ``raw_path`` in place with the secret masked."""
    if "path" in scope:
        scope["path"] = redact_path(scope["path"])
    if isinstance(scope.get("raw_path"), bytes):
        scope["raw_path"] = _redact_value(scope["raw_path"])


class RedactPathMiddleware:
    """ASGI middleware: the route is matched on the real path, then the path is masked in the shared
    scope the moment the response starts (uvicorn logs at that moment; Airflow's middleware later)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, masking the scope's path before the first response message leaves."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def masked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                redact_scope(scope)
            await send(message)

        try:
            await self.app(scope, receive, masked_send)
        finally:
            redact_scope(scope)  # an app that failed before answering: the server's 500 is logged after this
