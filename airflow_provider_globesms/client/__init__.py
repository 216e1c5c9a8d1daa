"""The client of Alibaba Cloud's international SMS API (Dysmsapi). Imports nothing from Airflow."""

from __future__ import annotations

from airflow_provider_globesms.client.blocking import (
    BATCH_SEND,
    DEFAULT_MAX_QPS,
    QUERY,
    SEND,
    GlobeSmsClient,
)
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
from airflow_provider_globesms.client.models import (
    BatchSendResult,
    QueryMessageResult,
    SendMessageRequest,
    SendMessageResult,
)
from airflow_provider_globesms.client.phone import PhoneNumber, mask_number, parse_number
from airflow_provider_globesms.client.retry import RetryPolicy
from airflow_provider_globesms.client.segments import SegmentCount, count_segments
from airflow_provider_globesms.client.signing import Credentials
from airflow_provider_globesms.client.transport import Endpoint, Timeout

DysmsClient = GlobeSmsClient  # its name before 0.2, kept for existing code

__all__ = [
    "BATCH_SEND",
    "DEFAULT_MAX_QPS",
    "QUERY",
    "SEND",
    "ApiError",
    "AuthenticationError",
    "BatchSendResult",
    "BusinessError",
    "ConfigurationError",
    "Credentials",
    "DysmsClient",
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
