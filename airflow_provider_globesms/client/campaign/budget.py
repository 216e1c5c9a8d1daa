"""What a campaign may cost: segments and estimated cost by country, and the cap it must stay under, checked
before the first message goes."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO

import phonenumbers

from airflow_provider_globesms.client.errors import ConfigurationError
from airflow_provider_globesms.client.rules.phone import billing_country


def region_of(wire: str) -> str:
    """The country a number is billed in, for the cost table: its ISO region (``HK``, ``CA``), or for a
    number outside any country its calling code (``882``: each international network is priced apart);
    ``??`` when unknown."""
    try:
        parsed = phonenumbers.parse(f"+{wire}")
    except phonenumbers.NumberParseException:
        return "??"
    return billing_country(parsed.country_code, phonenumbers.region_code_for_number(parsed))


def check_max_segments(value: object) -> int | None:
    """``max_segments`` as a whole number of segments (``None``: no cap), or a ``ConfigurationError`` naming
    it: a string, a bool, a negative, a fraction, ``nan`` or ``inf`` would otherwise disable the cap."""
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # 1e6
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(
            f"max_segments must be a whole number of segments, 0 or more (or None for no cap), not {value!r:.40}"
        )
    return value


def prices_from(source: Mapping[str, object] | IO[str] | None) -> dict[str, float]:
    """Price per segment by country: a mapping, or a CSV ``country,price`` (a header is allowed). A country
    is an ISO region (``HK``) or a calling code (``852``, ``+852``)."""
    if source is None:
        return {}
    pairs = source.items() if isinstance(source, Mapping) else _price_rows(source)
    prices: dict[str, float] = {}
    for country, price in pairs:
        key = str(country).strip().upper().lstrip("+")
        try:
            value = float(str(price).strip())
        except ValueError:
            raise ConfigurationError(f"prices: {country!r} has no number for a price ({price!r})") from None
        if not value >= 0 or not math.isfinite(value):
            raise ConfigurationError(
                f"prices: {country!r} has a negative, missing or infinite price ({str(price)[:40]!r})"
            )
        prices[key] = value
    return prices


def _price_rows(handle: IO[str]) -> Iterator[tuple[str, str]]:
    for line, record in enumerate(csv.reader(handle), start=1):
        if len(record) < 2 or not record[0].strip() or record[0].lstrip().startswith("#"):
            continue
        if line == 1 and not _is_number(record[1]):
            continue  # a header
        yield record[0], record[1]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Budget:
    """Recipients, segments and estimated cost by country, and the caps they must stay under."""

    max_segments: int | None = None
    prices: dict[str, float] = field(default_factory=dict)
    recipients: Counter[str] = field(default_factory=Counter)
    segments: Counter[str] = field(default_factory=Counter)

    def add(self, wire: str, segments: int, country: str = "") -> None:
        """Count one message that is to be sent; ``country`` as validation found it (else read from ``wire``)."""
        region = country or region_of(wire)
        self.recipients[region] += 1
        self.segments[region] += segments

    def price(self, region: str) -> float | None:
        """The price per segment of a region: by its ISO code, else by its calling code (``1`` prices
        every +1 country). Never another country's price: Canada is not priced as the US, nor Guernsey
        as GB; without a price a region is listed as unpriced."""
        if region in self.prices:
            return self.prices[region]
        code = phonenumbers.country_code_for_region(region) if region.isalpha() else 0
        return self.prices.get(str(code)) if code else None

    def __post_init__(self) -> None:
        self.max_segments = check_max_segments(self.max_segments)

    def cost(self) -> tuple[float, list[str]]:
        """The estimated total, and the regions without a price (not in the total). A total too large for a
        float is a ``ConfigurationError`` naming the dearest region (a summary never holds ``inf``)."""
        total, unpriced = 0.0, []
        costs: dict[str, float] = {}
        for region, segments in self.segments.items():
            price = self.price(region)
            if price is None:
                unpriced.append(region)
            else:
                costs[region] = price * segments
                total += costs[region]
        if not math.isfinite(total):
            dearest = max(costs, key=costs.__getitem__)
            raise ConfigurationError(
                f"prices: the estimated cost is too large to count (the price of {dearest!r}, "
                f"{self.price(dearest)!r} a segment, times {self.segments[dearest]:,} segments)"
            )
        return total, sorted(unpriced)

    def over(self) -> str | None:
        """Why the campaign is over its cap, naming the totals; ``None`` when it is within it."""
        total = sum(self.segments.values())
        if self.max_segments is not None and total > self.max_segments:
            return (
                f"{total:,} segments to {sum(self.recipients.values()):,} recipients is over max_segments="
                f"{self.max_segments:,}"
            )
        return None
