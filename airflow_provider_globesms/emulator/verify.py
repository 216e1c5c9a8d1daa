"""Authentication as the gateway does it: V3 (ACS3-HMAC-SHA256) headers or V1 (HMAC-SHA1) parameters.

The verifier recomputes signatures from what arrived on the wire with the client's own canonical-form
functions: the wire query is decoded (the SDK sends ``+`` for spaces, we send ``%20``) and re-encoded,
and V3 headers are canonicalised from the names ``SignedHeaders`` lists.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote_plus

from airflow_provider_globesms.client.wire.signing import (
    V3_ALGORITHM,
    canonical_query,
    v1_signature,
    v1_string_to_sign,
    v3_canonical_request,
    v3_signature,
    v3_string_to_sign,
)


class GatewayRefusal(Exception):
    """A refusal the gateway answers with HTTP 4xx/5xx and ``{RequestId, HostId, Code, Message}``."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request whose signature checked out: the key, the action, its version and parameters."""

    access_key_id: str
    action: str
    version: str
    params: dict[str, str]  # operation parameters only (no signing parameters)
    scheme: str  # "v3" or "v1"


V1_COMMON = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "SecurityToken",
        "Signature",
        "SignatureType",
        "RegionId",
    }
)


def parse_wire_query(raw: bytes | str) -> dict[str, str]:
    """Decode a form-encoded query (``+`` or ``%20`` for spaces, UTF-8 escapes), keeping empty values.

    ``urllib.parse.parse_qsl`` does the same at several times the cost; most of our values need no
    decoding at all, so they skip ``unquote_plus``.
    """
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    params: dict[str, str] = {}
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="strict")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="strict")
        params[name] = value
    return params


def _parse_timestamp(value: str, field: str) -> float:
    """``YYYY-MM-DDThh:mm:ssZ`` (UTC) to epoch seconds; ``time.strptime`` costs ten times more."""
    try:
        if len(value) != 20 or value[4] + value[7] + value[10] + value[13] + value[16] + value[19] != "--T::Z":
            raise ValueError(value)
        stamp = datetime(
            int(value[0:4]),
            int(value[5:7]),
            int(value[8:10]),
            int(value[11:13]),
            int(value[14:16]),
            int(value[17:19]),
            tzinfo=timezone.utc,
        )
        return stamp.timestamp()
    except (ValueError, TypeError):
        raise GatewayRefusal(
            400, "InvalidTimeStamp.Format", f"Specified {field} is not valid (expected YYYY-MM-DDThh:mm:ssZ, UTC)."
        ) from None


def _check_signature(expected: str, given: str, string_to_sign: str) -> None:
    if not hmac.compare_digest(expected, given):
        raise GatewayRefusal(
            400,
            "SignatureDoesNotMatch",
            f"Specified signature does not match our calculation. server string to sign is:{string_to_sign}",
        )


