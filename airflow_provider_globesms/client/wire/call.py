"""The send state machine: what an attempt's outcome proves about arrival, and what happens next.

No I/O here. The blocking client (``client``) and the asyncio client (``aio``) each run a thin loop
around ``Call``: ask it for the request to send (``attempt``), exchange it, report what happened
(``replied`` or ``failed``) and follow the ``Verdict``: return its result, raise its error, or wait
``wait`` seconds and go round again.

Every SMS is billed on submission and the API has no idempotency key. Only an attempt of which no byte
can have left this machine is *not sent*. Anything that may have reached the API puts its exact signed
request *in doubt*: from then on the call only resends those bytes (a *replay*), never a new
signature, and the gateway's nonce check (``SignatureNonceUsed``, within the 15 minutes a timestamp is
valid) tells whether an earlier copy arrived. A call that ends with a request still in doubt raises
``OutcomeUnknownError`` carrying that request, so that a later attempt, or a later try of the task,
settles it the same way.

One row per outcome. Columns: what the outcome proves about arrival; the next step after a fresh send
(nothing in doubt), after a replay of the request in doubt, and for QueryMessage (it bills nothing, so
it is simply asked again).

=======================  ======================================  ==========  ===============  =========
outcome                  known about arrival                     fresh       replay           query
=======================  ======================================  ==========  ===============  =========
connect failed           not sent: no byte of it left            sign anew   replay           sign anew
write failed             maybe: some or all bytes may have left  replay      replay           sign anew
closed before reply      maybe: reset or closed after sending    replay      replay           sign anew
timeout before reply     maybe: sent, no reply byte in time      replay      replay           sign anew
reply cut                arrived: the reply began, then broke    replay      replay           sign anew
HTTP 2xx unreadable      arrived: the verdict cannot be read     replay      replay           sign anew
HTTP 500/502/504         maybe: it may have been handed on       replay      replay           sign anew
HTTP 503                 refused unprocessed: nonce unused       sign anew   replay           sign anew
throttled                refused, and the nonce is consumed      sign anew   unknown, final   sign anew
SignatureNonceUsed       seen: these bytes arrived before        raise       arrived          raise
other auth/gateway 4xx   refused                                 raise       unknown, final   raise
business code            refused: the nonce was fresh            raise       raise            raise
OK                       accepted                                result      result           result
=======================  ======================================  ==========  ===============  =========

*sign anew* and *replay* wait a jittered backoff and count towards ``RetryPolicy.max_attempts``
(throttling towards ``max_throttled_attempts``, waiting as long as the gateway asked, and every caller
of the client backs off). When the budget runs out, a call with a request in doubt raises
``OutcomeUnknownError`` with that request; otherwise the last refusal (``RequestNotSentError`` when it
never connected). *arrived* raises ``ReceivedWithoutAnswerError``: the API has it, but whether it
accepted it is unknown (a throttled or refused request consumes its nonce too), and its MessageId is
lost. *unknown, final*: a refusal of a replay may have consumed its nonce, so nothing can settle it any
more (``OutcomeUnknownError`` without a request). With ``confirm_by_replay=False`` every *replay* is
instead an ``OutcomeUnknownError`` at once, keeping the request.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from airflow_provider_globesms.client.errors import (
    ApiError,
    AuthenticationError,
    BusinessError,
    GlobeSmsError,
    OutcomeUnknownError,
    ReceivedWithoutAnswerError,
    RequestNotSentError,
    ServiceUnavailableError,
    ThrottlingError,
)
from airflow_provider_globesms.client.rules.phone import scrub_numbers
from airflow_provider_globesms.client.wire.http_replies import UnreadableReply, parse_reply
from airflow_provider_globesms.client.wire.retry import RetryPolicy
from airflow_provider_globesms.client.wire.signing import SignedRequest
from airflow_provider_globesms.client.wire.transport import ExchangeError, Phase, RawResponse

log = logging.getLogger(__name__)

R = TypeVar("R", bound=BaseModel)


class Outcome(enum.Enum):
    """How one attempt ended: a row of the table."""

    CONNECT_FAILED = "connect failed"
    WRITE_FAILED = "write failed"
    CLOSED_BEFORE_REPLY = "closed before reply"
    TIMEOUT_BEFORE_REPLY = "timeout before reply"
    REPLY_CUT = "reply cut"
    UNREADABLE = "HTTP 2xx unreadable"
    SERVER_ERROR = "HTTP 500/502/504"
    UNAVAILABLE = "HTTP 503"
    THROTTLED = "throttled"
    NONCE_USED = "SignatureNonceUsed"
    REFUSED = "other auth/gateway 4xx"
    BUSINESS = "business code"
    OK = "OK"


class Next(enum.Enum):
    """What a call does after an outcome: a cell of the table."""

    SIGN_ANEW = "sign anew"
    REPLAY = "replay"
    UNKNOWN_FINAL = "unknown, final"
    ARRIVED = "arrived"
    RAISE = "raise"
    RESULT = "result"


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: what is known about arrival, and the next step for a fresh send, a replay, a query."""

    arrival: str
    fresh: Next
    replay: Next
    query: Next


