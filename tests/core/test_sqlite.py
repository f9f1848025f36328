"""SQLite writers queue on a lock file (`gimletd.sqlite`), not in SQLite's busy handler."""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gimletd.sqlite import WriteQueuedConnection


def connect(path: Path | str, timeout: float = 30.0) -> WriteQueuedConnection:
    connection = sqlite3.connect(
        path, factory=WriteQueuedConnection, timeout=timeout, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


def can_write(path: Path, within: float = 5.0) -> bool:
    """Whether another connection's write gets through `within` seconds (no lock held)."""
    done = threading.Event()

    def write() -> None:
        other = connect(path)
        other.execute("INSERT INTO t VALUES (0)")
        other.commit()
        other.close()
        done.set()

    threading.Thread(target=write, daemon=True).start()
    return done.wait(within)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "db.sqlite"
    setup = connect(path)
    setup.execute("CREATE TABLE t (x INTEGER)")
    setup.commit()
    setup.close()
    yield path


def test_a_second_writer_waits_for_the_first_to_commit_then_writes(database: Path) -> None:
    first, second = connect(database), connect(database)
    first.execute("INSERT INTO t VALUES (1)")  # a write transaction is open now
    wrote = threading.Event()

    def write() -> None:
        second.execute("INSERT INTO t VALUES (2)")
        second.commit()
        wrote.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not wrote.wait(0.5)
    first.commit()
    writer.join(10)
    assert wrote.is_set()
    assert sorted(row[0] for row in first.execute("SELECT x FROM t")) == [1, 2]
    first.close()
    second.close()


def test_a_writer_waits_no_longer_than_its_timeout(database: Path) -> None:
    first, impatient = connect(database), connect(database, timeout=0.2)
    first.execute("INSERT INTO t VALUES (1)")
    # The writer lock's own timeout, not SQLite's busy handler, gives up here.
    with pytest.raises(sqlite3.OperationalError, match="another writer held it for 0s"):
        impatient.execute("INSERT INTO t VALUES (2)")
    first.commit()
    impatient.execute("INSERT INTO t VALUES (2)")  # the lock is free again
    impatient.commit()
    first.close()
    impatient.close()


def test_a_connection_never_closed_gives_the_lock_back_when_collected(database: Path) -> None:
    forgotten = connect(database)
    forgotten.execute("INSERT INTO t VALUES (1)")
    assert not can_write(database, within=0.3)
    del forgotten
    gc.collect()
    assert can_write(database)


def test_a_new_connection_sets_itself_up_beside_a_writer(database: Path) -> None:
    writer = connect(database)
    writer.execute("INSERT INTO t VALUES (1)")
    newcomer = connect(database, timeout=0.2)  # its PRAGMAs do not wait for the writer lock
    assert newcomer.execute("PRAGMA foreign_keys").fetchone() == (0,)
    writer.rollback()
    writer.close()
    newcomer.close()


def test_readers_do_not_wait_for_a_writer(database: Path) -> None:
    writer, reader = connect(database), connect(database)
    writer.execute("INSERT INTO t VALUES (1)")
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)  # WAL: the last commit
    writer.rollback()
    writer.close()
    reader.close()


@pytest.mark.parametrize(
    "ends_the_transaction",
    [
        lambda c: c.commit(),
        lambda c: c.rollback(),
        lambda c: c.close(),
    ],
    ids=["commit", "rollback", "close"],
)
def test_the_lock_is_given_back_when_the_transaction_ends(
    database: Path, ends_the_transaction: object
) -> None:
    first = connect(database)
    first.execute("INSERT INTO t VALUES (1)")
    assert not can_write(database, within=0.3)
    ends_the_transaction(first)  # type: ignore[operator]
    assert can_write(database)
    first.close()


def test_a_failed_statement_outside_a_transaction_keeps_no_lock(database: Path) -> None:
    first = connect(database)
    with pytest.raises(sqlite3.OperationalError):
        first.execute("CREATE TABLE t (x INTEGER)")  # exists: fails, no transaction opened
    first.execute("CREATE INDEX i ON t (x)")  # DDL runs in autocommit: the lock goes at once
    assert can_write(database)
    first.close()


def test_an_in_memory_database_needs_no_lock_file(tmp_path: Path) -> None:
    connection = sqlite3.connect(":memory:", factory=WriteQueuedConnection)
    connection.execute("CREATE TABLE t (x INTEGER)")
    connection.execute("INSERT INTO t VALUES (1)")
    connection.commit()
    assert connection.execute("SELECT x FROM t").fetchall() == [(1,)]
    connection.close()
