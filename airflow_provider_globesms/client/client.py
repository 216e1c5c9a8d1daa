"""``DysmsClient``: SendMessageToGlobe, BatchSendMessageToGlobe and QueryMessage, signed and safe to retry.

One instance is thread-safe and meant to be shared by every sending thread of a process: it holds the
connection pool and one rate limiter per action (the gateway's caps are per account and action).

Retries follow one rule: resend only what the API provably did not take. Throttling and 503 are
refusals: the retry is signed anew. A failed connect or write, or a connection reset before any reply
byte, may or may not have reached the API: the retry sends the *same signed bytes*, and if the first
attempt did arrive the gateway refuses the repeated nonce (``SignatureNonceUsed``), which is raised as
``ReceivedWithoutAnswerError`` instead of billing a second message. A timeout after the request went
out, a 500, 502 or 504, or a reply cut short are raised as ``OutcomeUnknownError`` for sends and
retried only for QueryMessage, which bills nothing.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from airflow_provider_globesms import __version__
from airflow_provider_globesms.client.errors import (
    AuthenticationError,
    BusinessError,
    ConfigurationError,
    GatewayError,
    GlobeSmsError,
    OutcomeUnknownError,
    ReceivedWithoutAnswerError,
    RequestNotSentError,
    ServiceUnavailableError,
    ThrottlingError,
)
from airflow_provider_globesms.client.models import (
    BatchSendRequest,
    BatchSendResult,
    QueryMessageRequest,
    QueryMessageResult,
    SendMessageRequest,
    SendMessageResult,
)
from airflow_provider_globesms.client.phone import mask_number, scrub_numbers
from airflow_provider_globesms.client.ratelimit import RateLimiter
from airflow_provider_globesms.client.signing import (
    API_VERSION,
    SIGNATURE_VERSIONS,
    Credentials,
    SignedRequest,
    sign_v1,
    sign_v3,
)
from airflow_provider_globesms.client.transport import (
    ConnectionPool,
    Endpoint,
    ExchangeError,
    Phase,
    RawResponse,
    Timeout,
)
from airflow_provider_globesms.client.validation import DEFAULT_MAX_MESSAGE_LENGTH

log = logging.getLogger(__name__)

SEND = "SendMessageToGlobe"
BATCH_SEND = "BatchSendMessageToGlobe"
QUERY = "QueryMessage"

DEFAULT_MAX_QPS = 2000.0  # SendMessageToGlobe cap per account on the newest API page
BATCH_QPS = 1.0
QUERY_QPS = 300.0
QPS_HEADROOM = 0.02

_AUTH_CODES = re.compile(
    r"^(InvalidAccessKeyId|SignatureDoesNotMatch|InvalidTimeStamp|SignatureNonceUsed|"
    r"IncompleteSignature|InvalidSecurityToken|Forbidden|NoPermission|MissingSecurityToken)"
)
_TIME_LEFT = re.compile(r"TimeLeft\s*:\s*(\d+)")
_BUSINESS_PREFIX = re.compile(r"^(isv|isp)\.", re.IGNORECASE)

R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    ``max_attempts`` bounds tries that failed for any retryable reason (the first try counts);
    ``max_throttled_attempts`` bounds those refused by throttling, a refusal that only says "later":
    under a busy account cap a message may be throttled several times before it gets through.
    """

    max_attempts: int = 8
    max_throttled_attempts: int = 30
    backoff_base: float = 0.1
    backoff_cap: float = 10.0
    treat_reset_as_unsent: bool = True

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1))))


@dataclass(slots=True)
class Attempts:
    """Tries of one call so far.

    ``replay`` is set when the last attempt may have left without an answer (connect, write or reset
    failure): the next attempt then sends those same signed bytes instead of signing anew, so that a
    first attempt that did arrive is refused by the gateway's nonce check rather than billed twice.
    """

    total: int = 0
    throttled: int = 0
    replay: SignedRequest | None = None

    @property
    def other(self) -> int:
        return self.total - self.throttled


def normalize_code(code: str) -> str:
    """``isv.AMOUNT_NOT_ENOUGH`` and ``AMOUNT_NOT_ENOUGH`` are the same code."""
    return _BUSINESS_PREFIX.sub("", code)


