"""Phone numbers: parse to Alibaba's wire form, refuse what the API cannot take, mask for logs.

The API wants the country dialing code and the number as bare digits (``85291234567``). People write
``+852 9123 4567``; Alibaba's own samples write ``85291234567``. Both are accepted here, with one policy
for numbers without ``+`` (the API reads bare digits as international, whatever the writer meant):

* A bare value that is a valid Chinese mainland mobile in its national form (``13123456789``) is refused
  as ambiguous: the API would read it as ``+1 312-345-6789`` and text a stranger in North America.
  Write ``+1...`` if that is what you mean.
* ``default_region`` (an ISO code such as ``HK``) reads national forms as that country's (``91234567``
  -> ``+85291234567``); a bare value that is not a valid national number there is read as international.
* Without it, a national form is accepted only if it also happens to be a valid international number:
  the ambiguity the README's number policy names. Writing ``+`` and the country code removes it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from airflow_provider_globesms.client.errors import InvalidFieldError

MAINLAND_CHINA_CODE = 86
_MASK = "****"
_SEPARATORS = str.maketrans("", "", " -.()\u00a0")
# 7 to 15 digits (E.164's longest), optionally split by single spaces or dashes, standing alone: not
# part of a hash, an id or a longer digit run.
_NUMBER_LIKE = re.compile(r"(?<![\w+])\+?\d(?:[ \-]?\d){6,14}(?![\w])")


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A validated number. ``e164`` is ``+85291234567``; ``wire`` is what the API takes."""

    country_code: int
    national_number: str

    @property
    def wire(self) -> str:
        """The number as the API takes it: country code and national number, no ``+``."""
        return f"{self.country_code}{self.national_number}"

    @property
    def e164(self) -> str:
        """The number as ``+<country code><national number>``."""
        return f"+{self.wire}"

    @property
    def region(self) -> str:
        """ISO region (``HK``) of the number, or ``ZZ`` when phonenumbers has none."""
        return phonenumbers.region_code_for_country_code(self.country_code)


def ascii_digits(text: str) -> str:
    """Any script's decimal digits (full-width from Chinese input methods, Arabic-Indic...) as ASCII:
    phonenumbers converts them too, so every check must look at the converted text."""
    if text.isascii():
        return text  # nearly always: no per-character work on the hot path
    return "".join(str(unicodedata.decimal(c)) if not c.isascii() and c.isdecimal() else c for c in text)


def mask_number(raw: object) -> str:
    """Mask any value that may be a phone number: ``+852****5678``; garbage masks to its tail only."""
    text = ascii_digits(str(raw).strip())
    digits = text.translate(_SEPARATORS).lstrip("+")
    if digits.isascii() and digits.isdigit() and len(digits) >= 8:
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in COUNTRY_CODE_TO_REGION_CODE:
                return f"+{digits[:size]}{_MASK}{digits[-4:]}"
    if len(text) <= 4:
        return _MASK
    return f"{_MASK}{text[-4:]}" if len(text) > 6 else f"{_MASK}{text[-2:]}"


def scrub_numbers(text: str) -> str:
    """Mask every run of digits that could be a phone number inside free text (server messages)."""
    return _NUMBER_LIKE.sub(lambda m: mask_number(m.group(0)), text)


def check_region(region: str | None) -> str | None:
    """``default_region`` as an upper-case ISO region phonenumbers knows, or ``InvalidFieldError``."""
    if region is None:
        return None
    code = str(region).strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidFieldError("default_region", str(region), "not an ISO 3166 region code such as HK or SG")
    return code


def _national(digits: str, region: str) -> phonenumbers.PhoneNumber | None:
    """``digits`` read as a national number of ``region``, when that is a valid number there."""
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number_for_region(parsed, region) else None


def _looks_like_a_mainland_mobile(digits: str) -> bool:
    parsed = _national(digits, "CN") if len(digits) == 11 and digits[0] == "1" else None
    return parsed is not None and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE


def _refuse_a_mainland_mobile(digits: str, field: str, text: str) -> None:
    """Bare digits that are a mainland mobile in national form: the API would read them as +1 (or +13...)."""
    if _looks_like_a_mainland_mobile(digits):
        raise InvalidFieldError(
            field,
            mask_number(text),
            "looks like a Chinese mainland mobile without +86 (which this API cannot reach); the API would "
            f"read it as +{digits[0]} {digits[1:]}: write +{digits} if you mean that number",
        )


def parse_number(
    raw: object, field: str = "to", *, default_region: str | None = None, refuse_ambiguous: bool = True
) -> PhoneNumber:
    """Validate ``raw`` as an international mobile number the API can reach (see the module's policy).

    ``refuse_ambiguous=False`` reads bare digits as the API does (the emulator). Raises
    ``InvalidFieldError`` naming ``field``, the masked value and the reason.
    """
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise InvalidFieldError(field, None, f"expected a phone number string, got {type(raw).__name__}")
    text = str(raw).strip()
    if not text:
        raise InvalidFieldError(field, None, "phone number is empty")
    compact = ascii_digits(text).translate(_SEPARATORS)
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        # An international call prefix depends on the caller's country; ask for the plain form.
        raise InvalidFieldError(
            field, mask_number(text), "write the number as +<country code><number>, not with a 00 prefix"
        )
    else:
        digits = compact  # Alibaba's own form: country code and number, no '+'
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidFieldError(field, mask_number(text), "phone number may hold only digits after '+'")
    bare = not compact.startswith("+")
    national = _national(digits, default_region) if bare and default_region else None
    if bare and national is None and refuse_ambiguous:
        _refuse_a_mainland_mobile(digits, field, text)
    try:
        parsed = national or phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidFieldError(field, mask_number(text), f"not a phone number ({exc._msg})") from None
    if parsed.country_code == MAINLAND_CHINA_CODE:
        raise InvalidFieldError(
            field,
            mask_number(text),
            "numbers in the Chinese mainland (+86) cannot be sent through SendMessageToGlobe",
        )
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidFieldError(
            field,
            mask_number(text),
            "not a valid international number: include the country dialing code (e.g. +852 9123 4567)",
        )
    number = str(parsed.national_number)
    if parsed.italian_leading_zero:
        number = "0" * (parsed.number_of_leading_zeros or 1) + number
    return PhoneNumber(int(parsed.country_code or 0), number)
