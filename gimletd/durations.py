"""Durations as people write them in settings and cleanup policies: `72h`, `1h30m`, `7d`, `90s`.

Go's duration syntax (which the original's users know) without its fractions,
plus `d` and `w`, because preview environments live for days, not hours.
"""

from __future__ import annotations

import re

__all__ = ["MAX_DURATION", "format_duration", "parse_duration"]

#: Seconds per unit.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Longest duration accepted: ten years.
MAX_DURATION = 10 * 365 * 86400

_PART = re.compile(r"(\d{1,9})([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in `text`, a sequence of `<number><unit>` such as `1h30m`; a bare number is seconds.

    :raise ValueError: for anything else, zero, or more than ten years.
    """
    value = text.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        parts = _PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(
                f"{text!r} is not a duration: write a number and a unit (s, m, h, d or w), "
                "for example 72h, 1h30m or 7d"
            )
        seconds = sum(int(number) * UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be longer than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {text!r} is longer than ten years")
    return float(seconds)


def format_duration(seconds: float) -> str:
    """`seconds` in the largest whole units, as `parse_duration` reads it back: `3d1h`."""
    remaining = int(seconds)
    parts = []
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if unit == "w":
            continue  # 14d reads better than 2w in messages
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