def throttle_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds the gateway asked us to wait, from ``x-acs-retry-after`` or ``x-ratelimit-*: TimeLeft``."""
    retry_after = headers.get("x-acs-retry-after")
    if retry_after and retry_after.strip().isdigit() and int(retry_after) > 0:
        return int(retry_after) / 1000.0
    for name in ("x-ratelimit-user-api", "x-ratelimit-user"):
        match = _TIME_LEFT.search(headers.get(name, ""))
        if match and int(match.group(1)) > 0:
            return int(match.group(1)) / 1000.0
    return None


def default_user_agent() -> str:
    return f"airflow-provider-globesms/{__version__} Python/{platform.python_version()}"


class DysmsClient:
    """Client of Alibaba Cloud's international SMS API (Dysmsapi 2018-05-01)."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        region_id: str | None = None,
        endpoint: str | None = None,
        signature_version: str = "v3",
        timeout: Timeout | float | None = None,
        max_connections: int = 10,
        max_qps: float | None = None,
        retry: RetryPolicy | None = None,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
        user_agent: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if signature_version not in SIGNATURE_VERSIONS:
            raise ConfigurationError(
                f"signature_version {signature_version!r}: expected one of {', '.join(SIGNATURE_VERSIONS)}"
            )
        if isinstance(timeout, int | float):
            timeout = Timeout(connect=min(5.0, float(timeout)), read=float(timeout))
        self.credentials = credentials
        self.endpoint = Endpoint.resolve(region_id, endpoint)
        self.signature_version = signature_version
        self.timeout = timeout or Timeout()
        self.retry = retry or RetryPolicy()
        self.max_message_length = max_message_length
        self.max_qps = float(max_qps or DEFAULT_MAX_QPS)
        self._sleep = sleep
        self.user_agent = user_agent or default_user_agent()
        self._pool = ConnectionPool(self.endpoint, self.timeout, maxsize=max_connections, user_agent=self.user_agent)
        # Paced 2% under each cap: the jitter between our admission and the gateway's count stays inside it.
        self.limiters = {
            SEND: RateLimiter(self.max_qps, headroom=QPS_HEADROOM),
            BATCH_SEND: RateLimiter(BATCH_QPS),
            QUERY: RateLimiter(QUERY_QPS, headroom=QPS_HEADROOM),
        }
        self._context = {"max_message_length": max_message_length}
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"DysmsClient(endpoint={self.endpoint.url!r}, access_key_id={self.credentials.access_key_id!r}, "
            f"signature_version={self.signature_version!r})"
        )

    # --- requests ------------------------------------------------------------------------------

    def build_send_request(self, to: object, message: object, **options: Any) -> SendMessageRequest:
        """Validate one SendMessageToGlobe request without sending it."""
        return self._validated(SendMessageRequest, {"to": to, "message": message, **options})

    def _validated(self, model: type[R], data: dict[str, Any]) -> R:
        try:
            return model.model_validate(data, context=self._context)
        except PydanticValidationError as exc:
            # Only unknown field names get here: every value is checked by our validators.
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or model.__name__
            raise ConfigurationError(f"{field}: {first['msg']}") from None

    def send_message(self, to: object, message: object, **options: Any) -> SendMessageResult:
        """SendMessageToGlobe. Options: ``sender``, ``sms_type``, ``task_id``, ``validity_period``,
        ``channel_id``. Raises ``InvalidFieldError`` before sending anything when a value is refused."""
        return self.send(self.build_send_request(to, message, **options))

    def send(
        self, request: SendMessageRequest, before_exchange: Callable[[SignedRequest], None] | None = None
    ) -> SendMessageResult:
        """Send a validated request. ``before_exchange`` sees each signed attempt just before its bytes
        leave (after the rate limiter): the bulk sender records it there, to replay it after a crash."""
        return self._call(
            SEND,
            request.to_params(),
            SendMessageResult,
            masked_to=mask_number(request.to),
            before_exchange=before_exchange,
        )

    def replay_send(self, signed: SignedRequest) -> SendMessageResult:
        """Send a stored, already signed SendMessageToGlobe again, byte for byte, once.

        The gateway refuses a nonce it has already seen (``SignatureNonceUsed``) within the 15 minutes
        it accepts a timestamp, so the answer settles whether the first attempt arrived: accepted now
        means it never did (and is now sent once); ``SignatureNonceUsed`` means it did.
        """
        limiter = self.limiters[SEND]
        limiter.pace()
        try:
            raw = self._pool.exchange(signed, before_write=limiter.admit)
        except ExchangeError as exc:
            raise self._exchange_error(SEND, exc, idempotent=False) from None
        return self._parse(SEND, raw, SendMessageResult)

    def batch_send(self, to: Iterable[object], message: object, **options: Any) -> BatchSendResult:
        """BatchSendMessageToGlobe: up to 1,000 numbers; ``message`` one text, or a list of one per number."""
        request = self._validated(BatchSendRequest, {"to": to, "messages": message, **options})
        return self._call(BATCH_SEND, request.to_params(), BatchSendResult, masked_to=f"{len(request.to)} numbers")

    def query_message(self, message_id: object) -> QueryMessageResult:
        request = self._validated(QueryMessageRequest, {"message_id": message_id})
        return self._call(QUERY, request.to_params(), QueryMessageResult, idempotent=True)

    # --- the call ------------------------------------------------------------------------------

    def sign(self, action: str, params: Mapping[str, str]) -> SignedRequest:
        signer = sign_v3 if self.signature_version == "v3" else sign_v1
        return signer(
            self.credentials, host=self.endpoint.host_header, action=action, params=params, version=API_VERSION
        )

    def _call(
        self,
        action: str,
        params: Mapping[str, str],
        model: type[R],
        *,
        masked_to: str = "",
        idempotent: bool = False,
        before_exchange: Callable[[SignedRequest], None] | None = None,
        after_refusal: Callable[[SignedRequest], None] | None = None,
    ) -> R:
        limiter = self.limiters[action]
        attempts = Attempts()
        while True:
            attempts.total += 1
            limiter.pace()
            signed = attempts.replay or self.sign(action, params)
            if attempts.replay is None and before_exchange is not None:
                before_exchange(signed)
            started = time.perf_counter()
            try:
                result = self._parse(action, self._pool.exchange(signed, before_write=limiter.admit), model)
            except (ExchangeError, GlobeSmsError) as exc:
                wait = self._retry_or_raise(action, exc, attempts, idempotent, masked_to, signed)
                if attempts.replay is None and after_refusal is not None:
                    after_refusal(signed)
                self._sleep(wait)
                continue
            self._succeeded(action, result, masked_to, started, attempts.total)
            return result

    def _retry_or_raise(
        self,
        action: str,
        exc: ExchangeError | GlobeSmsError,
        attempts: Attempts,
        idempotent: bool,
        masked_to: str,
        signed: SignedRequest,
    ) -> float:
        """Seconds to wait before the next attempt after ``exc``; raises when it must not be retried.

        Shared by the blocking and the asyncio call loops, so both follow one retry rule. Sets
        ``attempts.replay`` when the next attempt must resend ``signed`` as is (see ``Attempts``).
        """
        replaying = attempts.replay is not None
        attempts.replay = None
        error = self._exchange_error(action, exc, idempotent) if isinstance(exc, ExchangeError) else exc
        if replaying and isinstance(error, AuthenticationError) and error.code == "SignatureNonceUsed":
            # The same bytes were seen before: the earlier attempt reached the API after all.
            self._count(f"{action}.unknown")
            received = ReceivedWithoutAnswerError(
                f"{action}: the API received the request (its nonce was seen when it was sent again), "
                "but its answer was lost",
                request_id=error.request_id,
                code=error.code,
            )
            log.warning("%s %s: %s", action, masked_to, received)
            raise received from None
        policy = self.retry
        if isinstance(error, ThrottlingError):
            attempts.throttled += 1
            wait = error.retry_after or policy.backoff(attempts.throttled)
            self.limiters[action].hold(wait)  # every caller of this client backs off, not just this one
            exhausted = attempts.throttled >= policy.max_throttled_attempts
        elif isinstance(error, ServiceUnavailableError | RequestNotSentError) or (
            idempotent and isinstance(error, OutcomeUnknownError)
        ):
            wait = policy.backoff(attempts.other)
            exhausted = attempts.other >= policy.max_attempts
            if isinstance(error, RequestNotSentError) and not idempotent:
                attempts.replay = signed
        else:
            if isinstance(error, OutcomeUnknownError):
                self._count(f"{action}.unknown")
                log.warning("%s %s: %s", action, masked_to, error)
            else:
                self._count(f"{action}.refused")
            raise error from None
        self._count(f"{action}.retry")
        if exhausted:
            self._count(f"{action}.gave_up")
            raise error from None
        log.debug("%s %s: %s; retry %d in %.3f s", action, masked_to, error, attempts.total, wait)
        return wait

    def _succeeded(self, action: str, result: BaseModel, masked_to: str, started: float, attempt: int) -> None:
        self._count(f"{action}.ok")
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s: %s RequestId=%s in %.1f ms (attempt %d)",
                action,
                masked_to,
                getattr(result, "response_code", None),
                getattr(result, "request_id", None),
                (time.perf_counter() - started) * 1000,
                attempt,
            )

    def _exchange_error(self, action: str, exc: ExchangeError, idempotent: bool) -> GlobeSmsError:
        """The public error for a failed exchange: not sent (retryable) or outcome unknown."""
        cause = f"{type(exc.cause).__name__}: {scrub_numbers(str(exc.cause))}"
        where = self.endpoint.url
        if exc.phase is Phase.CONNECT:
            return RequestNotSentError(f"{action}: could not connect to {where} ({cause})")
        if exc.phase is Phase.WRITE:
            return RequestNotSentError(f"{action}: sending to {where} failed ({cause})")
        if exc.phase is Phase.DROPPED and (self.retry.treat_reset_as_unsent or idempotent):
            return RequestNotSentError(f"{action}: {where} closed the connection before replying ({cause})")
        if idempotent:
            return RequestNotSentError(f"{action}: no reply from {where} ({cause})")
        if exc.phase is Phase.DROPPED:
            return OutcomeUnknownError(f"{action}: {where} closed the connection after the request ({cause})")
        return OutcomeUnknownError(f"{action}: no reply from {where} within {self.timeout.read:g} s ({cause})")

    def _parse(self, action: str, raw: RawResponse, model: type[R]) -> R:
        if raw.status >= 400:
            raise self._gateway_error(action, raw)
        try:
            result = model.model_validate_json(raw.body)
        except PydanticValidationError:
            raise OutcomeUnknownError(
                f"{action}: HTTP {raw.status} with a body that is not the expected JSON", code=f"HTTP{raw.status}"
            ) from None
        code = getattr(result, "response_code", None)
        if code != "OK":
            raw_code = code or "MissingResponseCode"
            description = scrub_numbers(getattr(result, "response_description", None) or "")
            raise BusinessError(
                normalize_code(raw_code),
                description,
                request_id=getattr(result, "request_id", None),
                http_status=raw.status,
                raw_code=raw_code,
            )
        return result

    def _gateway_error(self, action: str, raw: RawResponse) -> GlobeSmsError:
        body: dict[str, Any] = {}
        try:
            parsed = json.loads(raw.body or b"{}")
            body = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            pass
        code = str(body.get("Code") or body.get("code") or f"HTTP{raw.status}")
        message = scrub_numbers(str(body.get("Message") or body.get("message") or ""))
        request_id = body.get("RequestId") or body.get("requestId")
        kwargs: dict[str, Any] = {"request_id": request_id, "http_status": raw.status}
        if code.startswith("Throttling"):
            return ThrottlingError(code, message, retry_after=throttle_wait(raw.headers), **kwargs)
        if raw.status == 503 or code == "ServiceUnavailable":
            return ServiceUnavailableError(code, message, **kwargs)
        if raw.status in (500, 502, 504):
            # The gateway may have handed the request on before failing: not a refusal.
            return OutcomeUnknownError(
                f"{action}: HTTP {raw.status} {code} {message}".strip(), request_id=request_id, code=code
            )
        if _AUTH_CODES.match(code):
            hint = " (check the worker's clock)" if code.startswith("InvalidTimeStamp") else ""
            return AuthenticationError(code, message + hint, **kwargs)
        return GatewayError(code, message, **kwargs)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    @property
    def stats(self) -> dict[str, int]:
        """Calls by action and outcome (``SendMessageToGlobe.ok``, ``….retry``, ``….unknown`` …)."""
        with self._stats_lock:
            return dict(self._stats)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> DysmsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
