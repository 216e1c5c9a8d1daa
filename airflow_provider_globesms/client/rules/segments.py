"""SMS segment counting (the billing unit), shared by the operator's dry run and the emulator.

GSM 03.38 7-bit: 160 septets in one segment, 153 per part once concatenated; characters of the
extension table take two septets (an escape and the character) and are never split across parts.
Anything outside GSM-7 makes the whole text UCS-2: 70 UTF-16 units in one segment, 67 per part;
characters outside the Basic Multilingual Plane take two units (a surrogate pair), never split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# GSM 03.38 basic character set (default alphabet), as Unicode.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs two septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True, slots=True)
class SegmentCount:
    """How a text is encoded and billed: its encoding, units, segments and characters."""

    encoding: Encoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    characters: int


def _pack(weights: list[int], part: int) -> int:
    """Parts needed when no character may straddle two parts."""
    parts, used = 1, 0
    for weight in weights:
        if used + weight > part:
            parts += 1
            used = 0
        used += weight
    return parts


def count_segments(text: str) -> SegmentCount:
    """Segments the text is billed as. An empty text counts as one segment (it is refused anyway)."""
    chars = set(text)
    if chars <= GSM7_ALL:
        extension = chars & GSM7_EXTENSION
        units = len(text) + sum(text.count(c) for c in extension)
        if units <= GSM7_SINGLE:
            segments = 1
        elif not extension:
            segments = -(-units // GSM7_PART)
        else:
            segments = _pack([2 if c in GSM7_EXTENSION else 1 for c in text], GSM7_PART)
        return SegmentCount("GSM-7", units, segments, len(text))
    astral = any(ord(c) > 0xFFFF for c in chars)
    units = len(text) + (sum(1 for c in text if ord(c) > 0xFFFF) if astral else 0)
    if units <= UCS2_SINGLE:
        segments = 1
    elif not astral:
        segments = -(-units // UCS2_PART)
    else:
        segments = _pack([2 if ord(c) > 0xFFFF else 1 for c in text], UCS2_PART)
    return SegmentCount("UCS-2", units, segments, len(text))
