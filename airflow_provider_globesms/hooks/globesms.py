"""GlobeSmsHook: an Airflow connection turned into a ``GlobeSmsClient``.

The hook only translates: connection fields and extras (or the official Alibaba provider's
``alibaba_cloud`` connection, or Alibaba's standard environment variables) become client settings.
Nothing touches the network until the first call; the client is built once per hook and shared by
every thread of a task.
"""

from __future__ import annotations

import difflib
import os
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_globesms import CONN_TYPE, CONNECTION_FIELDS, CONNECTION_UI, HOOK_NAME
from airflow_provider_globesms.client import (
    AuthenticationError,
    BatchSendResult,
    BusinessError,
    ConfigurationError,
    Credentials,
    GlobeSmsClient,
    GlobeSmsError,
    QueryMessageResult,
    SendMessageResult,
    mask_number,
)
from airflow_provider_globesms.client.wire.endpoint import DEFAULT_REGION, Endpoint, require_positive
from airflow_provider_globesms.client.wire.signing import SIGNATURE_VERSIONS

ALIBABA_CLOUD_CONN_TYPE = "alibaba_cloud"
ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name
# A MessageId that cannot exist: QueryMessage on it proves the key and signature and sends nothing.
PROBE_MESSAGE_ID = "0"


@dataclass(frozen=True)
class GlobeSmsSettings:
    """Everything the client needs, resolved from one connection. Secrets stay out of the repr."""

    conn_id: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    region_id: str = DEFAULT_REGION
    endpoint: str | None = None
    signature_version: str = "v3"
    timeout: float | None = None
    max_qps: float | None = None
    default_region: str | None = None
    credentials_from: str = "connection"


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