class NonceCache:
    """Nonces seen within the timestamp tolerance; older ones are refused by their timestamp anyway."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._seen: set[tuple[str, str]] = set()
        self._order: deque[tuple[float, tuple[str, str]]] = deque()

    def check_and_add(self, key_id: str, nonce: str, now: float) -> bool:
        """Whether the nonce is new for this key (then remembered until ``now + ttl``)."""
        while self._order and self._order[0][0] < now:
            self._seen.discard(self._order.popleft()[1])
        entry = (key_id, nonce)
        if entry in self._seen:
            return False
        self._seen.add(entry)
        self._order.append((now + self.ttl, entry))
        return True

    def __len__(self) -> int:
        return len(self._seen)


class Verifier:
    """Checks a request's signature (V3 or V1), timestamp and nonce as the real gateway does."""

    def __init__(self, keys: Mapping[str, str], tolerance: float = 900.0) -> None:
        self.keys = keys
        self.tolerance = tolerance
        self.nonces = NonceCache(tolerance)

    def _secret(self, key_id: str) -> str:
        secret = self.keys.get(key_id)
        if secret is None:
            raise GatewayRefusal(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        return secret

    def _fresh(self, timestamp: str, field: str, now: float, key_id: str, nonce: str) -> None:
        """The timestamp within the tolerance, and the nonce never seen before for this key."""
        if not timestamp:
            name = "XAcsDate" if field == "x-acs-date" else field
            raise GatewayRefusal(400, f"Missing{name}", f"{field} is mandatory for this action.")
        if abs(now - _parse_timestamp(timestamp, field)) > self.tolerance:
            raise GatewayRefusal(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired (more than 15 minutes)."
            )
        if not nonce:
            raise GatewayRefusal(400, "MissingSignatureNonce", "SignatureNonce is mandatory for this action.")
        if not self.nonces.check_and_add(key_id, nonce, now):
            raise GatewayRefusal(400, "SignatureNonceUsed", "Specified signature nonce was used already.")

    def verify(
        self, method: str, query: bytes, headers: Mapping[str, str], body: bytes, now: float | None = None
    ) -> Authenticated:
        """``headers`` keyed by lower-case name. Raises ``GatewayRefusal`` as the gateway would."""
        now = time.time() if now is None else now
        try:
            params = parse_wire_query(query)
            form: dict[str, str] = {}
            if body and "application/x-www-form-urlencoded" in headers.get("content-type", ""):
                form = parse_wire_query(body)
        except UnicodeDecodeError:
            raise GatewayRefusal(400, "InvalidParameter.Encoding", "Parameters must be UTF-8.") from None
        authorization = headers.get("authorization", "")
        if authorization.startswith("ACS3-"):
            return self._verify_v3(method, params, headers, body, authorization, now)
        if "Signature" in params or "Signature" in form:
            return self._verify_v1(method, {**params, **form}, now)
        raise GatewayRefusal(400, "MissingSignature", "The request has no signature (Authorization or Signature).")

    def _verify_v3(
        self,
        method: str,
        params: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
        authorization: str,
        now: float,
    ) -> Authenticated:
        algorithm, _, rest = authorization.partition(" ")
        if algorithm != V3_ALGORITHM:
            raise GatewayRefusal(400, "IncompleteSignature", f"Unsupported signature algorithm {algorithm!r}.")
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        key_id, signed_text, signature = fields.get("Credential"), fields.get("SignedHeaders"), fields.get("Signature")
        if not key_id or not signed_text or not signature:
            raise GatewayRefusal(
                400, "IncompleteSignature", "Authorization lacks Credential, SignedHeaders or Signature."
            )
        signed = signed_text.split(";")
        if signed != sorted(signed) or any(name != name.lower() for name in signed):
            raise GatewayRefusal(400, "IncompleteSignature", "SignedHeaders must be lower-case and sorted.")
        required = {"host", *(name for name in headers if name.startswith("x-acs-"))}
        unsigned = sorted(required - set(signed))
        if unsigned:
            raise GatewayRefusal(400, "IncompleteSignature", f"These headers must be signed: {', '.join(unsigned)}.")
        missing = [name for name in signed if name not in headers]
        if missing:
            raise GatewayRefusal(400, "IncompleteSignature", f"Signed headers not sent: {', '.join(missing)}.")
        secret = self._secret(key_id)
        payload_hash = hashlib.sha256(body).hexdigest()
        if headers.get("x-acs-content-sha256") != payload_hash:
            raise GatewayRefusal(400, "SignatureDoesNotMatch", "x-acs-content-sha256 does not match the body.")
        canonical = v3_canonical_request(method, "/", canonical_query(params), headers, signed, payload_hash)
        string_to_sign = v3_string_to_sign(canonical)
        _check_signature(v3_signature(secret, string_to_sign), signature, string_to_sign)
        self._fresh(headers.get("x-acs-date", ""), "x-acs-date", now, key_id, headers.get("x-acs-signature-nonce", ""))
        return Authenticated(key_id, headers.get("x-acs-action", ""), headers.get("x-acs-version", ""), params, "v3")

    def _verify_v1(self, method: str, params: dict[str, str], now: float) -> Authenticated:
        signature = params.get("Signature", "")
        key_id = params.get("AccessKeyId", "")
        if not key_id:
            raise GatewayRefusal(400, "MissingAccessKeyId", "AccessKeyId is mandatory for this action.")
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            raise GatewayRefusal(400, "InvalidSignatureMethod", "Specified signature method or version is not valid.")
        secret = self._secret(key_id)
        signed = {k: v for k, v in params.items() if k != "Signature"}
        string_to_sign = v1_string_to_sign(method, signed)
        _check_signature(v1_signature(secret, string_to_sign), signature, string_to_sign)
        self._fresh(params.get("Timestamp", ""), "Timestamp", now, key_id, params.get("SignatureNonce", ""))
        operation = {k: v for k, v in params.items() if k not in V1_COMMON}
        return Authenticated(key_id, params.get("Action", ""), params.get("Version", ""), operation, "v1")