def _rule(arrival: str, fresh: Next, replay: Next, query: Next = Next.SIGN_ANEW) -> Rule:
    return Rule(arrival, fresh, replay, query)


S, P, U, V, X, K = Next.SIGN_ANEW, Next.REPLAY, Next.UNKNOWN_FINAL, Next.ARRIVED, Next.RAISE, Next.RESULT
RULES: dict[Outcome, Rule] = {
    Outcome.CONNECT_FAILED: _rule("not sent: no byte of it left", S, P),
    Outcome.WRITE_FAILED: _rule("maybe: some or all bytes may have left", P, P),
    Outcome.CLOSED_BEFORE_REPLY: _rule("maybe: reset or closed after sending", P, P),
    Outcome.TIMEOUT_BEFORE_REPLY: _rule("maybe: sent, no reply byte in time", P, P),
    Outcome.REPLY_CUT: _rule("arrived: the reply began, then broke", P, P),
    Outcome.UNREADABLE: _rule("arrived: the verdict cannot be read", P, P),
    Outcome.SERVER_ERROR: _rule("maybe: it may have been handed on", P, P),
    Outcome.UNAVAILABLE: _rule("refused unprocessed: nonce unused", S, P),
    Outcome.THROTTLED: _rule("refused, and the nonce is consumed", S, U),
    Outcome.NONCE_USED: _rule("seen: these bytes arrived before", X, V, X),
    Outcome.REFUSED: _rule("refused", X, U, X),
    Outcome.BUSINESS: _rule("refused: the nonce was fresh", X, X, X),
    Outcome.OK: _rule("accepted", K, K, K),
}


def outcome_of_failure(exc: ExchangeError) -> Outcome:
    """The row of an exchange that failed, from the phase it reached."""
    if exc.phase is Phase.CONNECT:
        return Outcome.CONNECT_FAILED
    if exc.phase is Phase.WRITE:
        return Outcome.WRITE_FAILED
    if exc.phase is Phase.WAIT:
        return Outcome.TIMEOUT_BEFORE_REPLY if exc.timed_out else Outcome.CLOSED_BEFORE_REPLY
    return Outcome.REPLY_CUT


def outcome_of_error(error: GlobeSmsError) -> Outcome:
    """The row of a reply that ``parse_reply`` turned into an error."""
    if isinstance(error, UnreadableReply):
        return Outcome.UNREADABLE
    if isinstance(error, ThrottlingError):
        return Outcome.THROTTLED
    if isinstance(error, ServiceUnavailableError):
        return Outcome.UNAVAILABLE
    if isinstance(error, OutcomeUnknownError):
        return Outcome.SERVER_ERROR
    if isinstance(error, AuthenticationError) and error.code == "SignatureNonceUsed":
        return Outcome.NONCE_USED
    if isinstance(error, BusinessError):
        return Outcome.BUSINESS
    return Outcome.REFUSED


@dataclass(frozen=True, slots=True)
class Attempt:
    """The request to exchange next; ``fresh`` when newly signed (the ledger records it before it leaves)."""

    signed: SignedRequest
    fresh: bool


@dataclass(slots=True)
class Verdict(Generic[R]):
    """What the loop does next: return ``result``, raise ``error``, or wait ``wait`` s and go again.

    ``refused``: the fresh attempt was turned away (its nonce may be consumed): the bulk sender records
    that before the backoff. ``hold``: the gateway asked every caller of this client to back off (the
    call has told the rate limiter, through its ``hold`` callback).
    """

    result: R | None = None
    error: GlobeSmsError | None = None
    wait: float = 0.0
    refused: bool = False
    hold: bool = False

    def final(self) -> R | None:
        """The result when the call is over, raising its error if it failed; ``None`` to go again."""
        if self.error is not None:
            raise self.error
        return self.result


