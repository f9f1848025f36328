"""Sending a notice to a target: the request, the reply read as an outcome, the retry delay.

A *target* is one configured destination: `slack`, `discord`, `github`, or
`webhook-1`, `webhook-2`, ... for each URL of WEBHOOK_URLS. Everything here
but `send` is pure.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from gimletd.errors import GimletdError

#: Longest wait a `Retry-After` is honoured for; longer ones are cut to this.
MAX_RETRY_AFTER = 3600.0
#: Longest back-off between two attempts when the reply named no wait.
MAX_BACKOFF = 300.0
#: Most of a reply body kept in a recorded reason.
REASON_BODY = 300
#: The status `send` gives a request that got no answer (refused connection, timeout).
NO_ANSWER = 599
USER_AGENT = "GimletD (https://github.com/gimlet-io/gimletd)"


class NotificationError(GimletdError):
    """A notice cannot be sent to a target as configured; retrying will not help."""


@dataclass(frozen=True)
class Outbound:
    """An HTTP request to send."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @classmethod
    def json(cls, url: str, payload: Any, headers: Mapping[str, str]) -> Outbound:
        """A POST of `payload` as compact JSON, the body bytes fixed so they can be signed."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(
            "POST",
            url,
            {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
            | dict(headers),
            body,
        )


@dataclass(frozen=True)
class Reply:
    """An HTTP reply; header names are lower case."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON, None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def excerpt(self) -> str:
        return self.body[:REASON_BODY].decode(errors="replace").strip()


class Verdict(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    GIVE_UP = "give-up"


@dataclass(frozen=True)
class Outcome:
    """What a reply means: sent, retry (after `retry_after` seconds if told), or give up."""

    verdict: Verdict
    reason: str = ""
    retry_after: float | None = None


SENT = Outcome(Verdict.SENT)


def judge_http(reply: Reply, service: str, *, now: float | None = None) -> Outcome | None:
    """The reading every provider shares; None for a 2xx, which the provider reads itself.

    429 is retried after its `Retry-After`, 5xx after a back-off; any other
    status is a refusal that retrying does not change.
    """
    if reply.status == 429:
        return Outcome(
            Verdict.RETRY,
            f"{service} is rate limiting (429)",
            retry_after(reply.headers, now=now),
        )
    if reply.status == NO_ANSWER:
        return Outcome(Verdict.RETRY, f"{service} could not be reached: {reply.excerpt()}")
    if reply.status >= 500:
        return Outcome(Verdict.RETRY, f"{service} answered {reply.status}: {reply.excerpt()}")
    if not 200 <= reply.status < 300:
        return Outcome(Verdict.GIVE_UP, f"{service} refused it ({reply.status}): {reply.excerpt()}")
    return None


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds `Retry-After` asks to wait (a number or an HTTP date); None when absent or bad."""
    raw = headers.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(raw).timestamp() - (now or time.time())
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def retry_delay(outcome: Outcome, attempt: int, *, base: float) -> float:
    """How long to wait before attempt `attempt + 1`: what the service asked, else a back-off."""
    if outcome.retry_after is not None:
        return outcome.retry_after
    backoff: float = base * 2.0 ** max(attempt - 1, 0)
    return min(backoff, MAX_BACKOFF)


def send(outbound: Outbound, *, timeout: float) -> Reply:
    """Send the request; a connection failure or timeout comes back as a NO_ANSWER reply."""
    try:
        response = _client().request(
            outbound.method,
            outbound.url,
            headers=outbound.headers,
            content=outbound.body,
            timeout=timeout,
            follow_redirects=False,
        )
    except (httpx.ConnectError, httpx.TimeoutException) as exc:
        return Reply(NO_ANSWER, {}, f"{type(exc).__name__}: {exc}".encode())
    except httpx.HTTPError as exc:
        # Only the kind: the text of a protocol error may quote a header, and so a token.
        return Reply(NO_ANSWER, {}, type(exc).__name__.encode())
    return Reply(
        response.status_code,
        {name.lower(): value for name, value in response.headers.items()},
        response.content,
    )


@functools.cache
def _client() -> httpx.Client:
    """The process's HTTP client, shared by its deliveries (httpx clients are thread-safe).

    A client per request cost about 45 ms of CPU to make (it loads the CA
    certificates) and a new connection, TLS handshake included, to Slack or
    GitHub for every notice; this one keeps connections alive between them. A
    forked process (a Celery pool child) makes its own: it must not share
    the parent's sockets.
    """
    return httpx.Client()


os.register_at_fork(after_in_child=_client.cache_clear)
