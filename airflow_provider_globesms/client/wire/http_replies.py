"""Reading the API's replies: a result model, or the typed error that says what the caller may do next.

Shared by the send state machine (``call``) for the blocking and the asyncio client alike. Texts are
scrubbed of phone numbers before they reach an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from airflow_provider_globesms.client.errors import (
    AuthenticationError,
    BusinessError,
    GatewayError,
    GlobeSmsError,
    OutcomeUnknownError,
    ServiceUnavailableError,
    ThrottlingError,
)
from airflow_provider_globesms.client.rules.phone import mask_number, scrub_numbers
from airflow_provider_globesms.client.wire.transport import RawResponse

R = TypeVar("R", bound=BaseModel)

_AUTH_CODES = re.compile(
    r"^(InvalidAccessKeyId|SignatureDoesNotMatch|InvalidTimeStamp|SignatureNonceUsed|"
    r"IncompleteSignature|InvalidSecurityToken|Forbidden|NoPermission|MissingSecurityToken)"
)
_TIME_LEFT = re.compile(r"TimeLeft\s*:\s*(\d+)")
_BUSINESS_PREFIX = re.compile(r"^(isv|isp)\.", re.IGNORECASE)
# The gateway's own texts may echo what it received: its string to sign (token, numbers, percent- and
# double-encoded), a token or a signature. None of it may reach a log, a results file or a ledger.
_STRING_TO_SIGN = re.compile(r"(string[ -]to[ -]sign)\s*(is)?\s*:?.*", re.IGNORECASE | re.DOTALL)
_SECRET_VALUE = re.compile(
    r"(SecurityToken|security_token|Signature|AccessKeySecret|access_key_secret|x-acs-security-token|Authorization)"
    r"(\"?\s*(?:=|:|%3D|%253D|%3A|%253A)\s*\"?)[^&\s,;\"]*?(?=%26|%2526|&|\s|,|;|\"|$)",
    re.IGNORECASE,
)
_NUMBER_GAP = r"(?:[\s.\-_()+]|%20|%2B|%252B|%2520){0,3}"
_ENCODED_NUMBER = re.compile(r"(%3D|%253D|=)(?:%2B|%252B|\+)?(\d{7,15})(?!\d)", re.IGNORECASE)


def _forms(value: str) -> list[str]:
    once = quote(value, safe="")
    return sorted(
        {value, once, quote(once, safe=""), quote_plus(value), json.dumps(value)[1:-1]}, key=len, reverse=True
    )


def scrub_gateway_text(text: str, known: Sequence[str] = ()) -> str:
    """A gateway message fit for logs: no string to sign, token, signature or full number, in any encoding.

    ``known``: values the caller sent and must never see echoed (its secret, token, signature and the
    number), removed by value in every encoding first; patterns catch the rest."""
    for value in known:
        if value.isdigit() and len(value) >= 7:
            for digits in {value, value[-8:]}:
                pattern = _NUMBER_GAP.join(re.escape(d) for d in digits)
                text = re.sub(pattern, mask_number(value).replace("\\", r"\\"), text)
        elif len(value) >= 6:
            for form in _forms(value):
                text = re.sub(re.escape(form), "***", text, flags=re.IGNORECASE)
    text = _STRING_TO_SIGN.sub(r"\1 withheld (it holds the request's token and numbers)", text)
    text = _SECRET_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _ENCODED_NUMBER.sub(lambda m: m.group(1) + mask_number(m.group(2)), text)
    return scrub_numbers(text)


class UnreadableReply(OutcomeUnknownError):
    """HTTP 2xx whose body is not the expected JSON: the API had the request, its verdict is unreadable."""


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


def parse_reply(action: str, raw: RawResponse, model: type[R], known: Callable[[], Sequence[str]] = tuple) -> R:
    """The result of a 2xx reply whose ``ResponseCode`` is ``OK``; raises the typed error otherwise.
    ``known`` gives ``scrub_gateway_text``'s values, asked for only when there is an error to scrub."""
    if raw.status >= 400:
        raise gateway_error(action, raw, known())
    try:
        result = model.model_validate_json(raw.body)
    except PydanticValidationError:
        raise UnreadableReply(
            f"{action}: HTTP {raw.status} with a body that is not the expected JSON", code=f"HTTP{raw.status}"
        ) from None
    code = getattr(result, "response_code", None)
    if code != "OK":
        secrets = known()
        raw_code = scrub_gateway_text(code or "MissingResponseCode", secrets)
        description = scrub_gateway_text(getattr(result, "response_description", None) or "", secrets)
        raise BusinessError(
            normalize_code(raw_code),
            description,
            request_id=getattr(result, "request_id", None),
            http_status=raw.status,
            raw_code=raw_code,
        )
    return result


def gateway_error(action: str, raw: RawResponse, known: Sequence[str] = ()) -> GlobeSmsError:
    """The typed error of a 4xx/5xx reply with the gateway's ``{Code, Message, RequestId}`` body."""
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(raw.body or b"{}")
        body = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    code = scrub_gateway_text(str(body.get("Code") or body.get("code") or f"HTTP{raw.status}"), known)
    message = scrub_gateway_text(str(body.get("Message") or body.get("message") or ""), known)
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
        hints = {
            "InvalidTimeStamp": " (check the worker's clock)",
            "SignatureDoesNotMatch": " (check the AccessKey Secret)",
        }
        hint = next((h for prefix, h in hints.items() if code.startswith(prefix)), "")
        return AuthenticationError(code, message + hint, **kwargs)
    return GatewayError(code, message, **kwargs)
