"""Typed errors of the client.

Three families, told apart by what a caller may do next:

* ``InvalidFieldError``: our own validation refused a value before anything was sent.
* ``ApiError``: the API answered and refused (gateway ``Code`` or business ``ResponseCode``).
  Nothing was accepted, so a caller may fix and resend.
* ``TransportError``: ``RequestNotSentError`` (no byte of the request can have left this machine:
  safe to resend) or ``OutcomeUnknownError`` (may have reached the API and been billed: never resend
  blindly; when it carries its signed ``request``, replaying those bytes later settles it).

Outside the send itself: ``SourceError`` (the recipients as a whole cannot be read), ``RenderError`` (one
row's text cannot be rendered), ``LedgerError`` and the lease errors (the exactly-once record cannot be
kept: sending stops).

Texts never carry the secret, the signature or a full phone number.
"""

from __future__ import annotations

from typing import Any


class GlobeSmsError(Exception):
    """Base of every error raised by this package's client."""


class ConfigurationError(GlobeSmsError):
    """The client was configured in a way that cannot work (endpoint, credentials, options)."""


class InvalidFieldError(GlobeSmsError):
    """A value was refused by validation before any request was made.

    Deliberately not a ``ValueError``: pydantic would wrap a ``ValueError`` raised in a validator,
    and we want this exact type, with its field and masked value, to reach the caller.
    """

    def __init__(self, field: str, value: str | None, reason: str) -> None:
        self.field = field
        self.value = value  # already masked when it is a phone number
        self.reason = reason
        shown = f" {value!r}" if value is not None else ""
        super().__init__(f"{field}{shown}: {reason}")


class ApiError(GlobeSmsError):
    """The API answered with a refusal."""

    retryable = False

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        request_id: str | None = None,
        http_status: int | None = None,
        raw_code: str | None = None,
    ) -> None:
        self.code = code
        self.raw_code = raw_code if raw_code is not None else code
        self.message = message
        self.request_id = request_id
        self.http_status = http_status
        parts = [self.raw_code]
        if message:
            parts.append(message)
        if http_status is not None:
            parts.append(f"HTTP {http_status}")
        if request_id:
            parts.append(f"RequestId {request_id}")
        super().__init__(": ".join(parts[:2]) + "".join(f" ({p})" for p in parts[2:]))


class GatewayError(ApiError):
    """HTTP 4xx/5xx with a ``{Code, Message, RequestId}`` body: refused before the SMS service."""


class AuthenticationError(GatewayError):
    """Unknown or inactive key, bad signature, clock skew: the credentials or the clock are wrong."""


class ThrottlingError(GatewayError):
    """``Throttling*``: over a QPS cap. Safe to retry after ``retry_after`` seconds (when known)."""

    retryable = True

    def __init__(self, *args: object, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServiceUnavailableError(GatewayError):
    """503 / ``ServiceUnavailable``: the gateway refused the call unprocessed. Safe to retry."""

    retryable = True


class BusinessError(ApiError):
    """``ResponseCode`` other than ``OK``; ``code`` is normalised without the ``isv.``/``isp.`` prefix."""


class TransportError(GlobeSmsError):
    """The HTTP exchange itself failed."""


class RequestNotSentError(TransportError):
    """No byte of the request can have left this machine (every attempt failed to connect)."""

    retryable = True


class OutcomeUnknownError(TransportError):
    """The request may have reached the API but no verdict came back (reset, timeout, 500, 502, 504...).

    The API bills on submission and has no idempotency key: the message may have been accepted.
    ``request`` is the signed request in doubt while replaying it can still settle the question (the
    gateway refuses a nonce it has seen); ``None`` once nothing can (e.g. a replay was throttled, which
    consumed the nonce).
    """

    def __init__(
        self,
        reason: str,
        *,
        request_id: str | None = None,
        code: str | None = None,
        request: Any = None,  # a wire.signing.SignedRequest: typed loosely, errors import nothing above them
    ) -> None:
        self.reason = reason
        self.request_id = request_id
        self.code = code
        self.request = request
        super().__init__(f"outcome unknown, the message may have been accepted: {reason}")


class ReceivedWithoutAnswerError(OutcomeUnknownError):
    """The request provably arrived at the API, but whether it was accepted is unknown (no MessageId).

    Raised when a request whose first answer never came is sent again byte for byte and the gateway
    refuses the repeated nonce (``SignatureNonceUsed``): the first attempt had arrived. Arrival is all that
    proves: a throttled or refused request consumes its nonce too. It may have been accepted and billed, so
    it is not sent again by default; the bulk sender reports it as ``arrived``, counted like unknown.
    """


class LeaseHeldError(GlobeSmsError):
    """Another copy of the task instance kept the ledger's lease beyond the wait: this copy must not send."""

    def __init__(self, message: str, *, where: str, holder: Any, expires_at: float | None = None) -> None:
        """``holder``: the ``ledger.lease.Holder`` that kept the lease, if known (typed loosely, as ``request``)."""
        self.where, self.holder, self.expires_at = where, holder, expires_at
        super().__init__(message)


class LeaseLostError(GlobeSmsError):
    """The ledger's lease was ours but no longer certainly is: sending must stop now."""


class CampaignRefusedError(GlobeSmsError):
    """A campaign control refuses the send before anything goes (an unreadable or empty opt-out list, a bad
    quiet-hours window, a budget exceeded); the message says why and what to change."""


class SourceError(GlobeSmsError, ValueError):
    """The recipient source as a whole cannot be used (wrong format, no 'to' column...)."""


class RenderError(GlobeSmsError):
    """The message template could not be rendered for a row (e.g. a missing variable)."""


class LedgerError(GlobeSmsError):
    """The ledger could not be written: sending must stop, or nothing protects against sending twice."""


class SealedRequestError(LedgerError):
    """A request the ledger stored sealed cannot be opened with the key given (a rotated or changed key)."""
