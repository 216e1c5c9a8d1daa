"""Field rules of SendMessageToGlobe / BatchSendMessageToGlobe, checked before anything is sent.

Each check returns the normalised value or raises ``InvalidFieldError`` naming the field, the value
(never a full phone number) and the reason.
"""

from __future__ import annotations

import re

from airflow_provider_globesms.client.errors import InvalidFieldError

DEFAULT_MAX_MESSAGE_LENGTH = 2000  # the newest page; an older one says 1,500: configurable
MAX_TASK_ID_LENGTH = 255
SMS_TYPES = ("OTP", "NOTIFY", "MKT")

_ALNUM_SENDER = re.compile(r"[A-Za-z0-9]{1,11}")
_NUMERIC_SENDER = re.compile(r"[0-9]{1,15}")


def shorten(text: str, limit: int = 40, ellipsis: str = "…") -> str:
    """``text`` cut to ``limit`` characters, the cut marked by ``ellipsis`` (``"..."`` keeps an SMS GSM-7)."""
    return text if len(text) <= limit else text[: max(limit - len(ellipsis), 1)] + ellipsis


def check_message(value: object, max_length: int = DEFAULT_MAX_MESSAGE_LENGTH, field: str = "message") -> str:
    """``value`` if it is non-blank text of at most ``max_length`` characters, else ``InvalidFieldError``."""
    if not isinstance(value, str):
        raise InvalidFieldError(field, None, f"expected text, got {type(value).__name__}")
    if not value.strip():
        raise InvalidFieldError(field, None, "message is empty")
    if len(value) > max_length:
        raise InvalidFieldError(field, None, f"message has {len(value)} characters, more than the {max_length} allowed")
    return value


def check_sender(value: object, field: str = "sender") -> str:
    """Sender ID (the API's ``From``): letters and digits up to 11, or digits only up to 15."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidFieldError(field, None, f"expected text, got {type(value).__name__}")
    text = str(value)
    if _NUMERIC_SENDER.fullmatch(text) or _ALNUM_SENDER.fullmatch(text):
        return text
    if text.isdigit():
        reason = f"a numeric sender ID has at most 15 digits, this one has {len(text)}"
    elif text.isascii() and text.isalnum():
        reason = f"an alphanumeric sender ID has at most 11 characters, this one has {len(text)}"
    elif not text:
        reason = "sender ID is empty"
    else:
        reason = "a sender ID may hold only the letters A-Z, a-z and the digits 0-9"
    raise InvalidFieldError(field, shorten(text), reason)


def check_task_id(value: object, field: str = "campaign_id") -> str:
    """TaskId (echoed in delivery receipts): 1 to 255 characters."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidFieldError(field, None, f"expected text, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise InvalidFieldError(field, None, "TaskId is empty (1 to 255 characters)")
    if len(text) > MAX_TASK_ID_LENGTH:
        raise InvalidFieldError(
            field, shorten(text), f"TaskId has {len(text)} characters, more than {MAX_TASK_ID_LENGTH}"
        )
    return text


# The API documents no upper bound. 72 hours is as long as SMS centres commonly keep an undelivered
# message (longer asks are cut to it), and far below what overflows a 64-bit store.
MAX_VALIDITY_PERIOD = 72 * 3600


def check_validity_period(value: object, field: str = "validity_period") -> int:
    """ValidityPeriod in seconds: a whole number from 1 to ``MAX_VALIDITY_PERIOD`` (digit strings too)."""
    if isinstance(value, bool):
        raise InvalidFieldError(field, repr(value), "expected a positive number of seconds")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise InvalidFieldError(field, shorten(str(value)), "expected a positive whole number of seconds")
    if value <= 0:
        raise InvalidFieldError(field, str(value), "must be a positive number of seconds")
    if value > MAX_VALIDITY_PERIOD:
        raise InvalidFieldError(
            field, shorten(str(value)), f"at most {MAX_VALIDITY_PERIOD} seconds (72 hours, what carriers keep)"
        )
    return value


def check_sms_type(value: object, field: str = "sms_type") -> str:
    """Type: OTP, NOTIFY or MKT (case-insensitive, sent upper-case)."""
    if not isinstance(value, str) or value.upper() not in SMS_TYPES:
        raise InvalidFieldError(field, shorten(str(value)), f"must be one of {', '.join(SMS_TYPES)}")
    return value.upper()


def check_channel_id(value: object, field: str = "channel_id") -> str:
    """``value`` as a non-empty channel ID string, else ``InvalidFieldError``."""
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
        raise InvalidFieldError(field, shorten(str(value)), "expected a non-empty channel ID")
    return str(value)


def check_message_id(value: object, field: str = "message_id") -> str:
    """``value`` as a non-empty MessageId string (stripped), else ``InvalidFieldError``."""
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise InvalidFieldError(field, shorten(str(value)), "expected a non-empty MessageId")
    return str(value).strip()
