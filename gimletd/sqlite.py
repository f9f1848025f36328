"""SQLite connections that wait for the write lock in the kernel, not in SQLite's busy handler.

SQLite lets one connection write at a time. A connection that finds the lock
taken sleeps in its busy handler, in steps of up to 100 ms, and does not wake
when the lock is released: with the API's and the workers' processes writing
side by side, most of a request's time went to those sleeps (a p99 of 100 ms
for a 2 ms transaction). Here every connection to one database file first
takes an exclusive `flock` on `<database>.writer.lock` before any statement
that may write, and gives it back when its transaction ends, so writers queue
in the kernel and the next one runs as soon as the last one commits.

Reads (`SELECT`) take no lock: WAL mode lets them run beside a writer.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from typing import Any, Self


class WriteQueuedConnection(sqlite3.Connection):
    """A `sqlite3.Connection` that holds the database's writer lock for each write transaction.

    Pass it as `factory` to `sqlite3.connect` (SQLAlchemy: `connect_args`).
    """

    def __init__(self, database: str | bytes | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        path = os.fsdecode(database)
        in_memory = path in ("", ":memory:") or path.startswith("file::memory:")
        self._lock_fd = (
            None if in_memory else os.open(f"{path}.writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        )
        self._locked = False

    # One signature where typeshed has two overloads.
    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or _WriteQueuedCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor().execute(sql, parameters)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._unlock_unless_writing()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._unlock_unless_writing()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor drops the lock too
                self._lock_fd, self._locked = None, False

    def _lock_for(self, sql: str) -> None:
        """Take the writer lock before a statement that may write."""
        if self._locked or self._lock_fd is None or _is_read(sql):
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked = True

    def _unlock_unless_writing(self) -> None:
        """Give the lock back once no transaction is open (after COMMIT, ROLLBACK, autocommit)."""
        if self._locked and not self.in_transaction and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._locked = False


class _WriteQueuedCursor(sqlite3.Cursor):
    connection: WriteQueuedConnection

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        self.connection._lock_for(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection._unlock_unless_writing()

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        self.connection._lock_for(sql)
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            self.connection._unlock_unless_writing()


def _is_read(sql: str) -> bool:
    """Whether a statement only reads; anything else (DML, DDL, PRAGMA) counts as a write."""
    return sql.lstrip()[:6].upper() == "SELECT"
