"""The one place that turns errors into JSON responses; no response ever carries a traceback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from gimletd.errors import Conflict, InputError, StoreUnavailable

log = logging.getLogger(__name__)

#: Seconds a client should wait before retrying when the database is unavailable.
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An error a view raises on purpose, with its HTTP status."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def error_response(status: int, message: str, **details: Any) -> Response:
    response = jsonify({"message": message, **details})
    response.status_code = status
    return response


class Unavailable(ApiError):
    """Not possible yet, but soon: 503 with `Retry-After`, in the header and the body."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


def unavailable_response(message: str) -> Response:
    response = error_response(503, message, retryAfter=RETRY_AFTER_SECONDS)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        if isinstance(exc, Unavailable):
            return unavailable_response(exc.message)
        return error_response(exc.status, exc.message, **exc.details)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> Response:
        errors = exc.errors(include_url=False, include_input=False)
        invalid_json = [error["msg"] for error in errors if error["type"] == "json_invalid"]
        if invalid_json:
            return error_response(400, f"the body is not valid JSON: {invalid_json[0]}")
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]), "problem": error["msg"]}
            for error in errors
        ]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems[:5])
        return error_response(422, f"invalid input: {summary}", errors=problems)

    @app.errorhandler(InputError)
    def _input_error(exc: InputError) -> Response:
        return error_response(exc.status_code, str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict) -> Response:
        return error_response(409, str(exc))

    @app.errorhandler(StoreUnavailable)
    def _store_unavailable(exc: StoreUnavailable) -> Response:
        log.warning("database unavailable: %s", exc)
        return unavailable_response("the database is unavailable, retry shortly")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            return error_response(413, f"request body is larger than {limit} bytes")
        return error_response(status, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal error; the server log has the details")
