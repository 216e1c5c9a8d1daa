"""Request signing for Alibaba Cloud RPC APIs: ACS3-HMAC-SHA256 (V3, default) and HMAC-SHA1 (V1).

Both schemes sign a canonical form of the request, not the bytes on the wire, so the functions here
build that canonical form step by step (the way botocore's ``auth.py`` does), and the emulator's
verifier calls the same functions on what it received. Operation parameters travel in the query
string and the body stays empty, as the official SDK sends them.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlsplit

from airflow_provider_globesms.client.errors import ConfigurationError

API_VERSION = "2018-05-01"
# The actions this client calls (the emulator answers them too).
SEND = "SendMessageToGlobe"
BATCH_SEND = "BatchSendMessageToGlobe"
QUERY = "QueryMessage"
V3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
SIGNATURE_VERSIONS = ("v3", "v1")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An AccessKey pair, optionally with an STS token. The secret never shows in a repr."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key_id or not self.access_key_secret:
            raise ConfigurationError("credentials need both an AccessKeyId and an AccessKeySecret")
        for name in ("access_key_id", "access_key_secret", "security_token"):
            value = getattr(self, name) or ""
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                # A newline read from a file would end a header on the wire and start one of the sender's.
                raise ConfigurationError(
                    f"credentials: {name} holds a control character (a newline or tab from a file?); strip it"
                )


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What goes on the wire: ``target`` is the path with its query string.

    Kept (as JSON) in the send ledger so that a request whose answer was lost can be replayed byte for
    byte. It holds the signature, never the secret; with STS credentials it holds the token, which is
    why ledgers belong in storage as private as the connection itself.
    """

    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""

    def signed_at(self) -> float | None:
        """When it was signed (epoch seconds), from ``x-acs-date`` (V3) or ``Timestamp`` (V1); the
        gateway accepts it, and so refuses a repeat of its nonce, for 15 minutes after that."""
        stamp = self.headers.get("x-acs-date") or self.param("Timestamp")
        try:
            return calendar.timegm(time.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return None

    def param(self, name: str) -> str | None:
        """A request parameter from the query string (``To``, ``Action``...), or ``None``."""
        values = parse_qs(urlsplit(self.target).query).get(name)
        return values[0] if values else None

    def to_json(self) -> dict[str, object]:
        """The request as a JSON-ready mapping (the body as text)."""
        return {"method": self.method, "target": self.target, "headers": self.headers, "body": self.body.decode()}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SignedRequest:
        """A request from its ``to_json`` form."""
        headers = data.get("headers")
        if not isinstance(headers, dict):
            raise ValueError("a stored request needs its headers")
        return cls(
            str(data["method"]),
            str(data["target"]),
            {str(k): str(v) for k, v in headers.items()},
            str(data.get("body") or "").encode(),
        )


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


# Each ASCII character as RFC 3986 writes it: itself when unreserved, else %XX.
_ASCII_ESCAPES = {c: chr(c) if _UNRESERVED.fullmatch(chr(c)) else f"%{c:02X}" for c in range(128)}


def percent_encode(value: str) -> str:
    """RFC 3986: keep ``A-Z a-z 0-9 - _ . ~``, encode the rest as UTF-8 ``%XX`` (space is ``%20``)."""
    # Most parameters (numbers, ids, dates) need no escaping; the regex is cheaper than quote(). An ASCII
    # text (most messages) is one translate() in C; quote() works byte by byte in Python.
    if _UNRESERVED.fullmatch(value):
        return value
    return value.translate(_ASCII_ESCAPES) if value.isascii() else quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Parameters sorted by name, each ``name=value`` percent-encoded, joined by ``&``."""
    return "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params))


def utc_timestamp(now: float | None = None) -> str:
    """``now`` (default: the current time) as ISO 8601 UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def new_nonce() -> str:
    """A random nonce: 16 bytes as hex."""
    return os.urandom(16).hex()


# --- V3: ACS3-HMAC-SHA256 -------------------------------------------------------------------------


def v3_canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_sha256: str,
) -> str:
    """``headers`` is keyed by lower-case name; ``signed_headers`` lists lower-case names, sorted."""
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    return f"{method}\n{path}\n{query}\n{canonical_headers}\n{';'.join(signed_headers)}\n{payload_sha256}"


def v3_string_to_sign(canonical_request: str) -> str:
    """The V3 string to sign: the algorithm and the SHA-256 of the canonical request."""
    return f"{V3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def v3_signature(secret: str, string_to_sign: str) -> str:
    """The V3 signature: HMAC-SHA256 of ``string_to_sign`` with ``secret``, as hex."""
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def v3_authorization(access_key_id: str, signed_headers: list[str], signature: str) -> str:
    """The V3 ``Authorization`` header."""
    return f"{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed_headers)},Signature={signature}"


def sign_v3(
    credentials: Credentials,
    *,
    host: str,
    action: str,
    params: Mapping[str, str],
    version: str = API_VERSION,
    method: str = "POST",
    date: str | None = None,
    nonce: str | None = None,
) -> SignedRequest:
    """Sign an RPC call the way the official SDK does by default (parameters in the query)."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-content-sha256": EMPTY_BODY_SHA256,
        "x-acs-date": date or utc_timestamp(),
        "x-acs-signature-nonce": nonce or new_nonce(),
        "x-acs-version": version,
    }
    if credentials.security_token:
        headers["x-acs-accesskey-id"] = credentials.access_key_id
        headers["x-acs-security-token"] = credentials.security_token
    signed = sorted(headers)
    query = canonical_query(params)
    canonical = v3_canonical_request(method, "/", query, headers, signed, EMPTY_BODY_SHA256)
    signature = v3_signature(credentials.access_key_secret, v3_string_to_sign(canonical))
    headers["authorization"] = v3_authorization(credentials.access_key_id, signed, signature)
    return SignedRequest(method, f"/?{query}" if query else "/", headers)


# --- V1: RPC HMAC-SHA1, SignatureVersion 1.0 --------------------------------------------------------


def v1_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``params`` are every query and form parameter except ``Signature``."""
    return f"{method}&%2F&{percent_encode(canonical_query(params))}"


def v1_signature(secret: str, string_to_sign: str) -> str:
    """The V1 signature: HMAC-SHA1 of ``string_to_sign`` with ``secret + '&'``, as Base64."""
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def sign_v1(
    credentials: Credentials,
    *,
    host: str,
    action: str,
    params: Mapping[str, str],
    version: str = API_VERSION,
    method: str = "POST",
    timestamp: str | None = None,
    nonce: str | None = None,
) -> SignedRequest:
    """Sign with the older RPC scheme: common parameters and ``Signature`` travel in the query."""
    signed = dict(params)
    signed.update(
        Action=action,
        Version=version,
        Format="JSON",
        AccessKeyId=credentials.access_key_id,
        SignatureMethod="HMAC-SHA1",
        SignatureVersion="1.0",
        SignatureNonce=nonce or new_nonce(),
        Timestamp=timestamp or utc_timestamp(),
    )
    if credentials.security_token:
        signed["SecurityToken"] = credentials.security_token
    query = canonical_query(signed)
    signature = v1_signature(credentials.access_key_secret, f"{method}&%2F&{percent_encode(query)}")
    target = f"/?{query}&Signature={percent_encode(signature)}"
    return SignedRequest(method, target, {"host": host})
