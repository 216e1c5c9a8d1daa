"""Where the API is (a region's host, or an explicit endpoint: plain HTTP only to this machine) and how long to
wait for it. The emulator uses ``is_loopback`` for the same rule about where it listens."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from airflow_provider_globesms.client.errors import ConfigurationError

DEFAULT_REGION = "ap-southeast-1"
REGION_HOSTS = {
    "ap-southeast-1": "dysmsapi.ap-southeast-1.aliyuncs.com",
    "ap-southeast-5": "dysmsapi.ap-southeast-5.aliyuncs.com",
    "eu-central-1": "dysmsapi.eu-central-1.aliyuncs.com",
    "us-east-1": "dysmsapi.us-east-1.aliyuncs.com",
    "cn-hongkong": "dysmsapi-xman.cn-hongkong.aliyuncs.com",
    "cn-beijing": "dysmsapi-proxy.cn-beijing.aliyuncs.com",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost`` or a loopback address)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the API is: scheme, host and port."""

    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the host, with the port unless it is the scheme's default."""
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The endpoint as a URL without path."""
        return f"{self.scheme}://{self.host_header}"

    @classmethod
    def resolve(cls, region_id: str | None = None, endpoint: str | None = None) -> Endpoint:
        """An explicit ``endpoint`` wins over ``region_id``; plain HTTP only for loopback hosts."""
        if endpoint:
            text = endpoint.strip()
            if "://" not in text:
                # The SDK's form (``127.0.0.1:8787``): HTTPS unless it is a loopback address.
                bare = urlsplit(f"//{text}")
                text = f"{'http' if is_loopback(bare.hostname or '') else 'https'}://{text}"
            parts = urlsplit(text)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigurationError(f"endpoint {endpoint!r} is not an http(s) URL")
            if parts.path not in ("", "/") or parts.query:
                raise ConfigurationError(f"endpoint {endpoint!r} must be a bare URL without a path")
            if parts.scheme == "http" and not is_loopback(parts.hostname):
                raise ConfigurationError(
                    f"endpoint {endpoint!r} uses plain HTTP to a non-loopback host; use https:// "
                    "(plain HTTP is allowed only for 127.0.0.1/localhost, e.g. the local emulator)"
                )
            try:
                port = parts.port
            except ValueError as exc:
                raise ConfigurationError(f"endpoint {endpoint!r}: {exc}") from None
            return cls(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
        region = (region_id or DEFAULT_REGION).strip().lower()
        if region not in REGION_HOSTS:
            # Falling back to another host would send from a region the account may not expect.
            raise ConfigurationError(
                f"region_id {region_id!r} has no international SMS endpoint; use one of "
                f"{', '.join(REGION_HOSTS)}, or set an endpoint URL"
            )
        return cls("https", REGION_HOSTS[region], 443)


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds allowed to connect and to read a reply."""

    connect: float = 5.0
    read: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect", "read"):
            require_positive(f"timeout.{name}", getattr(self, name))


def require_positive(name: str, value: object) -> float:
    """``value`` as a finite, positive float, or ``ConfigurationError`` naming ``name`` (nan, inf, 0...)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} {value!r}: expected a number of seconds or calls") from None
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{name} {value!r}: must be a finite number above 0")
    return number
