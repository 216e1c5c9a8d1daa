"""The send state machine: its table is the one in the docstring, every row and column does what it says,
no generated sequence of outcomes resends a request in doubt under a new signature, and both transports
classify real failures (through the fault proxy) into the same rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import (
    BusinessError,
    Credentials,
    OutcomeUnknownError,
    ReceivedWithoutAnswerError,
    RequestNotSentError,
    RetryPolicy,
    SendMessageResult,
    ServiceUnavailableError,
    ThrottlingError,
)
from airflow_provider_globesms.client.aio import AsyncConnectionPool
from airflow_provider_globesms.client.wire import call as call_module
from airflow_provider_globesms.client.wire.call import RULES, Call, Next, Outcome, Verdict, outcome_of_failure
from airflow_provider_globesms.client.wire.endpoint import Endpoint, Timeout
from airflow_provider_globesms.client.wire.http11 import PeerClosed, ProtocolViolation
from airflow_provider_globesms.client.wire.signing import SignedRequest, sign_v3
from airflow_provider_globesms.client.wire.transport import ConnectionPool, ExchangeError, Phase, RawResponse
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from tests.fault_proxy import FaultProxy

POLICY = RetryPolicy(max_attempts=4, max_throttled_attempts=3, backoff_base=0.0, backoff_cap=0.0)
KEY = Credentials("AKID", "SECRET")


def _reply(status: int, body: dict[str, Any] | bytes) -> RawResponse:
    return RawResponse(status, {}, body if isinstance(body, bytes) else json.dumps(body).encode())


EVENTS: dict[Outcome, ExchangeError | RawResponse] = {
    Outcome.CONNECT_FAILED: ExchangeError(Phase.CONNECT, ConnectionRefusedError("refused")),
    Outcome.WRITE_FAILED: ExchangeError(Phase.WRITE, BrokenPipeError("broken pipe")),
    Outcome.CLOSED_BEFORE_REPLY: ExchangeError(Phase.WAIT, PeerClosed("closed")),
    Outcome.TIMEOUT_BEFORE_REPLY: ExchangeError(Phase.WAIT, TimeoutError("timed out")),
    Outcome.REPLY_CUT: ExchangeError(Phase.READ, ProtocolViolation("connection closed inside the reply body")),
    Outcome.UNREADABLE: _reply(200, b"<html>maintenance</html>"),
    Outcome.SERVER_ERROR: _reply(500, {"Code": "InternalError", "Message": "boom"}),
    Outcome.UNAVAILABLE: _reply(503, {"Code": "ServiceUnavailable"}),
    Outcome.THROTTLED: _reply(400, {"Code": "Throttling.User", "Message": "slow down"}),
    Outcome.NONCE_USED: _reply(400, {"Code": "SignatureNonceUsed", "Message": "used"}),
    Outcome.REFUSED: _reply(404, {"Code": "InvalidAccessKeyId.NotFound"}),
    Outcome.BUSINESS: _reply(200, {"ResponseCode": "MOBILE_NUMBER_ILLEGAL", "RequestId": "r"}),
    Outcome.OK: _reply(200, {"ResponseCode": "OK", "MessageId": "m1", "Segments": 1, "RequestId": "r"}),
}


def signer() -> Callable[[], SignedRequest]:
    return lambda: sign_v3(
        KEY, host="127.0.0.1", action="SendMessageToGlobe", params={"To": "85291234567", "Message": "hi"}
    )


def new_call(column: str) -> Call[SendMessageResult]:
    in_doubt = signer()() if column == "replay" else None
    return Call(
        "SendMessageToGlobe", SendMessageResult, POLICY, signer(), idempotent=column == "query", in_doubt=in_doubt
    )


def feed(call: Call[SendMessageResult], outcome: Outcome) -> Verdict[SendMessageResult]:
    event = EVENTS[outcome]
    return call.failed(event) if isinstance(event, ExchangeError) else call.replied(event)


def table_rows() -> list[list[str]]:
    doc = call_module.__doc__ or ""
    rows = [line for line in doc.splitlines() if line and not line.startswith("=") and "  " in line]
    start = next(i for i, line in enumerate(rows) if line.startswith("outcome "))
    return [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in rows[start + 1 :]]


def test_the_docstring_table_is_the_rule_table() -> None:
    documented = {row[0]: row[1:] for row in table_rows()}
    coded = {o.value: [r.arrival, r.fresh.value, r.replay.value, r.query.value] for o, r in RULES.items()}
    assert documented == coded
    assert set(RULES) == set(Outcome)


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.value)
@pytest.mark.parametrize("column", ["fresh", "replay", "query"])
def test_every_row_and_column_does_what_the_table_says(outcome: Outcome, column: str) -> None:
    call = new_call(column)
    first = call.attempt()
    assert first.fresh is (column != "replay")
    verdict = feed(call, outcome)
    expected: Next = getattr(RULES[outcome], column)
    if expected is Next.RESULT:
        assert verdict.result is not None
        assert verdict.result.message_id == "m1"
    elif expected is Next.RAISE:
        assert verdict.error is not None
        assert not isinstance(verdict.error, OutcomeUnknownError)
        if column == "replay":  # a business refusal of a replay proves no earlier copy had arrived
            assert isinstance(verdict.error, BusinessError)
    elif expected is Next.ARRIVED:
        assert isinstance(verdict.error, ReceivedWithoutAnswerError)
    elif expected is Next.UNKNOWN_FINAL:
        assert isinstance(verdict.error, OutcomeUnknownError)
        assert verdict.error.request is None
    else:
        assert verdict.error is None
        assert verdict.result is None
        again = call.attempt()
        if expected is Next.REPLAY:
            assert again.signed is first.signed
            assert not again.fresh
        else:
            assert again.fresh
            assert again.signed is not first.signed
        assert verdict.refused is (column == "fresh" and outcome in (Outcome.THROTTLED, Outcome.UNAVAILABLE))
        assert verdict.hold is (outcome is Outcome.THROTTLED)


def test_without_confirm_by_replay_what_may_have_arrived_is_unknown_at_once() -> None:
    call = Call("SendMessageToGlobe", SendMessageResult, RetryPolicy(confirm_by_replay=False), signer(), where="proxy")
    sent = call.attempt()
    verdict = feed(call, Outcome.CLOSED_BEFORE_REPLY)
    assert isinstance(verdict.error, OutcomeUnknownError)
    assert verdict.error.request is sent.signed


def test_budget_spent_with_a_request_in_doubt_is_unknown_with_it_never_not_sent() -> None:
    """The reset-storm bug: a reset, then connects that fail, must not end as 'not sent'."""
    call = new_call("fresh")
    first = call.attempt()
    feed(call, Outcome.CLOSED_BEFORE_REPLY)
    verdict: Verdict[SendMessageResult] = Verdict()
    for _ in range(POLICY.max_attempts - 1):
        assert call.attempt().signed is first.signed
        verdict = feed(call, Outcome.CONNECT_FAILED)
    assert isinstance(verdict.error, OutcomeUnknownError)
    assert verdict.error.request is first.signed


def test_budget_spent_without_anything_in_doubt_names_the_last_refusal() -> None:
    for outcome, error in [
        (Outcome.CONNECT_FAILED, RequestNotSentError),
        (Outcome.UNAVAILABLE, ServiceUnavailableError),
        (Outcome.THROTTLED, ThrottlingError),
    ]:
        call = new_call("fresh")
        verdict: Verdict[SendMessageResult] = Verdict()
        while verdict.error is None:
            call.attempt()
            verdict = feed(call, outcome)
        assert type(verdict.error) is error


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(list(Outcome)), min_size=1, max_size=40), st.booleans())
def test_no_sequence_of_outcomes_resigns_a_request_in_doubt(outcomes: list[Outcome], idempotent: bool) -> None:
    """Generated outcome sequences: once bytes may have reached the API, only those bytes are sent again,
    and the call can only end accepted, proven received, refused with proof, or unknown."""
    call = Call("SendMessageToGlobe", SendMessageResult, POLICY, signer(), idempotent=idempotent)
    doubt: SignedRequest | None = None
    verdict: Verdict[SendMessageResult] = Verdict()
    for step, outcome in enumerate(outcomes):
        attempt = call.attempt()
        if doubt is not None and not idempotent:
            assert attempt.signed is doubt
            assert not attempt.fresh
        verdict = feed(call, outcome)
        if RULES[outcome].arrival.startswith(("maybe", "arrived")) and doubt is None:
            doubt = attempt.signed
        if verdict.result is not None or verdict.error is not None:
            break
        assert step < POLICY.max_attempts + POLICY.max_throttled_attempts
    if doubt is not None and not idempotent and verdict.error is not None:
        error = verdict.error
        assert isinstance(error, OutcomeUnknownError | BusinessError), error
        if isinstance(error, OutcomeUnknownError) and not isinstance(error, ReceivedWithoutAnswerError):
            assert error.request in (doubt, None)


# --- both transports classify real failures alike ------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as server:
        yield server


REAL: dict[str, Outcome] = {
    "refuse": Outcome.CLOSED_BEFORE_REPLY,  # the request in flight on a live connection is reset
    "reset_before": Outcome.CLOSED_BEFORE_REPLY,
    "forward_reset": Outcome.CLOSED_BEFORE_REPLY,
    "forward_hang": Outcome.TIMEOUT_BEFORE_REPLY,
    "cut_body": Outcome.REPLY_CUT,
}


def _exchange_blocking(proxy: FaultProxy, request: SignedRequest) -> ExchangeError | RawResponse:
    pool = ConnectionPool(Endpoint("http", "127.0.0.1", proxy.port), Timeout(connect=1, read=0.5))
    try:
        return pool.exchange(request)
    except ExchangeError as exc:
        return exc
    finally:
        pool.close()


def _exchange_async(proxy: FaultProxy, request: SignedRequest) -> ExchangeError | RawResponse:
    async def go() -> ExchangeError | RawResponse:
        pool = AsyncConnectionPool(Endpoint("http", "127.0.0.1", proxy.port), Timeout(connect=1, read=0.5))
        try:
            return await pool.exchange(request)
        except ExchangeError as exc:
            return exc
        finally:
            await pool.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("exchange", [_exchange_blocking, _exchange_async], ids=["blocking", "asyncio"])
@pytest.mark.parametrize("action", sorted(REAL))
def test_both_transports_put_real_failures_in_the_same_row(
    emulator: EmulatorServer, action: str, exchange: Callable[[FaultProxy, SignedRequest], Any]
) -> None:
    with FaultProxy(emulator.port, hang_seconds=2) as proxy:
        proxy.set_schedule([action])
        request = sign_v3(
            KEY,
            host=f"127.0.0.1:{proxy.port}",
            action="SendMessageToGlobe",
            params={"To": "85291234567", "Message": "hi"},
            version="2018-05-01",
        )
        outcome = exchange(proxy, request)
    assert isinstance(outcome, ExchangeError), outcome
    assert outcome_of_failure(outcome) is REAL[action]


def test_a_connect_to_a_closed_port_is_the_only_not_sent_row() -> None:
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    pool = ConnectionPool(Endpoint("http", "127.0.0.1", port), Timeout(connect=1, read=1))
    with pytest.raises(ExchangeError) as caught:
        pool.exchange(signer()())
    assert outcome_of_failure(caught.value) is Outcome.CONNECT_FAILED
    assert RULES[Outcome.CONNECT_FAILED].arrival.startswith("not sent")