class Call(Generic[R]):
    """One API call's way through the table: attempts, the request in doubt, and the budgets."""

    def __init__(
        self,
        action: str,
        model: type[R],
        policy: RetryPolicy,
        sign: Callable[[], SignedRequest],
        *,
        idempotent: bool = False,
        in_doubt: SignedRequest | None = None,
        where: str = "",
        masked_to: str = "",
        count: Callable[[str], None] = lambda _key: None,
        hold: Callable[[float], None] = lambda _seconds: None,
        known: Sequence[str] = (),
    ) -> None:
        self.action = action
        self.model = model
        self.policy = policy
        self.idempotent = idempotent
        self.in_doubt = in_doubt  # given: settle a stored request by replaying it, never sign anew
        self.attempts = 0
        self.throttled = 0
        self._sign = sign
        self._where = where
        self._masked_to = masked_to
        self._count = count
        self._hold = hold
        self._known = tuple(k for k in known if k)  # secrets and the number: never echoed in an error
        self._current: Attempt | None = None

    def attempt(self) -> Attempt:
        """The next request to exchange: the one in doubt, or a newly signed one."""
        self.attempts += 1
        doubt = None if self.idempotent else self.in_doubt
        self._current = Attempt(doubt, False) if doubt is not None else Attempt(self._sign(), True)
        return self._current

    def replied(self, raw: RawResponse) -> Verdict[R]:
        """The exchange brought a whole reply."""
        try:
            result = parse_reply(self.action, raw, self.model, self._secrets)
        except GlobeSmsError as error:
            return self._decide(outcome_of_error(error), error)
        self._count(f"{self.action}.ok")
        return Verdict(result=result)

    def _secrets(self) -> Sequence[str]:
        """What an error text must not echo: the known values and this attempt's signature (computed only
        for a reply that is an error: parsing the query on every reply would cost a send's CPU)."""
        assert self._current is not None, "attempt() first"
        signed = self._current.signed
        signature = signed.param("Signature") or signed.headers.get("authorization", "").rpartition("=")[2]
        return (*self._known, signature)

    def failed(self, exc: ExchangeError) -> Verdict[R]:
        """The exchange failed in ``exc.phase``."""
        outcome = outcome_of_failure(exc)
        cause = f"{type(exc.cause).__name__}: {scrub_numbers(str(exc.cause))}"
        if outcome is Outcome.CONNECT_FAILED:
            error: GlobeSmsError = RequestNotSentError(f"{self.action}: could not connect to {self._where} ({cause})")
        else:
            error = OutcomeUnknownError(f"{self.action}: {outcome.value} at {self._where} ({cause})")
        return self._decide(outcome, error)

    def _decide(self, outcome: Outcome, error: GlobeSmsError) -> Verdict[R]:
        assert self._current is not None, "attempt() first"
        rule = RULES[outcome]
        step = rule.query if self.idempotent else (rule.fresh if self._current.fresh else rule.replay)
        if step is Next.REPLAY:
            self.in_doubt = self._current.signed
            if not self.policy.confirm_by_replay:
                return self._unknown(error, self.in_doubt)
            return self._again(error, outcome)
        if step is Next.SIGN_ANEW:
            return self._again(error, outcome)
        if step is Next.ARRIVED:
            return self._unknown(error, None, arrived=True)
        if step is Next.UNKNOWN_FINAL:
            return self._unknown(error, None)
        self._count(f"{self.action}.refused")
        return Verdict(error=error)

    def _again(self, error: GlobeSmsError, outcome: Outcome) -> Verdict[R]:
        """Wait, then go round again; or give up when the budget is spent."""
        policy = self.policy
        throttled = outcome is Outcome.THROTTLED
        if throttled:
            self.throttled += 1
            retry_after = error.retry_after if isinstance(error, ThrottlingError) else None
            wait = retry_after or policy.backoff(self.throttled)
            exhausted = self.throttled >= policy.max_throttled_attempts
        else:
            wait = policy.backoff(self.attempts - self.throttled)
            exhausted = self.attempts - self.throttled >= policy.max_attempts
        self._count(f"{self.action}.retry")
        if exhausted:
            self._count(f"{self.action}.gave_up")
            if self.in_doubt is not None and not self.idempotent:
                return self._unknown(error, self.in_doubt)
            return Verdict(error=error)
        log.debug("%s %s: %s; attempt %d, again in %.3f s", self.action, self._masked_to, error, self.attempts, wait)
        if throttled:
            self._hold(wait)  # every caller of the client backs off, not only this call
        fresh = self._current is not None and self._current.fresh
        refused = fresh and outcome in (Outcome.THROTTLED, Outcome.UNAVAILABLE) and not self.idempotent
        return Verdict(wait=wait, refused=refused, hold=throttled)

    def _unknown(self, error: GlobeSmsError, request: SignedRequest | None, arrived: bool = False) -> Verdict[R]:
        self._count(f"{self.action}.unknown")
        code = getattr(error, "code", None)
        request_id = getattr(error, "request_id", None)
        unknown: OutcomeUnknownError
        if arrived:
            unknown = ReceivedWithoutAnswerError(
                f"{self.action}: the request arrived at the API (its nonce was seen when it was sent again), but "
                "its answer was lost: whether it was accepted is unknown",
                request_id=request_id,
                code=code,
            )
        else:
            reason = error.reason if isinstance(error, OutcomeUnknownError) else str(error)
            if request is None and isinstance(error, ApiError):
                reason += "; a replay was refused, so nothing can settle it any more"
            unknown = OutcomeUnknownError(reason, request_id=request_id, code=code, request=request)
        log.warning("%s %s: %s", self.action, self._masked_to, unknown)
        return Verdict(error=unknown)
