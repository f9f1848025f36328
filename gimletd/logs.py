"""Logging set-up shared by the API and the workers: JSON lines, or plain text in development."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

#: Attributes that `extra=` may add to a record and that belong in the JSON line.
CONTEXT_FIELDS = ("event_id", "env", "app", "task_id")


_context: ContextVar[dict[str, str] | None] = ContextVar("gimletd_log_context", default=None)


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Add `fields` (event_id, env, app, task_id) to every log line written inside the block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    """Copies the current log context onto each record, unless the call set it with `extra`."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, so log shippers need no parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(*, development: bool, level: int = logging.INFO) -> None:
    """Send GimletD's logs to stderr, once per process."""
    root = logging.getLogger()
    if any(getattr(h, "_gimletd", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        if development
        else JsonFormatter()
    )
    handler.addFilter(_ContextFilter())
    handler._gimletd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
