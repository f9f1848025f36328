"""GimletD's HTTP API as the command line uses it: one clear error per failure."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """The server refused a request (`status`), or could not be reached (`status` 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

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
            response.status_code, message or response.text[:300] or response.reason_phrase
        )
