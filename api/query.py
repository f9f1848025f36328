"""Parsing of query parameters and request headers, strict, with messages that name them."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from flask import request

from api.errors import ApiError
from gimletd.models import DNS_LABEL_MAX, check_dns_label

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")

UNENCODED_PLUS = re.compile(r"\d \d{2}:\d{2}$")

#: Longest `Idempotency-Key` or `X-GitHub-Delivery` accepted.
MAX_DEDUPE_KEY = 200


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


def label_param(name: str) -> str:
    """A required env or app name: a DNS-1123 label, so `../x` or `prod/x` never reach a path."""
    value = optional_label_param(name)
    if value is None:
        raise ApiError(400, f"query parameter {name!r} is required")
    return value


def optional_label_param(name: str) -> str | None:
    value = text_param(name, max_length=DNS_LABEL_MAX)
    if value is None:
        return None
    return checked_label(value, f"query parameter {name!r}", status=400)


def checked_label(value: str, what: str, *, status: int) -> str:
    """`value` if it is a DNS-1123 label; :raise ApiError: with `status` otherwise."""
    try:
        return check_dns_label(value, what)
    except ValueError as exc:
        raise ApiError(status, str(exc)) from None


def json_body() -> bytes:
    """The raw request body; :raise 400: when it is empty."""
    body = request.get_data(cache=False)
    if not body.strip():
        raise ApiError(400, "the request body is empty: send JSON")
    return body


def idempotency_key(*scope: str) -> str | None:
    """The `Idempotency-Key` header as a dedupe key, None when the request has none.

    The key counts within `scope` (the user, and what the request is about), so
    one client's key never matches another's request. It is hashed: stored keys
    have one length whatever the client sent.

    :raise 400: for a key longer than MAX_DEDUPE_KEY.
    """
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return None
    if len(key) > MAX_DEDUPE_KEY:
        raise ApiError(400, f"the Idempotency-Key is longer than {MAX_DEDUPE_KEY} characters")
    return "api:" + hashlib.sha256("\x00".join([*scope, key]).encode()).hexdigest()


def bool_param(name: str) -> bool:
    raw = request.args.get(name, "").lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ApiError(400, f"query parameter {name!r} must be true or false, not {raw[:20]!r}")


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
