"""SQLite connections that wait for the write lock on a lock file, not in SQLite's busy handler.

SQLite lets one connection write at a time. A connection that finds the lock
taken sleeps in its busy handler, in steps of up to 100 ms, and does not wake
when the lock is released: with the API's and the workers' processes writing
side by side, most of a request's time went to those sleeps (a p99 of 100 ms
for a 2 ms transaction). Here every connection to one database file first
takes an exclusive `flock` on `<database>.writer.lock` before any statement
that may write, and gives it back when its transaction ends, so writers queue
on the lock file and the next one runs within a couple of milliseconds of the
last one's commit. A writer that waits longer than the connection's `timeout`
gets SQLite's own "database is locked" error, as it would have without this.

What counts as a write is anything but a statement starting with `SELECT` or
`PRAGMA`: DML, DDL and `WITH` queries take the lock (briefly, when they open no
transaction). Reads run beside a writer, as WAL mode allows. One
consequence: a connection that waits for the lock while another connection of
the same thread holds it waits for its timeout, so never nest write sessions.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
import weakref
from typing import Any, Self

#: The longest sleep between two tries at a taken lock; a released lock is seen this soon.
MAX_POLL = 0.002


class WriteQueuedConnection(sqlite3.Connection):
    """A `sqlite3.Connection` that holds the database's writer lock for each write transaction.

    Pass it as `factory` to `sqlite3.connect` (SQLAlchemy: `connect_args`).
    Without a lock file it can open (a database in memory, or a directory it
    may not write to) it behaves as a plain connection.
    """

    def __init__(self, database: str | bytes | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._timeout = float(kwargs.get("timeout", args[0] if args else 5.0))
        self._lock_fd = _open_lock_file(os.fsdecode(database))
        if self._lock_fd is not None:
            # Closing the descriptor drops the lock, also for a connection never closed.
            self._finalizer = weakref.finalize(self, os.close, self._lock_fd)
        self._locked = False

    # One signature where typeshed has two overloads.
    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or _WriteQueuedCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        return self.cursor().executescript(script)

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
                self._finalizer()  # closes the descriptor, which drops the lock
                self._lock_fd, self._locked = None, False

    def _lock_for(self, sql: str) -> None:
        """Take the writer lock before a statement that may write.

        :raise sqlite3.OperationalError: "database is locked" after `timeout` seconds.
        """
        if self._locked or self._lock_fd is None or _is_read(sql):
            return
        deadline = time.monotonic() + self._timeout
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: another writer held it for {self._timeout:.0f}s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, MAX_POLL)
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

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        self.connection._lock_for(sql_script)
        try:
            return super().executescript(sql_script)
        finally:
            self.connection._unlock_unless_writing()


def writer_lock_path(database: str) -> str | None:
    """The lock file writers to `database` queue on; None for a database with no file of its own.

    Public for tools that must hold the writers back, as a test does to stop a worker
    between two of its steps.
    """
    path = database.removeprefix("file:").split("?", 1)[0]
    if path in ("", ":memory:") or "mode=memory" in database:
        return None
    return f"{path}.writer.lock"


def _open_lock_file(database: str) -> int | None:
    """The descriptor of `<database>.writer.lock`; None for a database with no file of its own."""
    path = writer_lock_path(database)
    if path is None:
        return None
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # umask applies
    except OSError:
        try:  # a read-only volume: flock works on a descriptor opened for reading too
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None  # nowhere to keep the lock: SQLite's own locking still holds


def _is_read(sql: str) -> bool:
    """Whether a statement needs no writer lock: a `SELECT`, or a `PRAGMA`.

    A new connection's PRAGMAs (WAL, busy timeout, foreign keys) set up the
    connection itself and must not wait behind a writer; the rare PRAGMA that
    writes the file waits in SQLite's own lock, as before. Anything else (DML,
    DDL, `WITH`) counts as a write.
    """
    return sql.lstrip()[:6].upper() in ("SELECT", "PRAGMA")
