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

import decimal
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache, lru_cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE
from phonenumbers.phonemetadata import PhoneMetadata

from airflow_provider_globesms.client.errors import InvalidFieldError

MAINLAND_CHINA_CODE = 86
_MASK = "****"
# What phonenumbers reads as punctuation inside a number (its VALID_PUNCTUATION, less "x"), so that the
# sender and the suppression list read "+49 171/1234567", Word's non-breaking hyphen and a CJK input
# method's full-width plus, brackets and spaces as people mean them. Spaces (Zs) and invisible format
# characters (Cf: a CRM's left-to-right mark) are dropped too; control characters are not.
_READ_AS_PUNCTUATION = str.maketrans(
    {"\uff0b": "+"}
    | dict.fromkeys(" -./()[]~\\", None)
    | dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff0d\uff0e\uff0f", None)
    | dict.fromkeys("\uff08\uff09\uff3b\uff3d\u2053\u223c\uff5e", None)
)
# 7 to 15 digits (E.164's longest, of any script), optionally split by single separators people and their
# tools write (spaces of any kind, dashes, dots, slashes, invisible marks), standing alone: not part of a
# hash, an id or a longer digit run. A separator may also be a repr's escape ("\xa0"): error texts quote so.
_SEPARATOR = r"(?:[\s\-./\u2010-\u2015\u2212\uff0d\u200b-\u200f\u2060]|\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4})"
_NUMBER_LIKE = re.compile(rf"(?<![\w+＋])[+＋]?\d(?:{_SEPARATOR}?\d){{6,14}}(?![\w])")


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A validated number. ``e164`` is ``+85291234567``; ``wire`` is what the API takes."""

    country_code: int
    national_number: str
    # The country it is billed in (``billing_country``), found while validating: the budget needs no second parse.
    country: str = field(default="", compare=False)

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


def compact_number(text: str) -> str:
    """A written number without its punctuation, spaces and invisible marks, its digits in ASCII and a
    full-width plus made ``+``: ``＋852 9123-4567`` -> ``+85291234567``. Anything else is kept (and then
    refused by the caller: letters, control characters)."""
    text = ascii_digits(text).translate(_READ_AS_PUNCTUATION)
    if text.isascii():
        return text
    return "".join(c for c in text if unicodedata.category(c) not in ("Zs", "Cf"))


def unwrap_number(text: str) -> str:
    """A number as spreadsheets and CRMs export it, made a plain writing: ``tel:`` URIs, Excel's ``'`` and
    ``="..."`` text markers, invisible format characters, and ``85291234567.0`` or ``8.5291234567E+10``
    (a number column that went through a float) when that is exactly an integer. The sender and every
    list read a number through it, so ``43664123456.0`` is +43 664 123456 everywhere, never +43 6641234560."""
    if not text.isascii():
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = text.strip()
    text = text.removeprefix("tel:").removeprefix("TEL:").strip()
    if text.startswith('="') and text.endswith('"'):
        text = text[2:-1]
    text = text.lstrip("'").strip()
    if len(text) <= 40 and any(c in text for c in ".eE"):
        try:
            number = decimal.Decimal(text)
        except decimal.InvalidOperation:
            return text
        # Up to 16 digits (a phone number's 15, and room): 1e999999 must not become a million-digit integer.
        if number.is_finite() and 0 <= number.adjusted() <= 15 and number == number.to_integral_value():
            return ("+" if text.startswith("+") else "") + str(int(number))
    return text


def mask_number(raw: object) -> str:
    """Mask any value that may be a phone number: ``+852****5678``; garbage masks to its tail only."""
    # A send masks its number for the call, the ledger and the results: the last ones are remembered.
    return _masked_text(raw) if type(raw) is str else _masked(str(raw))


@lru_cache(maxsize=4096)
def _masked_text(raw: str) -> str:
    return _masked(raw)


def _masked(raw: str) -> str:
    text = ascii_digits(raw.strip())
    digits = compact_number(text).lstrip("+")
    if digits.isascii() and digits.isdigit() and len(digits) >= 8:
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in COUNTRY_CODE_TO_REGION_CODE:
                return f"+{digits[:size]}{_MASK}{digits[-4:]}"
    if len(text) <= 4:
        return _MASK
    tail = text[-4:] if len(text) > 6 else text[-2:]
    return _MASK + tail.encode("utf-8", "replace").decode()  # a lone surrogate (a broken export) shown as "?"


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
    text = unwrap_number(str(raw))
    if not text:
        raise InvalidFieldError(field, None, "phone number is empty")
    compact = compact_number(text)
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
        parsed = national or read_international(digits)
    except phonenumbers.NumberParseException as exc:
        raise InvalidFieldError(field, mask_number(text), f"not a phone number ({exc._msg})") from None
    if parsed.country_code == MAINLAND_CHINA_CODE:
        raise InvalidFieldError(
            field,
            mask_number(text),
            "numbers in the Chinese mainland (+86) cannot be sent through SendMessageToGlobe",
        )
    region = phonenumbers.region_code_for_number(parsed)  # what is_valid_number does, keeping the region
    if region is None or not phonenumbers.is_valid_number_for_region(parsed, region):
        raise InvalidFieldError(
            field,
            mask_number(text),
            "not a valid international number: include the country dialing code (e.g. +852 9123 4567)",
        )
    number = str(parsed.national_number)
    if parsed.italian_leading_zero:
        number = "0" * (parsed.number_of_leading_zeros or 1) + number
    return PhoneNumber(int(parsed.country_code or 0), number, billing_country(parsed.country_code, region))


def billing_country(country_code: int | None, region: str | None) -> str:
    """The country a number is billed in, for the cost table: its ISO region (``HK``, ``CA``), or for a
    number outside any country its calling code (``882``: each international network is priced apart);
    ``??`` when unknown."""
    if region in (None, "001", "ZZ"):
        return str(country_code) if country_code else "??"
    return str(region)


def read_international(digits: str) -> phonenumbers.PhoneNumber:
    """``phonenumbers.parse("+" + digits)`` for ASCII digits, without its general work (finding a number in
    free text, extensions, national prefixes) when the digits need none: a country code, then 2 to 17 digits
    phonenumbers would keep as they are (``reads_as_written``). The same object either way (a property test
    compares them); half the time of a parse on the sender's hot path."""
    if 3 <= len(digits) <= 20 and digits[0] != "0" and reads_as_written(digits):
        for size in (1, 2, 3):  # the shortest code that is one, as phonenumbers finds it
            code = int(digits[:size])
            if code in COUNTRY_CODE_TO_REGION_CODE:
                national = digits[size:]
                if not 2 <= len(national) <= 17:
                    break
                number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
                if len(national) > 1 and national[0] == "0":  # as phonenumbers records Italian leading zeros
                    number.italian_leading_zero = True
                    zeros = len(national) - len(national.lstrip("0"))
                    zeros = min(zeros, len(national) - 1)  # an all-zero number keeps its last 0
                    if zeros != 1:
                        number.number_of_leading_zeros = zeros
                return number
    return phonenumbers.parse("+" + digits, None)


