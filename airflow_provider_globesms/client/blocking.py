"""``GlobeSmsClient``: SendMessageToGlobe, BatchSendMessageToGlobe and QueryMessage, signed and safe to retry.

One instance is thread-safe and meant to be shared by every sending thread of a process: it holds the
connection pool and one rate limiter per action (the gateway's caps are per account and action).

Whether and how a call is tried again is the send state machine's (``call``): this module only runs
its loop over a blocking connection pool, as ``aio`` does over asyncio streams.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from airflow_provider_globesms import __version__
from airflow_provider_globesms.client.errors import ConfigurationError, InvalidFieldError
from airflow_provider_globesms.client.rules.models import (
    BatchSendRequest,
    BatchSendResult,
    QueryMessageRequest,
    QueryMessageResult,
    SendMessageRequest,
    SendMessageResult,
)
from airflow_provider_globesms.client.rules.phone import check_region, mask_number
from airflow_provider_globesms.client.rules.validation import DEFAULT_MAX_MESSAGE_LENGTH
from airflow_provider_globesms.client.wire.call import Call
from airflow_provider_globesms.client.wire.endpoint import Endpoint, Timeout, require_positive
from airflow_provider_globesms.client.wire.ratelimit import RateLimiter
from airflow_provider_globesms.client.wire.retry import RetryPolicy
from airflow_provider_globesms.client.wire.signing import (
    API_VERSION,
    BATCH_SEND,
    QUERY,
    SEND,
    SIGNATURE_VERSIONS,
    Credentials,
    SignedRequest,
    sign_v1,
    sign_v3,
)
from airflow_provider_globesms.client.wire.transport import ConnectionPool, ExchangeError

log = logging.getLogger(__name__)


DEFAULT_MAX_QPS = 2000.0  # SendMessageToGlobe cap per account on the newest API page
BATCH_QPS = 1.0
QUERY_QPS = 300.0
QPS_HEADROOM = 0.005  # pace 0.5% under the cap, admit at most 0.25% under it in any second

R = TypeVar("R", bound=BaseModel)


def default_user_agent() -> str:
    """``airflow-provider-globesms/<version> Python/<version>``."""
    return f"airflow-provider-globesms/{__version__} Python/{platform.python_version()}"


class GlobeSmsClient:
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
        default_region: str | None = None,
    ) -> None:
        if signature_version not in SIGNATURE_VERSIONS:
            raise ConfigurationError(
                f"signature_version {signature_version!r}: expected one of {', '.join(SIGNATURE_VERSIONS)}"
            )
        if timeout is not None and not isinstance(timeout, Timeout):
            seconds = require_positive("timeout", timeout)
            timeout = Timeout(connect=min(5.0, seconds), read=seconds)
        self.credentials = credentials
        self.endpoint = Endpoint.resolve(region_id, endpoint)
        self.signature_version = signature_version
        self.timeout = timeout or Timeout()
        self.retry = retry or RetryPolicy()
        self.max_message_length = max_message_length
        self.max_qps = DEFAULT_MAX_QPS if max_qps is None else require_positive("max_qps", max_qps)
        self._sleep = sleep
        self.user_agent = user_agent or default_user_agent()
        self._pool = ConnectionPool(self.endpoint, self.timeout, maxsize=max_connections, user_agent=self.user_agent)
        # Paced 2% under each cap: the jitter between our admission and the gateway's count stays inside it.
        self.limiters = {
            SEND: RateLimiter(self.max_qps, headroom=QPS_HEADROOM),
            BATCH_SEND: RateLimiter(BATCH_QPS),
            QUERY: RateLimiter(QUERY_QPS, headroom=QPS_HEADROOM),
        }
        try:
            # National forms are read as this country's numbers (see ``phone``); None: refused.
            self.default_region = check_region(default_region)
        except InvalidFieldError as exc:
            raise ConfigurationError(str(exc)) from None
        self._context = {"max_message_length": max_message_length, "default_region": self.default_region}
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"GlobeSmsClient(endpoint={self.endpoint.url!r}, access_key_id={self.credentials.access_key_id!r}, "
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
        """Send a validated request. ``before_exchange`` sees each newly signed attempt just before its
        bytes leave (after the rate limiter): the bulk sender records it there, to replay it after a crash."""
        call = self.new_call(SEND, request.to_params(), SendMessageResult, masked_to=mask_number(request.to))
        return self._run(call, before_exchange)

    def replay_send(self, signed: SignedRequest) -> SendMessageResult:
        """Settle a stored SendMessageToGlobe whose answer was lost by sending its exact bytes again.

        The gateway refuses a nonce it has already seen (``SignatureNonceUsed``) within the 15 minutes
        it accepts a timestamp, so the answer settles whether the first attempt arrived: accepted now
        means it never did (and is now sent once); ``ReceivedWithoutAnswerError`` means it did.
        """
        return self._run(
            self.new_call(SEND, {}, SendMessageResult, in_doubt=signed, masked_to=mask_number(signed.param("To")))
        )

    def batch_send(self, to: Iterable[object], message: object, **options: Any) -> BatchSendResult:
        """BatchSendMessageToGlobe: up to 1,000 numbers; ``message`` one text, or a list of one per number."""
        request = self._validated(BatchSendRequest, {"to": to, "messages": message, **options})
        call = self.new_call(BATCH_SEND, request.to_params(), BatchSendResult, masked_to=f"{len(request.to)} numbers")
        return self._run(call)

    def build_query_request(self, message_id: object) -> QueryMessageRequest:
        """Validate one QueryMessage request without sending it."""
        return self._validated(QueryMessageRequest, {"message_id": message_id})

    def query_message(self, message_id: object) -> QueryMessageResult:
        """QueryMessage: the delivery status of one MessageId (retried freely: it bills nothing)."""
        params = self.build_query_request(message_id).to_params()
        return self._run(self.new_call(QUERY, params, QueryMessageResult, idempotent=True))

    # --- the call ------------------------------------------------------------------------------

    def sign(self, action: str, params: Mapping[str, str]) -> SignedRequest:
        """Sign one request with the connection's scheme (V3 ``ACS3-HMAC-SHA256`` or V1 HMAC-SHA1)."""
        signer = sign_v3 if self.signature_version == "v3" else sign_v1
        return signer(
            self.credentials, host=self.endpoint.host_header, action=action, params=params, version=API_VERSION
        )

    def new_call(
        self,
        action: str,
        params: Mapping[str, str],
        model: type[R],
        *,
        idempotent: bool = False,
        masked_to: str = "",
        in_doubt: SignedRequest | None = None,
        retry: RetryPolicy | None = None,
    ) -> Call[R]:
        """A state machine for one call of this client (see ``call``); both call loops start here."""
        return Call(
            action,
            model,
            retry or self.retry,
            lambda: self.sign(action, params),
            idempotent=idempotent,
            in_doubt=in_doubt,
            where=self.endpoint.url,
            masked_to=masked_to,
            count=self._count,
            hold=self.limiters[action].hold,
            known=(
                params.get("To") or (in_doubt.param("To") if in_doubt else None) or "",
                self.credentials.access_key_secret,
                self.credentials.security_token or "",
            ),
        )

    def _run(
        self,
        call: Call[R],
        before_exchange: Callable[[SignedRequest], None] | None = None,
        after_refusal: Callable[[SignedRequest], None] | None = None,
    ) -> R:
        """The blocking loop around ``call``: pace, exchange, follow the verdict."""
        limiter = self.limiters[call.action]
        while True:
            limiter.pace()
            attempt = call.attempt()
            if attempt.fresh and before_exchange is not None:
                before_exchange(attempt.signed)
            try:
                verdict = call.replied(self._pool.exchange(attempt.signed, before_write=limiter.admit))
            except ExchangeError as exc:
                verdict = call.failed(exc)
            result = verdict.final()
            if result is not None:
                return result
            if verdict.refused and after_refusal is not None:
                after_refusal(attempt.signed)
            self._sleep(verdict.wait)

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
        """Close the connection pool (idle connections now, the others when returned)."""
        self._pool.close()

    def __enter__(self) -> GlobeSmsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
