"""Statements run on the driver's cursor: the same rows and errors as through SQLAlchemy."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from gimletd.driver_sql import DriverStatement
from gimletd.errors import StoreUnavailable
from gimletd.models import Artifact, AuditEntry
from gimletd.store import ArtifactPush, BranchRow, EventRow, Store
from tests.support.processes import free_port

_ids = itertools.count()

things = Table(
    "things",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String(20)),
    Column("kind", String(20), default="plain"),
    Column("made_by", String(20), default=lambda: "a callable"),
)


def artifact(fixtures_dir: Path, branch: str = "main") -> Artifact:
    data = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    data["version"].update(branch=branch, sha=f"{next(_ids):040x}")
    return Artifact.model_validate(data)


def test_a_statement_runs_on_a_driver_cursor_with_its_literals_filled_in() -> None:
    query = select(things.c.id).where(things.c.name == bindparam("name"), things.c.kind == "x")
    on_sqlite = DriverStatement.compile(query, sqlite.dialect())
    assert on_sqlite.order == ("name", "kind_1") and on_sqlite.fixed == {"kind_1": "x"}
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE things (id INTEGER, name TEXT, kind TEXT, made_by TEXT)")
    connection.executemany(
        "INSERT INTO things VALUES (?, ?, ?, '')", [(1, "a", "x"), (2, "a", "y"), (3, "b", "x")]
    )
    cursor = connection.cursor()
    on_sqlite.execute(cursor, {"name": "a"})
    assert cursor.fetchall() == [(1,)]
    with pytest.raises(KeyError, match="name"):
        on_sqlite.execute(cursor, {})
    with pytest.raises(ValueError, match=r"no parameter for \['made_by'\]"):
        on_sqlite.execute(cursor, {"name": "a", "made_by": "dropped otherwise"})
    on_postgresql = DriverStatement.compile(query, postgresql.psycopg.dialect())
    assert on_postgresql.order is None and "%(name)s" in on_postgresql.sql  # the driver maps names


def test_a_default_computed_at_execution_is_refused_when_compiling() -> None:
    with pytest.raises(ValueError, match="give made_by a value"):
        DriverStatement.compile(insert(things), sqlite.dialect(), ("id", "name"))
    given = DriverStatement.compile(insert(things), sqlite.dialect(), ("id", "name", "made_by"))
    assert given.fixed == {"kind": "plain"}  # a scalar default is filled in by the statement
    assert given.order == ("id", "name", "kind", "made_by")
    on_postgresql = DriverStatement.compile(
        insert(things), postgresql.psycopg.dialect(), ("name", "made_by")
    )
    assert "RETURNING" not in on_postgresql.sql  # the new ids would be sent back unread


def test_pushes_stored_on_the_driver_get_the_columns_defaults(
    any_store: Store, fixtures_dir: Path
) -> None:
    audit = AuditEntry(at=time.time(), login="ci", address="10.0.0.1", action="artifact.push")
    pushes = [
        ArtifactPush(artifact(fixtures_dir, "main"), "ci", poll_url="https://x/r.git", audit=audit),
        ArtifactPush(artifact(fixtures_dir, "feature"), "ci"),
    ]
    stored = any_store.create_artifacts(pushes)
    with any_store.session() as session:
        events = session.scalars(select(EventRow).order_by(EventRow.seq)).all()
        branches = session.scalars(select(BranchRow).order_by(BranchRow.branch)).all()
    assert [e.id for e in events] == [event.id for _, event in stored]
    assert [(e.planned, e.attempts) for e in events] == [(False, 0), (False, 0)]
    assert [(b.branch, b.deleted_at, b.deletion_event_id) for b in branches] == [
        ("feature", None, ""),
        ("main", None, ""),
    ]
    assert [a.login for a in any_store.audit_entries()] == ["ci"]
    assert any_store.artifact(stored[1][0].id) == stored[1][0]


def test_a_token_is_found_on_the_driver_and_an_expired_one_is_not(any_store: Store) -> None:
    _, token = any_store.create_user("deployer", envs=["staging"])
    found = any_store.user_by_token(token)
    assert found is not None and found.login == "deployer" and found.envs == ["staging"]
    assert any_store.user_by_token("not-a-token") is None
    _, expiring = any_store.create_user("temporary", expires_at=int(time.time()) + 60)
    assert any_store.user_by_token(expiring) is not None
    assert any_store.user_by_token(expiring, now=time.time() + 120) is None


def test_an_unreachable_database_is_unavailable_on_the_driver_too(fixtures_dir: Path) -> None:
    store = Store(f"postgresql+psycopg://gimletd@127.0.0.1:{free_port()}/gimletd")
    try:
        with pytest.raises(StoreUnavailable, match="the database is unavailable"):
            store.user_by_token("a-token")
        with pytest.raises(StoreUnavailable, match="the database is unavailable"):
            store.create_artifacts([ArtifactPush(artifact(fixtures_dir), "ci")])
    finally:
        store.close()
