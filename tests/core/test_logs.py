"""Structured logs: one JSON object per line, carrying the event, env and app being worked on."""

from __future__ import annotations

import io
import json
import logging

from gimletd.logs import JsonFormatter, _ContextFilter, log_context


def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_ContextFilter())
    logger = logging.getLogger("tests.logs")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_lines_are_json_with_the_context_of_the_release() -> None:
    logger, stream = capture()
    with log_context(event_id="ev-1", env="staging"), log_context(app="frontend"):
        logger.info("pushed %s", "abc")
    logger.info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "pushed abc"
    assert (inside["event_id"], inside["env"], inside["app"]) == ("ev-1", "staging", "frontend")
    assert "event_id" not in outside


def test_extra_fields_win_over_the_context() -> None:
    logger, stream = capture()
    with log_context(env="staging"):
        logger.info("x", extra={"env": "prod"})
    assert json.loads(stream.getvalue())["env"] == "prod"
