"""Durations in settings and cleanup policies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gimletd.durations import MAX_DURATION, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("72h", 72 * 3600),
        ("1h30m", 5400),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        ("90s", 90),
        ("300", 300),
        (" 5m ", 300),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1.5h", "3 days", "-1h", "0s", "1h 30m", "99999w"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|zero|ten years"):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=MAX_DURATION))
def test_format_duration_reads_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
