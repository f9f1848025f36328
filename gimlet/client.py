"""GimletD's HTTP API as the command line uses it: one clear error per failure."""

from __future__ import annotations

import time
from typing import Any

import httpx

#: Answers after which a request may be sent again: the server was unreachable (0), busy
#: or restarting. Only requests with an idempotency key are, so a retry never stores twice.
RETRYABLE = frozenset({0, 429, 502, 503, 504})
#: The longest wait between two tries, whatever the server's `Retry-After` says.
MAX_RETRY_WAIT = 30.0


class ApiError(Exception):
    """The server refused a request (`status`), or could not be reached (`status` 0)."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        #: The server's `Retry-After` in seconds, when it sent one.
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message


class Client:
    """An authenticated client of one GimletD server."""

    def __init__(self, server: str, token: str, *, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "gimlet-cli"},
            timeout=timeout,
        )

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self._call("POST", path, json=body, params=params)

    def post_idempotent(self, path: str, body: Any, *, key: str, attempts: int) -> Any:
        """POST with an `Idempotency-Key`, tried up to `attempts` times while it is retryable.

        The server stores a keyed request once, so a retry of a try whose answer
        was lost (a timeout, a 503 after the commit) answers the first one. It
        waits as `Retry-After` says, else 1, 2, 4... seconds, at most MAX_RETRY_WAIT.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._call(
                    "POST", path, json=body, params={}, headers={"Idempotency-Key": key}
                )
            except ApiError as exc:
                if exc.status not in RETRYABLE or attempt == attempts:
                    raise
                time.sleep(min(exc.retry_after or 2.0 ** (attempt - 1), MAX_RETRY_WAIT))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def delete(self, path: str, **params: Any) -> Any:
        return self._call("DELETE", path, params=params)

    def _call(self, method: str, path: str, **options: Any) -> Any:
        params = {key: value for key, value in options.pop("params").items() if value is not None}
        try:
            response = self._http.request(method, path, params=params, **options)
        except httpx.HTTPError as exc:
            raise ApiError(
                0, f"could not reach {self.server}: {type(exc).__name__}: {exc}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body
        message = body.get("message") if isinstance(body, dict) else None
        raise ApiError(
            response.status_code,
            message or response.text[:300] or response.reason_phrase,
            retry_after=_seconds(response.headers.get("Retry-After")),
        )


def _seconds(retry_after: str | None) -> float | None:
    """`Retry-After` in seconds; None when absent or an HTTP date (then the client's back-off)."""
    try:
        return max(0.0, float(retry_after)) if retry_after is not None else None
    except ValueError:
        return None
