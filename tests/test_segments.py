"""Segment counting: GSM-7 and UCS-2 boundaries, double-slot and astral characters never split."""

from __future__ import annotations

import pytest

from airflow_provider_globesms.client.rules.segments import count_segments


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("{" * 80, "GSM-7", 160, 1),  # extension characters take two slots
        ("€" * 81, "GSM-7", 162, 2),
        ("^{}\\[~]|€", "GSM-7", 18, 1),
        ("Ça coûte 5€", "UCS-2", 11, 1),  # 'û' is not GSM-7: the whole text turns UCS-2
        ("é" * 160, "GSM-7", 160, 1),  # 'é' is in the GSM-7 basic set
        ("你" * 70, "UCS-2", 70, 1),
        ("你" * 71, "UCS-2", 71, 2),
        ("你" * 134, "UCS-2", 134, 2),
        ("你" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # astral: a surrogate pair, two units
        ("😀" * 36, "UCS-2", 72, 2),
        ("Hello\nworld", "GSM-7", 11, 1),
    ],
)
def test_counts(text: str, encoding: str, units: int, segments: int) -> None:
    count = count_segments(text)
    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)
    assert count.characters == len(text)


def test_an_extension_character_is_not_split_across_parts() -> None:
    # 152 + 2 + 152 = 306 septets would fit two parts of 153 if '{' could straddle them; it cannot.
    text = "a" * 152 + "{" + "a" * 152
    assert count_segments(text).units == 306
    assert count_segments(text).segments == 3


def test_a_surrogate_pair_is_not_split_across_parts() -> None:
    text = "你" * 66 + "😀" + "你" * 66  # 134 units: two parts only if the emoji could straddle
    assert count_segments(text).units == 134
    assert count_segments(text).segments == 3
