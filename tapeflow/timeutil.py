"""Durations and instants as int64 nanoseconds."""

from __future__ import annotations

import re

from tapeflow.errors import ConfigError

NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_DURATION = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")


def parse_duration_ns(text: str) -> int:
    """``"1s"``, ``"250ms"``, ``"15m"``, ``"4h"``, ``"1d"`` -> nanoseconds.

    Raises:
        ConfigError: not a positive integer followed by one of ns, us, ms, s, m, min, h, d.
    """
    m = _DURATION.match(text.lower())
    if m is None or m.group(2) not in NS_PER_UNIT or int(m.group(1)) <= 0:
        raise ConfigError(
            f"duration {text!r} is not a positive integer with a unit ({', '.join(NS_PER_UNIT)})"
        )
    return int(m.group(1)) * NS_PER_UNIT[m.group(2)]