def number_readings(raw: str, default_region: str | None = None) -> set[str]:
    """Every number (wire form) a writing may mean, for a list that must err on the side of not sending
    (opt-outs): the sender's reading (``parse_number``), the API's reading of bare digits or a ``00`` prefix
    as international, and phonenumbers' own reading of the text as written, each when it is a valid number.
    A writing ``to`` accepts as number N therefore always yields N."""
    text = raw.strip()
    plain = unwrap_number(text)
    compact = compact_number(plain)
    attempts: list[tuple[str, str | None]] = [(plain, default_region)]
    if compact.startswith("00"):
        attempts.append(("+" + compact[2:], None))  # the international prefix of most countries
    elif not compact.startswith("+"):
        attempts.append(("+" + compact, None))
    readings: set[str] = set()
    for written, region in attempts:
        try:
            readings.add(parse_number(written, "suppression", default_region=region).wire)
        except InvalidFieldError:
            continue
    for written in {text, plain}:
        try:
            parsed = phonenumbers.parse(written, default_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            leading = "0" * (parsed.number_of_leading_zeros or 1) if parsed.italian_leading_zero else ""
            readings.add(f"{parsed.country_code}{leading}{parsed.national_number}")
    return readings


def reads_as_written(digits: str) -> bool:
    """Whether phonenumbers reads ``+<digits>`` (ASCII, 3 or more) as exactly these digits: no national (trunk)
    prefix of the country follows its code to be stripped or rewritten (``+1 1 212...``, ``+7 8 912...``,
    ``+54 11 15...`` are not). A cheap test (one dictionary look-up and at most one regex) that lets an opt-out
    list skip the full parse of plain E.164 entries; digits with no country code are no valid number at all."""
    found = _national_prefixes().get(digits[:3])
    if found is None:
        return True  # no country code, or none with a national prefix
    size, pattern = found
    return pattern.match(digits[size:]) is None


@cache
def _national_prefixes() -> dict[str, tuple[int, re.Pattern[str]]]:
    """For each three first digits whose country calling code has a national prefix: the code's length and
    the pattern phonenumbers strips after it (its main region's, matched where the national number starts).
    phonenumbers finds a code as this does: the shortest of 1 to 3 digits that is one, never from a 0."""
    found: dict[str, tuple[int, re.Pattern[str]]] = {}
    for first in range(100, 1000):
        head = str(first)
        for size in (1, 2, 3):
            code = int(head[:size])
            if code in COUNTRY_CODE_TO_REGION_CODE:
                region = phonenumbers.region_code_for_country_code(code)
                metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
                pattern = metadata.national_prefix_for_parsing if metadata is not None else None
                if pattern:
                    found[head] = (size, re.compile(pattern))
                break
    return found
