"""Parsing of query parameters, strict and with messages that name the parameter."""

from __future__ import annotations

import re
from datetime import datetime

from flask import request

from api.errors import ApiError

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")

UNENCODED_PLUS = re.compile(r"\d \d{2}:\d{2}$")


def text_param(name: str, *, max_length: int = 512) -> str | None:
    value = request.args.get(name)
    if value is not None and len(value) > max_length:
        raise ApiError(400, f"query parameter {name!r} is longer than {max_length} characters")
    if value is not None and "\x00" in value:
        raise ApiError(400, f"query parameter {name!r} contains a NUL character")
    return value or None


def required_param(name: str) -> str:
    value = text_param(name)
    if value is None:
        raise ApiError(400, f"query parameter {name!r} is required")
    return value


def int_param(name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, f"query parameter {name!r} must be a whole number, not {raw!r}"
        ) from None
    if not minimum <= value <= maximum:
        raise ApiError(400, f"query parameter {name!r} must be between {minimum} and {maximum}")
    return value


def time_param(name: str) -> datetime | None:
    """An RFC 3339 timestamp with a time zone, such as 2021-03-01T12:00:00Z."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if UNENCODED_PLUS.search(raw):
        # An unencoded `+02:00` offset arrives as ` 02:00`; take it as the client meant it.
        raw = raw[:-6] + "+" + raw[-5:]
    if not RFC3339.match(raw):
        raise ApiError(
            400, f"query parameter {name!r} must be an RFC 3339 time such as 2021-03-01T12:00:00Z"
        )
    try:
        return datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} is not a valid time: {raw!r}") from None