class GlobeSmsHook(BaseHook):
    """Send SMS through Alibaba Cloud's international SMS API.

    :param globesms_conn_id: connection of type ``globesms`` (or ``alibaba_cloud``).
    :param max_qps: cap on SendMessageToGlobe calls per second; overrides the connection's ``max_qps``.
    :param timeout: seconds to wait for an answer; overrides the connection's ``timeout``.
    :param max_connections: keep-alive connections to pool; raise it for concurrent bulk sends.
    :param default_region: read numbers without ``+`` in their national form for this country (an ISO code
        such as ``HK``); overrides the connection's ``default_region``.
    """

    conn_name_attr = "globesms_conn_id"
    default_conn_name = "globesms_default"
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(
        self,
        globesms_conn_id: str = default_conn_name,
        *,
        max_qps: float | None = None,
        timeout: float | None = None,
        max_connections: int = 10,
        default_region: str | None = None,
    ) -> None:
        super().__init__()
        self.globesms_conn_id = globesms_conn_id
        # nan, inf, 0 and negatives are refused here, before any connection is read or request made.
        self._max_qps = None if max_qps is None else require_positive("max_qps", max_qps)
        self._timeout = None if timeout is None else require_positive("timeout", timeout)
        self.max_connections = max_connections
        self._default_region = default_region

    def __repr__(self) -> str:
        return f"{type(self).__name__}(globesms_conn_id={self.globesms_conn_id!r})"

    # --- connection -> settings -------------------------------------------------------------------

    @cached_property
    def settings(self) -> GlobeSmsSettings:
        """The connection's settings (read once)."""
        conn = self.get_connection(self.globesms_conn_id)
        return self.settings_from_connection(conn)

    def settings_from_connection(self, conn: Any) -> GlobeSmsSettings:
        """The settings a connection holds, checked: every refusal names the connection and the field.

        :param conn: an Airflow ``Connection`` of type ``globesms`` (or ``alibaba_cloud``).
        """
        conn_id = conn.conn_id or self.globesms_conn_id
        extra = _ExtraReader(conn, conn_id)
        extra.refuse_unknown()
        key_id, secret, token, source = _credentials(conn, extra)
        if not key_id or not secret:
            raise ConfigurationError(
                f"connection {conn_id!r} has no AccessKey: set its login (AccessKey ID) and password "
                f"(AccessKey Secret), or the environment variables {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"
            )
        self._mask(secret, token)

        signature_version = str(extra("signature_version") or "v3").lower()
        if signature_version not in SIGNATURE_VERSIONS:
            raise ConfigurationError(
                f"connection {conn_id!r}: extra 'signature_version' must be one of "
                f"{', '.join(SIGNATURE_VERSIONS)}, got {signature_version!r}"
            )
        settings = GlobeSmsSettings(
            conn_id=conn_id,
            access_key_id=str(key_id),
            access_key_secret=str(secret),
            security_token=str(token) if token else None,
            region_id=str(extra("region_id", "region") or DEFAULT_REGION),
            endpoint=extra("endpoint"),
            signature_version=signature_version,
            timeout=extra.number("timeout"),
            max_qps=extra.number("max_qps"),
            default_region=extra("default_region"),
            credentials_from=source,
        )
        Endpoint.resolve(settings.region_id, settings.endpoint)  # a bad endpoint fails here, clearly
        return settings

    @staticmethod
    def _mask(*secrets: str | None) -> None:
        """Register secrets with Airflow's log masker (connection passwords already are; env vars not)."""
        try:
            from airflow.sdk.log import mask_secret
        except ImportError:  # pragma: no cover - older task SDKs
            return
        for secret in secrets:
            if secret:
                mask_secret(secret)

    # --- client --------------------------------------------------------------------------------

    @cached_property
    def client(self) -> GlobeSmsClient:
        """The client built from the connection (built once)."""
        return self.client_from_settings(self.settings)

    def client_from_settings(self, s: GlobeSmsSettings) -> GlobeSmsClient:
        """A client from ``s``, with the hook's own timeout, rate and region overrides.

        :param s: the settings, as ``settings_from_connection`` reads them.
        """
        return GlobeSmsClient(
            Credentials(s.access_key_id, s.access_key_secret, s.security_token),
            region_id=s.region_id,
            endpoint=s.endpoint,
            signature_version=s.signature_version,
            timeout=self._timeout or s.timeout,
            max_qps=self._max_qps or s.max_qps,
            max_connections=self.max_connections,
            default_region=self._default_region or s.default_region,
        )

    async def aget_client(self) -> GlobeSmsClient:
        """The client, built from a connection read without blocking (in the triggerer)."""
        conn = await self.aget_connection(self.globesms_conn_id)
        return self.client_from_settings(self.settings_from_connection(conn))

    def get_conn(self) -> GlobeSmsClient:
        """The client."""
        return self.client

    @property
    def max_qps(self) -> float:
        """SendMessageToGlobe calls per second this hook allows itself."""
        return self.client.max_qps

    def close(self) -> None:
        """Close the client, if one was built."""
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    # --- operations -----------------------------------------------------------------------------

    def send_message(self, to: str, message: str, **options: Any) -> SendMessageResult:
        """SendMessageToGlobe to one number; validates everything before sending.

        :param to: the number (``+85291234567``, ``85291234567``, or national with ``default_region``).
        :param message: the text (any length: the API splits it into segments).
        :param options: ``sender``, ``sms_type``, ``task_id``, ``validity_period``, ``channel_id``.
        """
        result = self.client.send_message(to, message, **options)
        self.log.info(
            "SMS to %s accepted: MessageId %s, %d segment(s), RequestId %s",
            mask_number(to),
            result.message_id,
            result.segments,
            result.request_id,
        )
        return result

    def batch_send(self, to: list[str], message: str | list[str], **options: Any) -> BatchSendResult:
        """BatchSendMessageToGlobe: up to 1,000 numbers, one text or one text per number (1 call/s).

        :param to: the numbers, at most 1,000.
        :param message: one text for all, or one per number (in the order of ``to``).
        :param options: ``sender``, ``sms_type``, ``task_id``, ``validity_period``, ``channel_id``.
        """
        result = self.client.batch_send(to, message, **options)
        self.log.info(
            "Batch of %d SMS: %d accepted, %d failed, RequestId %s",
            len(to),
            result.success_count,
            len(result.failed_list),
            result.request_id,
        )
        return result

    def query_message(self, message_id: str) -> QueryMessageResult:
        """QueryMessage: delivery status of one message.

        :param message_id: the MessageId a send returned.
        """
        return self.client.query_message(message_id)

    def test_connection(self) -> tuple[bool, str]:
        """Prove the key and the signature with a QueryMessage on a MessageId that cannot exist.

        QueryMessage is free and sends no SMS. Any business answer means the gateway accepted our
        signature; a gateway refusal names what is wrong.
        """
        try:
            client = self.client
            with suppress(BusinessError):  # e.g. no such message: the call itself was authenticated
                client.query_message(PROBE_MESSAGE_ID)
            return True, (
                f"Authenticated to {client.endpoint.url} as {client.credentials.access_key_id} "
                f"({client.signature_version.upper()} signature)."
            )
        except AuthenticationError as exc:
            return False, f"Credentials refused: {exc}"
        except GlobeSmsError as exc:
            return False, str(exc)
        except Exception as exc:  # the UI shows this text; never a traceback with secrets
            return False, f"{type(exc).__name__}: {exc}"

    # --- connection form on Airflow 3.1 (3.2+ reads conn-fields from get_provider_info) ----------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How the connection form hides, relabels and fills in the standard fields."""
        return {
            "hidden_fields": list(CONNECTION_UI["hidden-fields"]),
            "relabeling": dict(CONNECTION_UI["relabeling"]),
            "placeholders": dict(CONNECTION_UI["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection form's extra fields (none when the web UI packages are missing)."""
        try:
            from flask_appbuilder.fieldwidgets import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
                BS3PasswordFieldWidget,
                BS3TextFieldWidget,
            )
            from flask_babel import lazy_gettext  # type: ignore[import-not-found,import-untyped,unused-ignore]
            from wtforms import PasswordField, StringField  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            return {}
        widgets: dict[str, Any] = {}
        for name, spec in CONNECTION_FIELDS.items():
            secret = spec["schema"].get("format") == "password"
            field_class = PasswordField if secret else StringField
            widget = BS3PasswordFieldWidget() if secret else BS3TextFieldWidget()
            widgets[name] = field_class(lazy_gettext(spec["label"]), widget=widget, description=spec["description"])
        return widgets


class _ExtraReader:
    """A connection's extras by name, under their plain or ``extra__<type>__`` key; blanks count as unset."""

    def __init__(self, conn: Any, conn_id: str) -> None:
        self.extras: dict[str, Any] = dict(conn.extra_dejson or {})
        self.conn_type = (conn.conn_type or CONN_TYPE).replace("-", "_")
        self.conn_id = conn_id

    def __call__(self, name: str, *aliases: str) -> Any:
        for key in (name, *aliases):
            for candidate in (key, f"extra__{self.conn_type}__{key}"):
                value = _blank_to_none(self.extras.get(candidate))
                if value is not None:
                    return value
        return None

    def refuse_unknown(self) -> None:
        """A ``globesms`` connection's extras are its settings only: a misspelt ``endpoint`` would otherwise
        send through Alibaba's default region, for real, instead of to the emulator it names."""
        if self.conn_type != CONN_TYPE:
            return  # an ``alibaba_cloud`` connection carries other providers' extras too
        prefix = f"extra__{CONN_TYPE}__"
        known = {*CONNECTION_FIELDS, "access_key_id", "access_key_secret"}
        for key in sorted(self.extras):
            name = key.removeprefix(prefix)
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigurationError(
                    f"connection {self.conn_id!r}: extra {name[:60]!r} is not a setting of a globesms "
                    f"connection{hint}; the settings are {', '.join(sorted(known))}"
                )

    def number(self, name: str) -> float | None:
        """A positive finite number, or None when unset; anything else names the connection and field."""
        value = self(name)
        if value is None:
            return None
        try:
            return require_positive(name, value)
        except ConfigurationError:
            raise ConfigurationError(
                f"connection {self.conn_id!r}: extra {name!r} must be a finite number above 0, got {value!r}"
            ) from None


def _credentials(conn: Any, extra: _ExtraReader) -> tuple[Any, Any, Any, str]:
    """(key id, secret, STS token, where they came from): the connection, else Alibaba's environment."""
    key_id = _blank_to_none(conn.login) or extra("access_key_id")
    secret = _blank_to_none(conn.password) or extra("access_key_secret")
    token = extra("security_token")
    if key_id or secret:
        return key_id, secret, token, "connection"
    return (
        _blank_to_none(os.environ.get(ENV_ACCESS_KEY_ID)),
        _blank_to_none(os.environ.get(ENV_ACCESS_KEY_SECRET)),
        token or _blank_to_none(os.environ.get(ENV_SECURITY_TOKEN)),
        "environment",
    )
