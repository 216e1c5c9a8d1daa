"""The client of Alibaba Cloud's international SMS API (Dysmsapi). Imports nothing from Airflow."""

from __future__ import annotations

import warnings
from typing import Any

from airflow_provider_globesms.client.aio import AsyncGlobeSmsClient
from airflow_provider_globesms.client.blocking import DEFAULT_MAX_QPS, GlobeSmsClient
from airflow_provider_globesms.client.errors import (
    ApiError,
    AuthenticationError,
    BusinessError,
    ConfigurationError,
    GatewayError,
    GlobeSmsError,
    InvalidFieldError,
    LedgerError,
    OutcomeUnknownError,
    ReceivedWithoutAnswerError,
    RenderError,
    RequestNotSentError,
    ServiceUnavailableError,
    SourceError,
    ThrottlingError,
    TransportError,
)
from airflow_provider_globesms.client.rules.models import (
    BatchSendResult,
    QueryMessageResult,
    SendMessageRequest,
    SendMessageResult,
)
from airflow_provider_globesms.client.rules.phone import PhoneNumber, mask_number, parse_number
from airflow_provider_globesms.client.rules.segments import SegmentCount, count_segments
from airflow_provider_globesms.client.wire.endpoint import Endpoint, Timeout
from airflow_provider_globesms.client.wire.retry import RetryPolicy
from airflow_provider_globesms.client.wire.signing import BATCH_SEND, QUERY, SEND, Credentials


def __getattr__(name: str) -> Any:
    """``DysmsClient``, the client's name before 0.2: still importable, with a warning, until 0.3."""
    if name == "DysmsClient":
        warnings.warn("DysmsClient is now GlobeSmsClient; the old name goes in 0.3", DeprecationWarning, stacklevel=2)
        return GlobeSmsClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BATCH_SEND",
    "DEFAULT_MAX_QPS",
    "QUERY",
    "SEND",
    "ApiError",
    "AsyncGlobeSmsClient",
    "AuthenticationError",
    "BatchSendResult",
    "BusinessError",
    "ConfigurationError",
    "Credentials",
    "Endpoint",
    "GatewayError",
    "GlobeSmsClient",
    "GlobeSmsError",
    "InvalidFieldError",
    "LedgerError",
    "OutcomeUnknownError",
    "PhoneNumber",
    "QueryMessageResult",
    "ReceivedWithoutAnswerError",
    "RenderError",
    "RequestNotSentError",
    "RetryPolicy",
    "SegmentCount",
    "SendMessageRequest",
    "SendMessageResult",
    "ServiceUnavailableError",
    "SourceError",
    "ThrottlingError",
    "Timeout",
    "TransportError",
    "count_segments",
    "mask_number",
    "parse_number",
]
