"""The store: artifacts, events, GitOps writes and users in SQLite or PostgreSQL.

This is the only module that uses SQLAlchemy, with `gimletd.driver_sql`, which
runs the statements of the API's hottest path on the driver's cursor. It
translates SQLAlchemy's errors once: a lost connection becomes
`StoreUnavailable` (the API answers 503, workers retry) and a uniqueness
violation becomes `Conflict`.

Three tables carry the release flow:

- `artifacts`: what CI pushed, with the version fields denormalised for filters.
- `events`: accepted work (an artifact to match against policies, later ad-hoc
  releases, rollbacks, deletes). `seq` is the acceptance order (I3).
- `gitops_writes`: one row per (event, env, app) the event touches, holding the
  rendered files until the GitOps writer commits them. The unique key on
  (event, env, app) is what makes a redelivered task unable to plan twice (I2).

Preview cleanup adds `app_repos` (repositories whose branches are polled) and
`branches` (which branches artifacts came from, and whether each still exists),
so a deletion reported by a webhook, a poll and the API is acted on once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Dialect, Engine, Row
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from gimletd.driver_sql import DriverStatement, driver_cursor
from gimletd.errors import Conflict, InputError, NotFound, StoreUnavailable
from gimletd.gitops.layout import public_repo_url
from gimletd.models import (
    FLUX_APPLIED,
    FLUX_PROGRESSING,
    POLICY_TRIGGER,
    Artifact,
    AuditEntry,
    CleanupEvent,
    DeliveryStatus,
    EnvLock,
    Event,
    EventStatus,
    EventType,
    GitEvent,
    GitopsHash,
    HistoryEntry,
    Hold,
    NotificationStatus,
    Release,
    Result,
    ResultStatus,
    Role,
    UserInfo,
    Version,
    WriteKind,
)
from gimletd.notifications.notice import Notice
from gimletd.sqlite import WriteQueuedConnection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MAX_LIST_LIMIT = 1000
#: Statuses of a GitOps write that still has to be applied.
UNFINISHED = (ResultStatus.PENDING.value, ResultStatus.APPLYING.value)
DEFAULT_LIST_LIMIT = 10
#: Event types whose writes are the deletes of a cleanup policy.
CLEANUP_EVENT_TYPES = frozenset(kind.value for kind in CleanupEvent)
#: Rows read at once where a query may return many.
PAGE_SIZE = 500
ADMIN_LOGIN = "admin"


class Base(DeclarativeBase):
    pass


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(512), primary_key=True)
    created: Mapped[int] = mapped_column(BigInteger, index=True)
    accepted_at: Mapped[float] = mapped_column(Float, index=True)
    repository: Mapped[str] = mapped_column(String(512), default="", index=True)
    branch: Mapped[str] = mapped_column(String(512), default="", index=True)
    event: Mapped[str] = mapped_column(String(16), default="")
    source_branch: Mapped[str] = mapped_column(String(512), default="")
    target_branch: Mapped[str] = mapped_column(String(512), default="")
    tag: Mapped[str] = mapped_column(String(512), default="")
    sha: Mapped[str] = mapped_column(String(128), default="", index=True)
    blob: Mapped[str] = mapped_column(Text)


class EventRow(Base):
    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    blob: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_desc: Mapped[str] = mapped_column(Text, default="")
    repository: Mapped[str] = mapped_column(String(512), default="")
    branch: Mapped[str] = mapped_column(String(512), default="")
    event: Mapped[str] = mapped_column(String(16), default="")
    source_branch: Mapped[str] = mapped_column(String(512), default="")
    target_branch: Mapped[str] = mapped_column(String(512), default="")
    tag: Mapped[str] = mapped_column(String(512), default="")
    sha: Mapped[str] = mapped_column(String(128), default="")
    artifact_id: Mapped[str] = mapped_column(String(512), default="", index=True)
    triggered_by: Mapped[str] = mapped_column(String(256), default="")
    planned: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    touched_at: Mapped[float] = mapped_column(Float)
    #: Set for events that must be accepted once only: a GitHub delivery, an expiry.
    dedupe_key: Mapped[str | None] = mapped_column(String(512), unique=True, default=None)


class GitopsWriteRow(Base):
    __tablename__ = "gitops_writes"
    __table_args__ = (
        UniqueConstraint("event_id", "env", "app", name="uq_gitops_writes_event_env_app"),
        Index("ix_gitops_writes_queue", "gitops_repo", "env", "status"),
        Index("ix_gitops_writes_app", "gitops_repo", "env", "app", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq"))
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    gitops_repo: Mapped[str] = mapped_column(String(1024))
    env: Mapped[str] = mapped_column(String(256))
    app: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))
    status_desc: Mapped[str] = mapped_column(Text, default="")
    files: Mapped[str] = mapped_column(Text, default="{}")
    release: Mapped[str] = mapped_column(Text, default="{}")
    commit_sha: Mapped[str] = mapped_column(String(64), default="")
    base_sha: Mapped[str] = mapped_column(String(64), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16), default=WriteKind.RELEASE.value)
    target_sha: Mapped[str] = mapped_column(String(64), default="")
    forced: Mapped[bool] = mapped_column(Boolean, default=False)


class ReleaseRow(Base):
    """The release index: one row per GitOps commit that changed an `<env>/<app>/`.

    `position` is the commit's first-parent distance from the root, so history is
    ordered as git has it even when several commits share a second.
    """

    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("gitops_repo", "commit_sha", "env", "app", name="uq_releases_commit_app"),
        Index("ix_releases_app", "gitops_repo", "env", "app", "position"),
        Index("ix_releases_env", "gitops_repo", "env", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gitops_repo: Mapped[str] = mapped_column(String(1024))
    env: Mapped[str] = mapped_column(String(256))
    app: Mapped[str] = mapped_column(String(256))
    commit_sha: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    artifact_id: Mapped[str] = mapped_column(String(512), default="")
    repository: Mapped[str] = mapped_column(String(512), default="")
    triggered_by: Mapped[str] = mapped_column(String(256), default="")
    event_id: Mapped[str] = mapped_column(String(64), default="")
    created: Mapped[int] = mapped_column(BigInteger)
    rolled_back: Mapped[bool] = mapped_column(Boolean, default=False)
    release: Mapped[str] = mapped_column(Text, default="{}")


class IndexHeadRow(Base):
    """How far the release index of a GitOps repository has read its branch."""

    __tablename__ = "release_index_heads"

    gitops_repo: Mapped[str] = mapped_column(String(1024), primary_key=True)
    commit_sha: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(BigInteger)
    updated: Mapped[float] = mapped_column(Float)


class CommitStatusRow(Base):
    """What Flux last reported about applying a GitOps commit in one environment.

    Per environment: when environments share a repository, each one's
    Kustomization reports on the same branch head. `reported_at` is Flux's time
    of the report, so a late duplicate never overwrites a newer status.
    `implied_by` names the commit Flux reported when this one only took its
    result (Flux skipped it); such a failure gives way to a later report, and
    to a final report on this commit itself however late it arrives.
    """

    __tablename__ = "gitops_commit_statuses"

    gitops_repo: Mapped[str] = mapped_column(String(1024), primary_key=True)
    env: Mapped[str] = mapped_column(String(256), primary_key=True)
    sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(64))
    status_desc: Mapped[str] = mapped_column(Text, default="")
    updated: Mapped[float] = mapped_column(Float)
    reported_at: Mapped[float] = mapped_column(Float, default=0.0)
    implied_by: Mapped[str] = mapped_column(String(64), default="")


class NotificationRow(Base):
    """A notice to send, stored with the outcome it announces (the outbox of I6)."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    env: Mapped[str] = mapped_column(String(256))
    app: Mapped[str] = mapped_column(String(256))
    created: Mapped[float] = mapped_column(Float)
    notice: Mapped[str] = mapped_column(Text)


class DeliveryRow(Base):
    """The sending of one notice to one target: pending until sent or given up on.

    `leased_until` is set while a worker sends it, so a retried task and one the
    sweep queued never send it at the same time; `not_before` holds it back
    until its retry delay is over.
    """

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "target", name="uq_deliveries_target"),
        Index("ix_deliveries_status", "status", "updated"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"))
    target: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    status_desc: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[float] = mapped_column(Float, default=0.0)
    leased_until: Mapped[float] = mapped_column(Float, default=0.0)
    updated: Mapped[float] = mapped_column(Float)


class HoldRow(Base):
    __tablename__ = "holds"
    __table_args__ = (UniqueConstraint("gitops_repo", "env", "app", name="uq_holds_app"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gitops_repo: Mapped[str] = mapped_column(String(1024))
    env: Mapped[str] = mapped_column(String(256))
    app: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(256))
    event_id: Mapped[str] = mapped_column(String(64), default="")
    commit_sha: Mapped[str] = mapped_column(String(64), default="")
    created: Mapped[int] = mapped_column(BigInteger)


class EnvLockRow(Base):
    __tablename__ = "env_locks"
    __table_args__ = (UniqueConstraint("gitops_repo", "env", name="uq_env_locks_env"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gitops_repo: Mapped[str] = mapped_column(String(1024))
    env: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    locked_by: Mapped[str] = mapped_column(String(256))
    created: Mapped[int] = mapped_column(BigInteger)


class AppRepoRow(Base):
    """An application repository whose branches are polled: it sent a cleanup policy."""

    __tablename__ = "app_repos"

    repository: Mapped[str] = mapped_column(String(512), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), default="")
    created: Mapped[float] = mapped_column(Float)
    polled_at: Mapped[float | None] = mapped_column(Float, default=None)
    poll_error: Mapped[str] = mapped_column(Text, default="")


class BranchRow(Base):
    """A branch that artifacts were built from, and whether it still exists.

    `seen_at` is when the branch was last known to be in the repository itself:
    the newest artifact of a push to it, else the first poll that listed it. A
    branch only a pull request names may live in a fork, so it stays unseen
    until a poll lists it, and a poll never reports an unseen branch as deleted.
    `deleted_at` is set by the first report of its deletion, webhook, API or
    poll; later reports of the same deletion find it set and create nothing, and
    only a new artifact of the branch clears it.
    """

    __tablename__ = "branches"

    repository: Mapped[str] = mapped_column(String(512), primary_key=True)
    branch: Mapped[str] = mapped_column(String(512), primary_key=True)
    seen_at: Mapped[float | None] = mapped_column(Float, default=None)
    deleted_at: Mapped[float | None] = mapped_column(Float, default=None)
    deletion_event_id: Mapped[str] = mapped_column(String(64), default="")


class UserRow(Base):
    """A user: its role, the environments it may write to, and its token's hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(256), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    #: A JSON list of environments; "" for every environment.
    envs: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[int] = mapped_column(BigInteger)
    token_issued: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, default=None)


class AuditRow(Base):
    """The audit trail: every write made through the API, in the transaction of the write."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_login", "login", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    login: Mapped[str] = mapped_column(String(256))
    address: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(String(1024), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")
    event_id: Mapped[str] = mapped_column(String(64), default="")


@dataclass(frozen=True)
class PlannedWrite:
    """A write an event decided on: for a release, the rendered files of one env/app.

    A rollback names the commit to restore (`target_sha`) and a delete needs
    neither: their files are read from the GitOps repository when applied.
    `forced` writes go through an environment lock (an admin's decision).
    """

    gitops_repo: str
    env: str
    app: str
    files: dict[str, bytes]
    release: Release
    kind: WriteKind = WriteKind.RELEASE
    target_sha: str = ""
    forced: bool = False


@dataclass(frozen=True)
class FailedEnvironment:
    """An environment of an event that could not be planned, and why."""

    gitops_repo: str
    env: str
    app: str
    reason: str


@dataclass(frozen=True)
class EventPlan:
    """What one event will write, and which of its environments failed before writing."""

    event_id: str
    writes: Sequence[PlannedWrite]
    failures: Sequence[FailedEnvironment]
    #: The notices of the failures, with their targets; stored with the plan.
    notices: Notices = ()


@dataclass(frozen=True)
class GitopsWrite:
    """A GitOps write as the writer sees it."""

    id: int
    event_id: str
    event_seq: int
    gitops_repo: str
    env: str
    app: str
    status: ResultStatus
    files: dict[str, bytes]
    release: Release
    base_sha: str
    commit_sha: str
    attempts: int
    not_before: float
    kind: WriteKind
    target_sha: str
    forced: bool
    #: Why its last attempt failed, as `defer_write` noted it ("" when none did).
    problem: str = ""

    @property
    def by_policy(self) -> bool:
        """A policy deploy: the kind of write holds keep back and newer ones supersede."""
        return self.kind is WriteKind.RELEASE and self.release.triggered_by == POLICY_TRIGGER

    @property
    def started(self) -> bool:
        """A worker began applying it, so it may have been pushed: look for its commit first.

        Applying now (its worker died or lost the lock), or deferred after a start that
        recorded a base (`release.EMPTY_BRANCH` on a branch with no commit yet).
        """
        return self.status is ResultStatus.APPLYING or bool(self.base_sha)


@dataclass(frozen=True)
class WriteReport:
    """The outcome of one write, with the hold it places or lifts, as a drain reports it."""

    write_id: int
    env: str
    app: str
    status: ResultStatus
    commit: str = ""
    desc: str = ""
    hold: Hold | None = None
    lift_hold: bool = False
    #: For the notice: the version a rollback restored or a delete removed, what it reverted.
    version: Version | None = None
    reverted: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndexEntry:
    """One row of the release index, as the indexer reads it from a commit."""

    env: str
    app: str
    commit: str
    position: int
    kind: WriteKind
    release: Release
    created: int
    reverts: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndexHead:
    commit: str
    position: int


@dataclass(frozen=True)
class PushedCommits:
    """Commits a drain pushed onto `base`, with their release index entries.

    `finish_writes` indexes them in the transaction that records the writes,
    when the index stands at `base`, so they need not be read back from git.
    `count` first-parent commits were pushed, the last is `head`; the
    entries' positions count from 1, the first commit after `base` (the
    store adds the index head's position).
    """

    gitops_repo: str
    base: str
    head: str
    count: int
    entries: Sequence[IndexEntry]


@dataclass(frozen=True)
class HistoryFilter:
    """The query of `GET /api/releases`, with the Go original's parameters."""

    gitops_repo: str
    env: str
    app: str | None = None
    kinds: Sequence[WriteKind] = (WriteKind.RELEASE,)
    source_repository: str | None = None
    limit: int = DEFAULT_LIST_LIMIT
    offset: int = 0
    since: datetime | None = None
    until: datetime | None = None
    reverse: bool = False


@dataclass(frozen=True)
class EventClaim:
    """What a worker needs to process an event, taken with its attempt counted."""

    id: str
    seq: int
    type: EventType
    artifact_id: str
    triggered_by: str
    blob: str
    attempts: int
    planned: bool
    artifact: Artifact | None


@dataclass(frozen=True)
class ArtifactFilter:
    """The query of `GET /api/artifacts`, with the Go original's parameters."""

    repository: str | None = None
    branch: str | None = None
    event: str | None = None
    source_branch: str | None = None
    shas: Sequence[str] = ()
    limit: int = DEFAULT_LIST_LIMIT
    offset: int = 0
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AppRepo:
    """An application repository polled for deleted branches, and how its last poll went."""

    repository: str
    url: str
    polled_at: float | None
    poll_error: str


@dataclass(frozen=True)
class CleanupRecord:
    """A reported branch deletion or pull request close: the event, and whether it is new."""

    event: Event
    created: bool


@dataclass(frozen=True)
class Delivery:
    """A notice on its way to a target, as the sending task sees it."""

    notice: Notice
    target: str
    attempts: int


@dataclass(frozen=True)
class FluxStatus:
    """What Flux said of a GitOps commit in one environment."""

    status: str
    desc: str
    implied_by: str = ""

    @property
    def final(self) -> bool:
        return self.status != FLUX_PROGRESSING


@dataclass(frozen=True)
class FluxChange:
    """A GitOps commit whose Flux status a report changed, and the release it made there.

    `release` is None for a commit that is not in the release index (it changed
    no app, or the index has not read it).
    """

    commit: str
    status: str
    final: bool
    release: Release | None
    kind: WriteKind | None
    created: int


#: Notices to store, each with the targets that will get it.
Notices = Sequence[tuple[Notice, Sequence[str]]]

#: How early a retried delivery task may run before its `not_before` (clock and timer slack).
DELIVERY_EARLY = 1.0

#: A GitOps commit in an environment: (gitops repo, env, sha).
StatusKey = tuple[str, str, str]


@dataclass(frozen=True)
class ArtifactPush:
    """An artifact CI pushed, with what its event and audit entry record about the push."""

    artifact: Artifact
    triggered_by: str
    #: Register the artifact's repository for branch polling at this URL (see `create_artifacts`).
    poll_url: str | None = None
    audit: AuditEntry | None = None
    #: The client's Idempotency-Key, hashed (see `event_with_key`).
    dedupe_key: str | None = None


@dataclass(frozen=True)
class MetricsSnapshot:
    """Counts for the metrics endpoint, read in one pass over the database."""

    artifacts: int
    events: dict[tuple[str, str], int]
    #: (GitOps repository, env) → (writes not yet applied, age in seconds of the oldest
    #: one), for every environment that ever had a write: (0, 0.0) once its queue is empty.
    #: The repository as `public_repo_url` shows it.
    queues: dict[tuple[str, str], tuple[int, float]]
    deliveries: dict[tuple[str, str], int]


#: What the API shows of a user (and what a request runs as).
User = UserInfo


def hash_token(token: str) -> str:
    """Tokens are random and long, so one unsalted SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _now() -> float:
    return time.time()


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn SQLAlchemy's exceptions into GimletD's, once, at the boundary."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"conflicts with stored data: {exc.orig}") from exc
    except DataError as exc:
        raise InputError(f"a value does not fit the database: {exc.orig}") from exc
    except (OperationalError, InterfaceError) as exc:
        raise StoreUnavailable(f"the database is unavailable: {exc.orig}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(f"the database connection was lost: {exc.orig}") from exc
        raise


class Store:
    """All persistent state of GimletD behind one object; open one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = _make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on any error."""
        with _translated_errors(), self._sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for the reads on hot paths: Core statements, no ORM session to set up.

        An ORM session costs 0.2-0.35 ms a read on SQLite, a connection 0.03 ms; every
        request and every GitOps write makes several of these.
        """
        with _translated_errors(), self.engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A transaction on a Core connection, for the writes on hot paths: no ORM session."""
        with _translated_errors(), self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def _driver(self) -> Iterator[DBAPICursor]:
        """A driver cursor for `_hot_statements`; its transaction commits when the block ends."""
        with _translated_errors(), driver_cursor(self.engine) as cursor:
            yield cursor

    @functools.cached_property
    def _hot_statements(self) -> _HotStatements:
        return _HotStatements.compile(self.engine.dialect)

    # -- schema -------------------------------------------------------------

    def migrate(self) -> None:
        """Apply Alembic migrations up to head; safe when several processes start at once."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with _translated_errors(), self._migration_lock(), self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(7274911)"))
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(7274911)"))
                    connection.commit()
            return
        database = self.engine.url.database
        lock_path = Path(f"{database}.migrate.lock") if database else None
        if lock_path is None:
            yield
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        with self.session() as session:
            session.execute(text("SELECT 1"))

    # -- artifacts and their events ------------------------------------------

    def create_artifact(
        self,
        artifact: Artifact,
        *,
        triggered_by: str,
        poll_url: str | None = None,
        audit: AuditEntry | None = None,
        dedupe_key: str | None = None,
    ) -> tuple[Artifact, Event]:
        """Store one artifact and its event; see `create_artifacts`."""
        push = ArtifactPush(artifact, triggered_by, poll_url, audit, dedupe_key)
        return self.create_artifacts([push])[0]

    def create_artifacts(self, pushes: Sequence[ArtifactPush]) -> list[tuple[Artifact, Event]]:
        """Store artifacts and the events that will release them, in one transaction (I1).

        All or nothing: the API stores the artifacts that arrive together at
        once (group commit), so their rows share one commit and one fsync. The
        events are numbered in the order of `pushes` (I3). Each artifact's branch
        is noted as existing (see `BranchRow`); a push with a `poll_url`
        registers its repository for branch polling at that URL ("" when none
        could be derived: the poll then reports that it needs one).

        :raise Conflict: when an event with one of the `dedupe_key`s exists
            already (see `event_with_key`); nothing is stored then.
        """
        if not pushes:
            return []
        created = int(_now())
        stored_artifacts: list[Artifact] = []
        artifact_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        for push in pushes:
            repository = push.artifact.version.repository_name
            stored = push.artifact.model_copy(
                update={"id": f"{repository}-{uuid.uuid4()}", "created": created}
            )
            version = stored.version
            columns = {
                "repository": repository,
                "branch": version.branch,
                "event": version.event.value if version.event else "",
                "source_branch": version.source_branch,
                "target_branch": version.target_branch,
                "tag": version.tag,
                "sha": version.sha,
            }
            stored_artifacts.append(stored)
            artifact_rows.append(
                {"id": stored.id, "created": created, "accepted_at": _now(),
                 "blob": stored.to_json_text(), **columns}
            )  # fmt: skip
            event_rows.append(
                {"id": str(uuid.uuid4()), "created": created, "type": EventType.ARTIFACT.value,
                 "blob": "", "status": EventStatus.NEW.value, "status_desc": "",
                 "artifact_id": stored.id, "triggered_by": push.triggered_by,
                 "touched_at": _now(), "dedupe_key": push.dedupe_key, **columns}
            )  # fmt: skip
        audit_rows = [
            _audit_values(push.audit, event["id"], target=stored.id)
            for push, stored, event in zip(pushes, stored_artifacts, event_rows, strict=True)
            if push.audit is not None
        ]
        polled: dict[str, str] = {}
        for push in pushes:  # the first URL found for a repository wins, as it does later
            repository = push.artifact.version.repository_name
            if push.poll_url is not None and not polled.get(repository):
                polled[repository] = push.poll_url
        # A new event has no writes, statuses or notifications yet: no need to read it back.
        # Built before the commit, so that nothing can fail once the rows are stored.
        created_pairs = [
            (stored, _new_event(event))
            for stored, event in zip(stored_artifacts, event_rows, strict=True)
        ]
        branches = _branch_rows([a.version for a in stored_artifacts])
        repos = [
            {"repository": repository, "url": url, "created": _now(), "poll_error": ""}
            for repository, url in sorted(polled.items())  # rows locked in one order: no deadlock
        ]
        # This is the API's hot path: statements compiled once, on the driver's cursor.
        hot = self._hot_statements
        with self._driver() as cursor:
            for statement, rows in (
                (hot.artifact, artifact_rows),
                (hot.event, event_rows),
                (hot.branch, branches),
                (hot.audit, audit_rows),
                (hot.app_repo, repos),
            ):
                if rows:
                    statement.executemany(cursor, rows)
        return created_pairs

    def create_event(
        self,
        event_type: EventType,
        *,
        request: dict[str, Any],
        triggered_by: str,
        artifact_id: str = "",
        dedupe_key: str | None = None,
        audit: AuditEntry | None = None,
        plan: Callable[[str], Sequence[PlannedWrite]] | None = None,
    ) -> Event:
        """Store a release, rollback or delete asked for through the API or by a policy (I1).

        `request` (env, app, sha, force) is kept as the event's blob for the worker.
        An event that releases an artifact carries the artifact's version fields, so
        it shows up when the artifact is tracked. `plan`, given the new event's id,
        returns its writes, which are queued in the same transaction: a rollback or
        delete is then in its environment's queue from the moment it is accepted,
        ahead of any deploy accepted after it (I3).

        :raise NotFound: when `artifact_id` is given and no artifact has it.
        :raise Conflict: when an event with `dedupe_key` exists already.
        """
        now = _now()
        with self.session() as session:
            columns: dict[str, str] = {}
            if artifact_id:
                artifact = session.get(ArtifactRow, artifact_id)
                if artifact is None:
                    raise NotFound(f"artifact {artifact_id!r} does not exist")
                columns = {
                    "repository": artifact.repository,
                    "branch": artifact.branch,
                    "event": artifact.event,
                    "source_branch": artifact.source_branch,
                    "target_branch": artifact.target_branch,
                    "tag": artifact.tag,
                    "sha": artifact.sha,
                }
            row = EventRow(
                id=str(uuid.uuid4()),
                created=int(now),
                type=event_type.value,
                blob=json.dumps(request),
                status=EventStatus.NEW.value,
                status_desc="",
                artifact_id=artifact_id,
                triggered_by=triggered_by,
                touched_at=now,
                dedupe_key=dedupe_key,
                **columns,
            )
            session.add(row)
            if plan is not None:
                session.flush()  # its acceptance number, which orders its writes
                writes = [_planned_write_values(row, write, now) for write in plan(row.id)]
                if writes:
                    session.connection().execute(_INSERT_WRITE, writes)
                    row.planned = True
            _audit(session, audit, row.id)
        return self.event(row.id)

    def artifact_accepted_at(self, artifact_id: str) -> float | None:
        """When the artifact was accepted (its place in CI's order), None when unknown."""
        with self._reading() as connection:
            return connection.scalar(
                select(ArtifactRow.accepted_at).where(ArtifactRow.id == artifact_id)
            )

    def artifact(self, artifact_id: str) -> Artifact:
        """:raise NotFound: when no artifact has that id."""
        with self.session() as session:
            row = session.get(ArtifactRow, artifact_id)
            if row is None:
                raise NotFound(f"artifact {artifact_id!r} does not exist")
            return Artifact.model_validate_json(row.blob)

    def artifacts(self, query: ArtifactFilter) -> list[Artifact]:
        """Artifacts newest first, filtered as `GET /api/artifacts` asks."""
        statement = select(ArtifactRow.blob)
        if query.repository:
            statement = statement.where(ArtifactRow.repository == query.repository)
        if query.branch:
            statement = statement.where(ArtifactRow.branch == query.branch)
        if query.event:
            statement = statement.where(ArtifactRow.event == query.event)
        if query.source_branch:
            statement = statement.where(ArtifactRow.source_branch == query.source_branch)
        if query.shas:
            statement = statement.where(ArtifactRow.sha.in_(list(query.shas)))
        if query.since is not None:
            statement = statement.where(ArtifactRow.created >= int(query.since.timestamp()))
        if query.until is not None:
            statement = statement.where(ArtifactRow.created < int(query.until.timestamp()))
        statement = (
            statement.order_by(ArtifactRow.accepted_at.desc())
            .limit(min(query.limit, MAX_LIST_LIMIT))
            .offset(query.offset)
        )
        with self.session() as session:
            return [Artifact.model_validate_json(blob) for blob in session.scalars(statement)]

    # -- events --------------------------------------------------------------

    def event(self, event_id: str) -> Event:
        """The event with its per-environment results; :raise NotFound:."""
        with self.session() as session:
            return self._event(session, event_id)

    def event_for_artifact(self, artifact_id: str) -> Event:
        """The newest event that releases `artifact_id`; :raise NotFound:."""
        with self.session() as session:
            event_id = session.scalar(
                select(EventRow.id)
                .where(EventRow.artifact_id == artifact_id)
                .order_by(EventRow.seq.desc())
                .limit(1)
            )
        if event_id is None:
            raise NotFound(f"no event for artifact {artifact_id!r}")
        return self.event(event_id)

    def event_with_key(self, dedupe_key: str) -> Event | None:
        """The event stored with `dedupe_key`, None when there is none."""
        with self.session() as session:
            event_id = session.scalar(select(EventRow.id).where(EventRow.dedupe_key == dedupe_key))
            return None if event_id is None else self._event(session, event_id)

    def claim_event(self, event_id: str) -> EventClaim | None:
        """Count one more attempt at an unfinished event; None when it is already terminal.

        The claim carries the event's artifact when it still has to be planned.
        :raise NotFound: there is no such event.
        """
        return self.claim_events([event_id])[event_id]

    def claim_events(self, event_ids: Sequence[str]) -> dict[str, EventClaim | None]:
        """`claim_event` for a batch of events, in one transaction; rows locked in id order."""
        ids = list(dict.fromkeys(event_ids))
        with self._writing() as connection:
            # Locked in id order before the update, which would lock them in the table's.
            connection.execute(_LOCK_EVENTS, {"ids": ids}).all()
            connection.execute(_COUNT_EVENT_ATTEMPTS, {"ids": ids, "now": _now()})
            rows = {row.id: row for row in connection.execute(_CLAIMED_EVENTS, {"ids": ids})}
            missing = [event_id for event_id in ids if event_id not in rows]
            if missing:
                raise NotFound(f"events {missing} do not exist")
            unplanned = {
                row.artifact_id
                for row in rows.values()
                if row.status == EventStatus.NEW.value and row.artifact_id and not row.planned
            }
            blobs: dict[str, str] = {}
            if unplanned:
                found = connection.execute(_ARTIFACT_BLOBS, {"ids": sorted(unplanned)})
                blobs = {row.id: row.blob for row in found}
            return {event_id: _claim(rows[event_id], blobs) for event_id in ids}

    def plan_event(
        self,
        event_id: str,
        *,
        writes: Sequence[PlannedWrite],
        failures: Sequence[FailedEnvironment],
        notices: Notices = (),
    ) -> list[tuple[str, str]]:
        """Record what an event will write; returns the (gitops repo, env) queues to drain.

        `notices` (of the failures) are stored with the plan. Idempotent: a second
        call for a planned event changes nothing (I2).
        """
        return self.plan_events([EventPlan(event_id, writes, failures, notices)])

    def plan_events(self, plans: Sequence[EventPlan]) -> list[tuple[str, str]]:
        """`plan_event` for a batch of events, in one transaction: all are recorded, or none.

        The event rows are locked in id order, so two deliveries of overlapping
        batches on PostgreSQL wait for each other instead of deadlocking. An
        event that plans no write (every environment failed, or none matched)
        ends in the same transaction (I5).
        """
        now = _now()
        queues: set[tuple[str, str]] = set()
        by_id: dict[str, EventPlan] = {}
        for plan in plans:
            by_id.setdefault(plan.event_id, plan)  # a repeated event: its first plan
        with self._writing() as connection:
            rows = {
                row.id: row
                for row in connection.execute(_LOCK_PLANNED_EVENTS, {"ids": sorted(by_id)})
            }
            missing = sorted(by_id.keys() - rows.keys())
            if missing:
                raise NotFound(f"event {missing[0]!r} does not exist")
            writes: list[dict[str, Any]] = []
            for event_id in sorted(by_id):
                row, plan = rows[event_id], by_id[event_id]
                if row.planned or row.status != EventStatus.NEW.value:
                    continue
                for write in plan.writes:
                    writes.append(_planned_write_values(row, write, now))
                    queues.add((write.gitops_repo, write.env))
                writes.extend(_failed_write_values(row, failure, now) for failure in plan.failures)
                if plan.writes:
                    connection.execute(_MARK_PLANNED, {"event_id": event_id, "now": now})
                else:
                    status, desc = _planned_outcome(row, plan.failures)
                    connection.execute(
                        _MARK_PLANNED_AND_ENDED,
                        {"event_id": event_id, "now": now, "new_status": status, "desc": desc},
                    )
                _add_notices(connection, plan.notices)
            if writes:
                connection.execute(_INSERT_WRITE, writes)
        return sorted(queues)

    def queues_of_event(self, event_id: str) -> list[tuple[str, str]]:
        """The (gitops repo, env) queues still holding unfinished writes of an event."""
        with self.session() as session:
            rows = session.execute(
                select(GitopsWriteRow.gitops_repo, GitopsWriteRow.env)
                .where(GitopsWriteRow.event_id == event_id, GitopsWriteRow.status.in_(UNFINISHED))
                .distinct()
            ).all()
            return sorted((repo, env) for repo, env in rows)

    def fail_event(self, event_id: str, reason: str) -> None:
        """End an event in `error` that could not be planned; a planned one ends by its writes."""
        with self.session() as session:
            session.execute(
                update(EventRow)
                .where(
                    EventRow.id == event_id,
                    EventRow.status == EventStatus.NEW.value,
                    EventRow.planned.is_(False),
                )
                .values(status=EventStatus.ERROR.value, status_desc=reason, touched_at=_now())
            )

    def finish_event(self, event_id: str, desc: str) -> None:
        """End an event that plans no writes (a Flux report) as processed, with `desc`."""
        with self.session() as session:
            session.execute(
                update(EventRow)
                .where(EventRow.id == event_id, EventRow.status == EventStatus.NEW.value)
                .values(status=EventStatus.PROCESSED.value, status_desc=desc, touched_at=_now())
            )

    def note_event_problem(self, event_id: str, problem: str) -> None:
        """Record why an attempt at an unplanned event failed, for the message if we give up."""
        with self.session() as session:
            session.execute(
                update(EventRow)
                .where(EventRow.id == event_id, EventRow.status == EventStatus.NEW.value)
                .values(status_desc=problem)
            )

    def settle_events(self) -> int:
        """End planned events whose writes all have an outcome; returns how many (I5).

        Normally an event ends in the transaction of its last write; this catches
        one whose worker died between two transactions of an older version, or
        any path that left it behind.
        """
        unfinished_writes = select(_W.id).where(_W.event_id == _E.id, _W.status.in_(UNFINISHED))
        with self._writing() as connection:
            rows = connection.execute(
                select(*_ENDING_EVENT_COLUMNS)
                .where(
                    _E.status == EventStatus.NEW.value,
                    _E.planned.is_(True),
                    ~unfinished_writes.exists(),
                )
                .order_by(_E.id)  # the order every path takes event rows in
            ).all()
            return sum(_end_event_if_done(connection, row) for row in rows)

    def stale_events(self, *, older_than: float) -> list[str]:
        """Events accepted but not yet planned and untouched since `older_than` (I1, I5).

        Marks them touched, so under a backlog each is handed out again at most
        once per staleness period instead of piling duplicates onto the queue.
        """
        now = _now()
        with self.session() as session:
            ids = list(
                session.scalars(
                    select(EventRow.id)
                    .where(
                        EventRow.status == EventStatus.NEW.value,
                        EventRow.planned.is_(False),
                        EventRow.touched_at < older_than,
                    )
                    .order_by(EventRow.seq)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                session.execute(update(EventRow).where(EventRow.id.in_(ids)).values(touched_at=now))
            return ids

    def stale_queues(self, *, older_than: float) -> list[tuple[str, str]]:
        """(gitops repo, env) queues with a write not finished since `older_than`.

        Their writes are marked touched, for the same reason as in `stale_events`.
        Rows a drain holds locked (PostgreSQL) are skipped, as `stale_events` does:
        a drain that is recording them is not stale, and waiting for its locks in
        the table's order could deadlock with it.
        """
        with self.session() as session:
            rows = session.execute(
                select(GitopsWriteRow.id, GitopsWriteRow.gitops_repo, GitopsWriteRow.env)
                .where(
                    GitopsWriteRow.status.in_(UNFINISHED),
                    GitopsWriteRow.updated < older_than,
                    GitopsWriteRow.not_before <= _now(),
                )
                .order_by(GitopsWriteRow.id)
                .with_for_update(skip_locked=True)
            ).all()
            if rows:
                session.execute(
                    update(GitopsWriteRow)
                    .where(GitopsWriteRow.id.in_([row.id for row in rows]))
                    .values(updated=_now())
                )
            return sorted({(row.gitops_repo, row.env) for row in rows})

    # -- the GitOps write queue ----------------------------------------------

    def unfinished_writes(self, gitops_repo: str, env: str) -> list[GitopsWrite]:
        """The writes waiting for one environment, in acceptance order (I3)."""
        with self._reading() as connection:
            rows = connection.execute(_UNFINISHED_WRITES, {"repo": gitops_repo, "env": env}).all()
            return [_write_from_row(row) for row in rows]

    def has_unplanned_releases(self, repository: str, branch: str) -> bool:
        """Whether an artifact or release event of `branch` is not planned yet.

        Of an artifact pushed to the branch or built from a pull request of it.
        Such an event may release the branch's apps again: until it is planned,
        no app of the branch counts as idle (ttl expiry); once planned, its
        writes say so (`has_unfinished_writes`).
        """
        statement = (
            select(EventRow.id)
            .where(
                EventRow.repository == repository,
                (EventRow.branch == branch) | (EventRow.source_branch == branch),
                EventRow.type.in_((EventType.ARTIFACT.value, EventType.RELEASE.value)),
                EventRow.status == EventStatus.NEW.value,
                EventRow.planned.is_(False),
            )
            .limit(1)
        )
        with self._reading() as connection:
            return connection.scalar(statement) is not None

    def has_unfinished_writes(
        self,
        gitops_repo: str,
        env: str,
        *,
        app: str | None = None,
        excluding: Collection[int] = (),
    ) -> bool:
        """Whether a write of the queue, or of its `app`, is unfinished, besides `excluding`."""
        statement = _ANY_UNFINISHED_WRITE
        if app is not None:
            statement = statement.where(_W.app == app)
        if excluding:
            statement = statement.where(_W.id.not_in(list(excluding)))
        with self._reading() as connection:
            found = connection.scalar(statement, {"repo": gitops_repo, "env": env})
        return found is not None

    def last_applied_seq(self, gitops_repo: str, env: str, app: str) -> int | None:
        """The acceptance number of the newest event released to env/app, if any."""
        with self._reading() as connection:
            return connection.scalar(
                _LAST_APPLIED_SEQ, {"repo": gitops_repo, "env": env, "app": app}
            )

    def start_writes(self, write_ids: Collection[int], *, base_sha: str) -> bool:
        """Mark writes as being applied on top of `base_sha`, before anything is pushed.

        A write started before keeps its base: the oldest head it may have been
        pushed onto, where a search for its commit must begin (I2). One
        transaction for the writes a drain chains and pushes together, all or
        none. False, with nothing changed, when one of them already has an
        outcome: another worker, holding the environment's lock after ours
        expired, finished it; this one must stop, and must not mark the others
        with its base. The rows are locked in id order, as `finish_writes` locks
        them.
        """
        ids = sorted(set(write_ids))
        try:
            with self._writing() as connection:
                connection.execute(_LOCK_WRITES, {"ids": ids}).all()
                result = connection.execute(
                    _START_WRITES, {"ids": ids, "base": base_sha, "now": _now()}
                )
                if result.rowcount != len(ids):
                    raise _Finished
        except _Finished:
            return False
        return True

    def count_write_attempt(self, write_id: int) -> None:
        """Count an attempt that ended without a word: its worker died while applying it."""
        with self.session() as session:
            session.execute(
                update(GitopsWriteRow)
                .where(GitopsWriteRow.id == write_id)
                .values(attempts=GitopsWriteRow.attempts + 1, updated=_now())
            )

    def finish_writes(
        self,
        reports: Sequence[WriteReport],
        *,
        notices: Mapping[int, Notices] | None = None,
        pushed: PushedCommits | None = None,
    ) -> set[int]:
        """Record writes' outcomes, and their events' when they were the last, in one transaction.

        Returns the ids recorded. Only an unfinished write changes (an atomic
        conditional update): one that another worker already recorded is left as
        it is and missing from the result, so an outcome is never overwritten.
        The event rows are locked first, then the write rows, each in id order
        (as `claim_events`, `plan_events` and `start_writes` lock them): two
        writes of one event finishing at once on PostgreSQL cannot both miss
        that the other is done, nor deadlock.
        A `hold` placed (or the hold lifted) by a write lands in the same
        transaction, so a crash cannot leave a rollback applied but unprotected;
        so do the `notices` announcing it. Outcomes are applied in the order
        given, which is the queue's: a later write's hold wins. `notices` are
        by write id. A report's env and app are what the drain reports; the
        store takes a write's repository, env and app from its row.

        A drain records all the outcomes of a push at once: a transaction (and a
        disk flush) per push instead of one per write. With `pushed`, the
        push's commits enter the release index in the same transaction when
        the index stands at the push's base; otherwise they are left to
        `sync_index`, which reads them from git.
        """
        if not reports:
            return set()
        notices = notices or {}
        ids = [report.write_id for report in reports]
        with self._writing() as connection:
            events = connection.execute(_LOCK_EVENTS_OF_WRITES, {"ids": ids}).all()
            targets = {row.id: row for row in connection.execute(_LOCK_WRITES, {"ids": ids})}
            missing = sorted(set(ids) - targets.keys())
            if missing:
                raise NotFound(f"gitops writes {missing} do not exist")
            recorded: set[int] = set()
            now = _now()
            for report in reports:
                result = connection.execute(
                    _FINISH_WRITE,
                    {
                        "write_id": report.write_id,
                        "new_status": report.status.value,
                        "commit": report.commit,
                        "desc": report.desc,
                        "now": now,
                    },
                )
                if result.rowcount != 1:
                    continue
                recorded.add(report.write_id)
                target = targets[report.write_id]
                if report.hold is not None:
                    _replace_hold(connection, target.gitops_repo, report.hold)
                elif report.lift_hold:
                    _delete_hold(connection, target.gitops_repo, target.env, target.app)
                _add_notices(connection, notices.get(report.write_id, ()))
            for event in events:
                _end_event_if_done(connection, event)
            if pushed is not None:
                _index_pushed_commits(connection, pushed, now)
            return recorded

    def fail_unfinished_writes(self, gitops_repo: str, env: str, reason: str) -> None:
        """End every unfinished write of a queue that no worker can apply, with `reason`."""
        writes = self.unfinished_writes(gitops_repo, env)
        self.finish_writes(
            [WriteReport(w.id, env, w.app, ResultStatus.FAILURE, desc=reason) for w in writes]
        )

    def defer_write(
        self, write_id: int, *, until: float, problem: str, unstart: bool = False
    ) -> None:
        """Count a failed attempt at a write and keep it waiting until `until`, noting why.

        It goes back to pending. Its base stays, so the next attempt still looks for a
        commit this one may have pushed, unless `unstart`: the attempt that started it
        failed before any push, so it is as if never started (a newer policy deploy
        of its app may supersede it). `applying` is left only by a worker that died.
        """
        values: dict[str, Any] = {"base_sha": ""} if unstart else {}
        with self.session() as session:
            session.execute(
                update(GitopsWriteRow)
                .where(GitopsWriteRow.id == write_id, GitopsWriteRow.status.in_(UNFINISHED))
                .values(
                    status=ResultStatus.PENDING.value,
                    attempts=GitopsWriteRow.attempts + 1,
                    not_before=until,
                    status_desc=problem,
                    updated=_now(),
                    **values,
                )
            )

    # -- the release index -----------------------------------------------------

    def index_head(self, gitops_repo: str) -> IndexHead | None:
        """The commit up to which the release index has read `gitops_repo`, if any."""
        with self._reading() as connection:
            row = connection.execute(
                select(_table(IndexHeadRow)).where(IndexHeadRow.gitops_repo == gitops_repo)
            ).first()
        return None if row is None else IndexHead(row.commit_sha, row.position)

    def record_index(
        self,
        gitops_repo: str,
        *,
        base: IndexHead | None,
        head: IndexHead,
        entries: Sequence[IndexEntry],
    ) -> bool:
        """Add `entries`, read from `base` (exclusive) to `head`, and move the index to `head`.

        With `base` None the index of the repository is rebuilt from scratch. Safe to
        run concurrently: entries are inserted only once, and the head moves only
        from the `base` this reading started at (False, with nothing added, when
        another reader moved it). The head row is taken before any entry is
        deleted or inserted, on every path, so two readers wait for each other on
        PostgreSQL instead of deadlocking; `finish_writes` skips a head that is
        taken.
        """
        now = _now()
        with self.session() as session:
            if base is None:
                session.execute(delete(IndexHeadRow).where(IndexHeadRow.gitops_repo == gitops_repo))
                session.execute(delete(ReleaseRow).where(ReleaseRow.gitops_repo == gitops_repo))
                session.add(
                    IndexHeadRow(
                        gitops_repo=gitops_repo,
                        commit_sha=head.commit,
                        position=head.position,
                        updated=now,
                    )
                )
            else:
                moved = session.execute(
                    update(IndexHeadRow)
                    .where(
                        IndexHeadRow.gitops_repo == gitops_repo,
                        IndexHeadRow.commit_sha == base.commit,
                    )
                    .values(commit_sha=head.commit, position=head.position, updated=now)
                )
                if _rowcount(moved) != 1:
                    return False
            _add_index_entries(session.connection(), gitops_repo, entries)
            return True

    def history(self, query: HistoryFilter) -> list[HistoryEntry]:
        """Releases of an environment (or one app) newest first, from the index alone."""
        statement = select(ReleaseRow).where(
            ReleaseRow.gitops_repo == query.gitops_repo,
            ReleaseRow.env == query.env,
            ReleaseRow.kind.in_([kind.value for kind in query.kinds]),
        )
        if query.app:
            statement = statement.where(ReleaseRow.app == query.app)
        if query.source_repository:
            statement = statement.where(ReleaseRow.repository == query.source_repository)
        if query.since is not None:
            statement = statement.where(ReleaseRow.created >= int(query.since.timestamp()))
        if query.until is not None:
            statement = statement.where(ReleaseRow.created < int(query.until.timestamp()))
        order = (
            (ReleaseRow.position, ReleaseRow.id)
            if query.reverse
            else (ReleaseRow.position.desc(), ReleaseRow.id.desc())
        )
        statement = (
            statement.order_by(*order).limit(min(query.limit, MAX_LIST_LIMIT)).offset(query.offset)
        )
        with self.session() as session:
            rows = session.scalars(statement).all()
            holds = _holds(session, query.gitops_repo, query.env)
            statuses = _commit_statuses(session, [_status_key(row) for row in rows])
        return [_history_entry(row, holds, statuses) for row in rows]

    def live_releases(self, gitops_repo: str, env: str | None = None) -> list[HistoryEntry]:
        """What each app runs now: its newest indexed commit, unless that deleted it."""
        newest = select(
            ReleaseRow.env, ReleaseRow.app, func.max(ReleaseRow.position).label("position")
        ).where(ReleaseRow.gitops_repo == gitops_repo)
        if env is not None:
            newest = newest.where(ReleaseRow.env == env)
        latest = newest.group_by(ReleaseRow.env, ReleaseRow.app).subquery()
        statement = (
            select(ReleaseRow)
            .join(
                latest,
                (ReleaseRow.env == latest.c.env)
                & (ReleaseRow.app == latest.c.app)
                & (ReleaseRow.position == latest.c.position),
            )
            .where(ReleaseRow.gitops_repo == gitops_repo, ReleaseRow.kind != WriteKind.DELETE.value)
            .order_by(ReleaseRow.env, ReleaseRow.app)
        )
        with self.session() as session:
            rows = session.scalars(statement).all()
            holds = _holds(session, gitops_repo, env)
            statuses = _commit_statuses(session, [_status_key(row) for row in rows])
        return [_history_entry(row, holds, statuses, live=True) for row in rows]

    def indexed_release(
        self, gitops_repo: str, env: str, app: str, sha: str
    ) -> HistoryEntry | None:
        """The indexed commit `sha` of env/app, whatever its kind; None when it is not one."""
        with self.session() as session:
            row = session.scalar(
                select(ReleaseRow).where(
                    ReleaseRow.gitops_repo == gitops_repo,
                    ReleaseRow.env == env,
                    ReleaseRow.app == app,
                    ReleaseRow.commit_sha == sha,
                )
            )
            return None if row is None else _history_entry(row, {}, {})

    def commits_to_revert(self, gitops_repo: str, env: str, app: str, target: str) -> list[str]:
        """The commits of env/app after `target` that a rollback to it reverts, newest first.

        Releases and deletes not rolled back already; rollbacks themselves are not
        reverted, as in the Go original.
        """
        with self.session() as session:
            position = session.scalar(
                select(ReleaseRow.position).where(
                    ReleaseRow.gitops_repo == gitops_repo,
                    ReleaseRow.env == env,
                    ReleaseRow.app == app,
                    ReleaseRow.commit_sha == target,
                )
            )
            if position is None:
                raise NotFound(f"{target} is not an indexed commit of {env}/{app}")
            return list(
                session.scalars(
                    select(ReleaseRow.commit_sha)
                    .where(
                        ReleaseRow.gitops_repo == gitops_repo,
                        ReleaseRow.env == env,
                        ReleaseRow.app == app,
                        ReleaseRow.position > position,
                        ReleaseRow.kind != WriteKind.ROLLBACK.value,
                        ReleaseRow.rolled_back.is_(False),
                    )
                    .order_by(ReleaseRow.position.desc())
                )
            )

    def commits_awaiting_flux(self, gitops_repo: str, env: str, *, limit: int) -> list[str]:
        """The newest `limit` release commits of `env` Flux may still apply, newest first.

        Those without a final status, and those that only took the failure of a
        later commit Flux reported on (its retry may apply them yet).
        """
        with self.session() as session:
            settled = select(CommitStatusRow.sha).where(
                CommitStatusRow.gitops_repo == ReleaseRow.gitops_repo,
                CommitStatusRow.env == ReleaseRow.env,
                CommitStatusRow.sha == ReleaseRow.commit_sha,
                CommitStatusRow.status.not_in(("", FLUX_PROGRESSING)),
                (CommitStatusRow.implied_by == "") | (CommitStatusRow.status == FLUX_APPLIED),
            )
            rows = session.scalars(
                select(ReleaseRow.commit_sha)
                .where(
                    ReleaseRow.gitops_repo == gitops_repo,
                    ReleaseRow.env == env,
                    ~settled.exists(),
                )
                .order_by(ReleaseRow.position.desc())
                .limit(limit)
            ).all()
            return list(dict.fromkeys(rows))

    def flux_status(self, gitops_repo: str, env: str, sha: str) -> FluxStatus | None:
        """What Flux last said of commit `sha` in `env`; None before any report."""
        with self.session() as session:
            row = session.get(CommitStatusRow, (gitops_repo, env, sha))
            if row is None or not row.status:
                return None
            return FluxStatus(row.status, row.status_desc, implied_by=row.implied_by)

    def record_flux_statuses(
        self,
        gitops_repo: str,
        env: str,
        *,
        commit: str,
        status: str,
        desc: str,
        reported_at: float,
        implied: Sequence[str] = (),
        notices: Callable[[list[FluxChange]], Notices] = lambda _: (),
    ) -> list[FluxChange]:
        """Record Flux's status of `commit`, and give a final one to the `implied` commits too.

        The reported commit takes the report unless a newer report is recorded
        already (a failure implied by a later commit's report is not: the
        commit's own final report replaces it), or it would turn a final status
        back into progress. Each implied
        commit (one Flux applied along with `commit`) takes the same status unless
        it has a final one of its own, or was applied already. The notices
        `notices` builds from the commits whose status changed are stored in the
        same transaction, so a duplicate report changes nothing and announces
        nothing. Returns the changes.
        """
        final = status != FLUX_PROGRESSING
        now = _now()
        changed: list[str] = []
        with self.session() as session:

            def current(sha: str) -> CommitStatusRow:
                blank = {"gitops_repo": gitops_repo, "env": env, "sha": sha, "status": "",
                         "status_desc": "", "updated": now, "reported_at": 0.0,
                         "implied_by": ""}  # fmt: skip
                session.execute(
                    _insert_ignoring_duplicates(session.connection(), CommitStatusRow).values(blank)
                )
                row = session.scalar(
                    select(CommitStatusRow)
                    .where(CommitStatusRow.gitops_repo == gitops_repo, CommitStatusRow.env == env,
                           CommitStatusRow.sha == sha)
                    .with_for_update()
                )  # fmt: skip
                assert row is not None
                return row

            def record(row: CommitStatusRow, new_status: str, new_desc: str, by: str) -> None:
                if row.status != new_status:
                    changed.append(row.sha)
                row.status, row.status_desc, row.updated = new_status, new_desc, now
                # A report on the commit itself that replaces an implied status dates it.
                replaces_implied = not by and row.implied_by
                row.reported_at = (
                    reported_at if replaces_implied else max(row.reported_at, reported_at)
                )
                row.implied_by = by

            row = current(commit)
            row_final = row.status not in ("", FLUX_PROGRESSING)
            # A failure it took from a later commit's report gives way to its own final
            # report, however late: Flux may have applied it before that commit failed.
            implied_failure = bool(row.implied_by) and row.status != FLUX_APPLIED
            newer = reported_at >= row.reported_at or (final and implied_failure)
            if newer and (final or not row_final):
                record(row, status, desc, "")
            if final:
                for sha in implied:
                    row = current(sha)
                    own = row.status not in ("", FLUX_PROGRESSING) and not row.implied_by
                    if not own and row.status != FLUX_APPLIED:
                        record(row, status, f"applied with {commit}: {desc}", commit)
            changes = _flux_changes(session, gitops_repo, env, changed, final=final)
            _add_notices(session.connection(), notices(changes))
            return changes

    # -- notifications -------------------------------------------------------

    def start_delivery(self, notice_id: str, target: str, *, lease: float) -> Delivery | None:
        """Take a pending delivery for `lease` seconds, counting an attempt.

        None when it is sent or given up on, another worker holds it, or its retry
        delay is not over (a stale task: the task that deferred it queued another).
        """
        now = _now()
        with self.session() as session:
            taken = session.execute(
                update(DeliveryRow)
                .where(
                    *_pending_delivery(notice_id, target),
                    DeliveryRow.leased_until <= now,
                    DeliveryRow.not_before <= now + DELIVERY_EARLY,
                )
                .values(attempts=DeliveryRow.attempts + 1, leased_until=now + lease, updated=now)
            )
            if _rowcount(taken) != 1:
                return None
            notice, attempts = session.execute(
                select(NotificationRow.notice, DeliveryRow.attempts)
                .join(DeliveryRow, DeliveryRow.notification_id == NotificationRow.id)
                .where(NotificationRow.id == notice_id, DeliveryRow.target == target)
            ).one()
            return Delivery(Notice.model_validate_json(notice), target, attempts)

    def finish_delivery(
        self, notice_id: str, target: str, status: DeliveryStatus, desc: str = ""
    ) -> None:
        """Record that a pending delivery was sent, or given up on and why."""
        with self.session() as session:
            session.execute(
                update(DeliveryRow)
                .where(*_pending_delivery(notice_id, target))
                .values(status=status.value, status_desc=desc, leased_until=0.0, updated=_now())
            )

    def defer_delivery(self, notice_id: str, target: str, *, until: float, problem: str) -> None:
        """Keep a delivery pending until `until`, noting why the last attempt failed."""
        with self.session() as session:
            session.execute(
                update(DeliveryRow)
                .where(*_pending_delivery(notice_id, target))
                .values(status_desc=problem, not_before=until, leased_until=0.0, updated=_now())
            )

    def stale_deliveries(self, *, older_than: float) -> list[tuple[str, str]]:
        """Pending (notice id, target) deliveries untouched since `older_than` and due now.

        Marks them touched, as `stale_events` does.
        """
        now = _now()
        stale = (
            DeliveryRow.status == DeliveryStatus.PENDING.value,
            DeliveryRow.updated < older_than,
            DeliveryRow.not_before <= now,
            DeliveryRow.leased_until <= now,
        )
        with self.session() as session:
            rows = session.execute(
                select(DeliveryRow.notification_id, DeliveryRow.target)
                .where(*stale)
                .order_by(DeliveryRow.id)
            ).all()
            if rows:
                session.execute(update(DeliveryRow).where(*stale).values(updated=now))
            return [(notice_id, target) for notice_id, target in rows]

    # -- holds and environment locks ---------------------------------------------

    def hold(self, gitops_repo: str, env: str, app: str) -> Hold | None:
        with self._reading() as connection:
            return _find_hold(connection, gitops_repo, env, app)

    def holds(self, gitops_repo: str, env: str | None = None) -> list[Hold]:
        with self.session() as session:
            return sorted(_holds(session, gitops_repo, env).values(), key=lambda h: (h.env, h.app))

    def place_hold(self, gitops_repo: str, hold: Hold) -> None:
        """Hold an app by hand, replacing any hold it has (writes place theirs in finish_writes)."""
        with self._writing() as connection:
            _replace_hold(connection, gitops_repo, hold)

    def lift_hold(
        self, gitops_repo: str, env: str, app: str, *, audit: AuditEntry | None = None
    ) -> Hold | None:
        """Remove the hold on env/app; returns it, or None when there was none."""
        with self.session() as session:
            found = _find_hold(session.connection(), gitops_repo, env, app)
            if found is not None:
                _delete_hold(session.connection(), gitops_repo, env, app)
                _audit(session, audit)
            return found

    def lock_env(
        self,
        gitops_repo: str,
        env: str,
        *,
        reason: str,
        locked_by: str,
        audit: AuditEntry | None = None,
    ) -> EnvLock:
        """Freeze an environment. :raise Conflict: when it is locked already."""
        with self.session() as session:
            _audit(session, audit)
            row = EnvLockRow(
                gitops_repo=gitops_repo,
                env=env,
                reason=reason,
                locked_by=locked_by,
                created=int(_now()),
            )
            session.add(row)
            session.flush()
            return _env_lock(row)

    def unlock_env(
        self, gitops_repo: str, env: str, *, audit: AuditEntry | None = None
    ) -> EnvLock | None:
        """Lift an environment's lock; returns it, or None when it was not locked."""
        with self.session() as session:
            row = session.scalar(
                select(EnvLockRow).where(
                    EnvLockRow.gitops_repo == gitops_repo, EnvLockRow.env == env
                )
            )
            if row is None:
                return None
            session.delete(row)
            _audit(session, audit)
            return _env_lock(row)

    def env_lock(self, gitops_repo: str, env: str) -> EnvLock | None:
        with self._reading() as connection:
            row = connection.execute(_ENV_LOCK, {"repo": gitops_repo, "env": env}).first()
        return None if row is None else _env_lock(row)

    def env_locks(self, gitops_repo: str) -> list[EnvLock]:
        with self.session() as session:
            rows = session.scalars(
                select(EnvLockRow)
                .where(EnvLockRow.gitops_repo == gitops_repo)
                .order_by(EnvLockRow.env)
            ).all()
            return [_env_lock(row) for row in rows]

    # -- preview cleanup -----------------------------------------------------

    def create_cleanup_event(
        self,
        kind: CleanupEvent,
        *,
        repository: str,
        branch: str,
        triggered_by: str,
        detail: dict[str, Any],
        dedupe_key: str | None = None,
        audit: AuditEntry | None = None,
    ) -> CleanupRecord:
        """Store a reported branch deletion or pull request close, once (I1).

        A report whose `dedupe_key` (a GitHub delivery) was stored before returns
        that event. A branch deletion already reported, by webhook, poll or API,
        returns the event of the first report, unless that one ended in `error`:
        then this report tries again. The branch is marked in the same
        transaction that creates the event, by a conditional update, so of two
        reports arriving at once only one creates an event.
        """

        def record(session: Session) -> CleanupRecord:
            if dedupe_key is not None:
                known = session.scalar(select(EventRow.id).where(EventRow.dedupe_key == dedupe_key))
                if known is not None:
                    return CleanupRecord(self._event(session, known), created=False)
            row = _cleanup_event_row(kind, repository, branch, triggered_by, detail)
            row.dedupe_key = dedupe_key
            if kind is CleanupEvent.BRANCH_DELETED:
                first = _mark_deleted(session, repository, branch, row)
                if first is not None:
                    return CleanupRecord(self._event(session, first), created=False)
            session.add(row)
            session.flush()
            _audit(session, audit, row.id)
            return CleanupRecord(self._event(session, row.id), created=True)

        for _ in range(2):  # a second try reads what a concurrent duplicate stored
            try:
                with self.session() as session:
                    return record(session)
            except Conflict:
                continue
        raise Conflict(f"{kind.value} of {repository} {branch} is being recorded concurrently")

    def record_branch_listing(
        self, repository: str, *, listed_at: float, branches: Collection[str], triggered_by: str
    ) -> list[Event]:
        """Compare a poll's listing of a repository's branches with what is known of them.

        `listed_at` is when the listing was asked for. A known branch that was
        seen before `listed_at` and is missing from the listing was deleted: it is
        marked so and a `branchDeleted` event created (unless it was reported
        already). A listed branch nobody saw yet (a pull request's) is seen now.
        A listing never brings back a branch marked deleted: clocks of the API
        and the workers may disagree, and only an artifact proves the branch
        exists again.
        """
        listed = set(branches)
        created: list[Event] = []
        with self.session() as session:
            known = session.scalars(
                select(BranchRow).where(
                    BranchRow.repository == repository, BranchRow.deleted_at.is_(None)
                )
            ).all()
            for branch in known:
                if branch.branch in listed:
                    if branch.seen_at is None:
                        _mark_seen(session, branch, listed_at)
                    continue
                if branch.seen_at is None or branch.seen_at >= listed_at:
                    continue  # never seen here (a fork's?), or pushed after the listing began
                detail = {"repository": repository, "branch": branch.branch, "source": "poll"}
                row = _cleanup_event_row(
                    CleanupEvent.BRANCH_DELETED, repository, branch.branch, triggered_by, detail
                )
                done = _mark_deleted(session, repository, branch.branch, row, seen_before=listed_at)
                if done is not None:  # reported already, or ("") pushed after the listing
                    continue
                session.add(row)
                session.flush()
                created.append(self._event(session, row.id))
            session.execute(
                update(AppRepoRow)
                .where(AppRepoRow.repository == repository)
                .values(polled_at=listed_at, poll_error="")
            )
        return created

    def record_poll_error(self, repository: str, *, polled_at: float, error: str) -> None:
        """Note why a poll of `repository` failed; nothing is concluded from a failed poll."""
        with self.session() as session:
            session.execute(
                update(AppRepoRow)
                .where(AppRepoRow.repository == repository)
                .values(polled_at=polled_at, poll_error=error)
            )

    def app_repos(self) -> list[AppRepo]:
        """Every application repository whose branches are polled, by name."""
        with self.session() as session:
            rows = session.scalars(select(AppRepoRow).order_by(AppRepoRow.repository)).all()
            return [_app_repo(row) for row in rows]

    def app_repo(self, repository: str) -> AppRepo | None:
        """The polled application repository of that name, None when it is not polled."""
        with self.session() as session:
            row = session.get(AppRepoRow, repository)
            return None if row is None else _app_repo(row)

    def branch_artifacts(self, repository: str, branch: str) -> Iterator[Artifact]:
        """The artifacts built from `branch` (pushed to it, or a pull request of it), newest first.

        Read a page at a time: a long-lived branch may have thousands.
        """
        statement = (
            select(ArtifactRow.blob)
            .where(
                ArtifactRow.repository == repository,
                (ArtifactRow.branch == branch) | (ArtifactRow.source_branch == branch),
            )
            .order_by(ArtifactRow.accepted_at.desc(), ArtifactRow.id)
        )
        offset = 0
        while True:
            with self.session() as session:
                page = session.scalars(statement.limit(PAGE_SIZE).offset(offset)).all()
            yield from (Artifact.model_validate_json(blob) for blob in page)
            if len(page) < PAGE_SIZE:
                return
            offset += PAGE_SIZE

    def _event(self, session: Session, event_id: str) -> Event:
        row = session.scalar(select(EventRow).where(EventRow.id == event_id))
        if row is None:
            raise NotFound(f"event {event_id!r} does not exist")
        writes = session.scalars(
            select(GitopsWriteRow).where(GitopsWriteRow.event_id == event_id)
            .order_by(GitopsWriteRow.id)
        ).all()  # fmt: skip
        statuses = _commit_statuses(session, [_status_key(w) for w in writes if w.commit_sha])
        deliveries = session.execute(
            select(NotificationRow, DeliveryRow)
            .join(DeliveryRow, DeliveryRow.notification_id == NotificationRow.id)
            .where(NotificationRow.event_id == event_id)
            .order_by(NotificationRow.created, DeliveryRow.id)
        ).all()
        return _event_from_rows(row, writes, statuses, [(n, d) for n, d in deliveries])

    # -- users ---------------------------------------------------------------

    def ensure_admin(self, token: str | None) -> str | None:
        """Create the admin user at first start; returns its token when a new one was made.

        With `token` given (GIMLETD_ADMIN_TOKEN) the admin's token is set to it on
        every start, so operators can rotate it by restarting. Several processes may
        start at once (gunicorn's workers): the one that loses the race to create the
        admin returns None, and its token is the winner's.
        """
        now = int(_now())
        try:
            with self.session() as session:
                row = session.scalar(select(UserRow).where(UserRow.login == ADMIN_LOGIN))
                if row is not None:
                    if token is not None and row.token_hash != hash_token(token):
                        row.token_hash, row.token_issued = hash_token(token), now
                        _audit(session, _startup_audit("user.rotate"))
                    return None
                issued = token or new_token()
                session.add(
                    UserRow(login=ADMIN_LOGIN, token_hash=hash_token(issued),
                            role=Role.ADMIN.value, created=now, token_issued=now)
                )  # fmt: skip
                _audit(session, _startup_audit("user.create"))
        except Conflict:
            return None  # another process created the admin at the same moment
        return issued if token is None else None

    def create_user(
        self,
        login: str,
        *,
        role: Role = Role.USER,
        envs: Sequence[str] | None = None,
        expires_at: int | None = None,
        audit: AuditEntry | None = None,
    ) -> tuple[UserInfo, str]:
        """Create a user; returns it and its token, the only time the token is known in clear.

        :raise Conflict: when the login is taken.
        """
        token, now = new_token(), int(_now())
        with self.session() as session:
            row = UserRow(
                login=login,
                token_hash=hash_token(token),
                role=role.value,
                envs="" if envs is None else json.dumps(sorted(set(envs))),
                created=now,
                token_issued=now,
                expires_at=expires_at,
            )
            session.add(row)
            session.flush()
            _audit(session, audit)
            return _user(row), token

    def users(self) -> list[UserInfo]:
        with self.session() as session:
            return [_user(row) for row in session.scalars(select(UserRow).order_by(UserRow.login))]

    def user(self, login: str) -> UserInfo:
        """:raise NotFound: for an unknown login."""
        with self.session() as session:
            return _user(_user_row(session, login))

    def delete_user(self, login: str, *, audit: AuditEntry | None = None) -> UserInfo:
        """Delete a user, and with it its token.

        :raise NotFound: for an unknown login.
        :raise Conflict: for the last admin, whose loss would leave nobody to manage users.
        """
        with self.session() as session:
            row = _user_row(session, login)
            if row.role == Role.ADMIN.value:
                # Locked, so two admins deleting each other at once cannot both succeed.
                admins = session.scalars(
                    select(UserRow.id).where(UserRow.role == row.role).with_for_update()
                ).all()
                if len(admins) == 1:
                    raise Conflict(f"{login} is the last admin: create another admin first")
            session.delete(row)
            _audit(session, audit)
            return _user(row)

    def rotate_token(
        self, login: str, *, expires_at: int | None = None, audit: AuditEntry | None = None
    ) -> tuple[UserInfo, str]:
        """Give a user a new token (the old one stops working at once); returns it once.

        :raise NotFound: for an unknown login.
        """
        token = new_token()
        with self.session() as session:
            row = _user_row(session, login)
            row.token_hash, row.token_issued = hash_token(token), int(_now())
            row.expires_at = expires_at
            _audit(session, audit)
            return _user(row), token

    def user_by_token(self, token: str, *, now: float | None = None) -> UserInfo | None:
        """The user a token belongs to; None for an unknown or expired token.

        The token is looked up by its SHA-256, so the lookup's timing says nothing
        about the token itself.
        """
        now = _now() if now is None else now
        query = self._hot_statements.user_by_token
        with self._driver() as cursor:
            query.execute(cursor, {"token_hash": hash_token(token)})
            found = cursor.fetchone()
            names = [column[0] for column in cursor.description or ()]
        if found is None:
            return None
        row = SimpleNamespace(**dict(zip(names, found, strict=True)))
        if row.expires_at is not None and row.expires_at <= now:
            return None
        return _user(row)

    def metrics_snapshot(self, *, now: float) -> MetricsSnapshot:
        """The counts `/metrics` shows: grouped queries, and two index seeks per queue.

        Nothing here reads every write ever made (see `_queue_keys`).
        """
        with self.session() as session:
            artifacts = session.scalar(select(func.count()).select_from(ArtifactRow)) or 0
            events = session.execute(
                select(EventRow.type, EventRow.status, func.count()).group_by(
                    EventRow.type, EventRow.status
                )
            ).all()
            deliveries = session.execute(
                select(DeliveryRow.target, DeliveryRow.status, func.count()).group_by(
                    DeliveryRow.target, DeliveryRow.status
                )
            ).all()
        queues: dict[tuple[str, str], tuple[int, float]] = {}
        with self._reading() as connection:
            for repo, env in _queue_keys(connection):
                count, oldest = connection.execute(
                    _PENDING_IN_QUEUE, {"repo": repo, "env": env}
                ).one()
                queues[(repo, env)] = (count, now - oldest if count else 0.0)
        return MetricsSnapshot(
            artifacts=artifacts,
            events={(kind, status): count for kind, status, count in events},
            queues=_public_queues(queues),
            deliveries={(target, status): count for target, status, count in deliveries},
        )

    # -- the audit trail -------------------------------------------------------

    def audit_entries(
        self,
        *,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
        login: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        """The audit trail, newest first."""
        statement = select(AuditRow)
        if login is not None:
            statement = statement.where(AuditRow.login == login)
        if action is not None:
            statement = statement.where(AuditRow.action == action)
        statement = (
            statement.order_by(AuditRow.id.desc()).limit(min(limit, MAX_LIST_LIMIT)).offset(offset)
        )
        with self.session() as session:
            return [_audit_entry(row) for row in session.scalars(statement)]


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Writers queue for a lock of their own instead of sleeping in SQLite's busy handler.
        engine = create_engine(url, connect_args={"timeout": 30, "factory": WriteQueuedConnection})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": 5},
    )


class _Finished(Exception):
    """Rolls back `start_writes` when one of its writes was finished meanwhile."""


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (SQLAlchemy types `execute` loosely)."""
    count: int = result.rowcount
    return count


def _claim(row: Any, artifact_blobs: Mapping[str, str]) -> EventClaim | None:
    """The claim of a claimed event's row (`_CLAIMED_EVENTS`); None when the event is terminal."""
    if row.status != EventStatus.NEW.value:
        return None
    blob = artifact_blobs.get(row.artifact_id) if row.artifact_id and not row.planned else None
    return EventClaim(
        id=row.id,
        seq=row.seq,
        type=EventType(row.type),
        artifact_id=row.artifact_id,
        triggered_by=row.triggered_by,
        blob=row.blob,
        attempts=row.attempts,
        planned=row.planned,
        artifact=None if blob is None else Artifact.model_validate_json(blob),
    )


def _end_event_if_done(connection: Connection, event: Any) -> int:
    """Give a planned event its terminal status once every write has an outcome (I5).

    `event` has the `_ENDING_EVENT_COLUMNS`; returns 1 when it ended, else 0.
    """
    if not event.planned or event.status != EventStatus.NEW.value:
        return 0
    writes = connection.execute(_WRITES_OF_EVENT, {"event_id": event.id}).all()
    if any(write.status in UNFINISHED for write in writes):
        return 0
    failed = [write for write in writes if write.status == ResultStatus.FAILURE.value]
    if failed:
        status = EventStatus.ERROR.value
        desc = "; ".join(_named_reason(w.env, w.app, w.status_desc) for w in failed)
    else:
        status, desc = EventStatus.PROCESSED.value, _summary(event, writes)
    ended = connection.execute(
        _END_EVENT, {"event_id": event.id, "new_status": status, "desc": desc, "now": _now()}
    )
    return _rowcount(ended)


def _planned_write_values(event: Any, write: PlannedWrite, now: float) -> dict[str, Any]:
    """The row of a planned write of `event` (a `_LOCK_PLANNED_EVENTS` row), every column set."""
    return {
        **_write_values(event, write.gitops_repo, write.env, write.app, ResultStatus.PENDING, now),
        "files": json.dumps({name: content.decode() for name, content in write.files.items()}),
        "release": write.release.to_json_text(),
        "kind": write.kind.value,
        "target_sha": write.target_sha,
        "forced": write.forced,
    }


def _failed_write_values(event: Any, failure: FailedEnvironment, now: float) -> dict[str, Any]:
    """The row of an environment of `event` (as in `_planned_write_values`) that failed."""
    values = _write_values(
        event, failure.gitops_repo, failure.env, failure.app, ResultStatus.FAILURE, now
    )
    return {**values, "status_desc": failure.reason}


def _write_values(
    event: Any, gitops_repo: str, env: str, app: str, status: ResultStatus, now: float
) -> dict[str, Any]:
    """A write row's columns of `event` (as above), every one set: they go in one executemany."""
    return {
        "event_seq": event.seq, "event_id": event.id, "gitops_repo": gitops_repo, "env": env,
        "app": app, "status": status.value, "status_desc": "", "files": "{}", "release": "{}",
        "commit_sha": "", "base_sha": "", "attempts": 0, "not_before": 0.0, "created": now,
        "updated": now, "kind": WriteKind.RELEASE.value, "target_sha": "", "forced": False,
    }  # fmt: skip


def _planned_outcome(event: Any, failures: Sequence[FailedEnvironment]) -> tuple[str, str]:
    """The terminal status and description of an event (as above) planned with nothing to apply."""
    if failures:
        reasons = (_named_reason(f.env, f.app, f.reason) for f in failures)
        return EventStatus.ERROR.value, "; ".join(reasons)
    return EventStatus.PROCESSED.value, _summary(event, [])


def _named_reason(env: str, app: str, reason: str) -> str:
    """`<env>/<app>: <why>`, without repeating a prefix the reason already has."""
    prefix = f"{env}/{app}: "
    return reason if reason.startswith(prefix) else prefix + reason


def _summary(event: Any, writes: Sequence[Any]) -> str:
    """What an event that ended processed did; `event` and `writes` are rows with the
    `_ENDING_EVENT_COLUMNS` and `_WRITES_OF_EVENT`'s."""
    if not writes and event.type in CLEANUP_EVENT_TYPES:
        return (
            f"nothing to clean up: no artifact of {event.repository} on branch {event.branch} "
            f"has a cleanup policy for {event.type} that matches it"
        )
    if not writes:
        return "no environment's deploy policy matched"
    return "; ".join(f"{w.env}/{w.app}: {w.status}" for w in writes)


def _write_from_row(row: GitopsWriteRow | Row[Any]) -> GitopsWrite:
    files: dict[str, str] = json.loads(row.files)
    return GitopsWrite(
        id=row.id,
        event_id=row.event_id,
        event_seq=row.event_seq,
        gitops_repo=row.gitops_repo,
        env=row.env,
        app=row.app,
        status=ResultStatus(row.status),
        files={name: content.encode() for name, content in files.items()},
        release=Release.model_validate_json(row.release),
        base_sha=row.base_sha,
        commit_sha=row.commit_sha,
        attempts=row.attempts,
        not_before=row.not_before,
        kind=WriteKind(row.kind),
        target_sha=row.target_sha,
        forced=row.forced,
        problem=row.status_desc or "",
    )


def _new_event(columns: dict[str, Any]) -> Event:
    """The event just stored with `columns`: no writes, statuses or notifications yet.

    Read from a plain namespace: building an `EventRow` (an ORM instance) costs
    more than the insert.
    """
    return _event_from_rows(SimpleNamespace(**columns), [], {}, [])


def _event_from_rows(
    row: EventRow | SimpleNamespace,
    writes: Sequence[GitopsWriteRow],
    statuses: dict[StatusKey, CommitStatusRow],
    deliveries: Sequence[tuple[NotificationRow, DeliveryRow]],
) -> Event:
    def flux(write: GitopsWriteRow) -> tuple[str, str]:
        status = statuses.get(_status_key(write)) if write.commit_sha else None
        return (status.status, status.status_desc) if status is not None else ("", "")

    results = [
        Result(
            app=w.app,
            env=w.env,
            hash=w.commit_sha,
            status=ResultStatus(w.status),
            status_desc=w.status_desc,
            gitops_commit_status=flux(w)[0],
            gitops_commit_status_desc=flux(w)[1],
        )
        for w in writes
    ]
    return Event(
        id=row.id,
        created=row.created,
        type=EventType(row.type),
        status=EventStatus(row.status),
        status_desc=row.status_desc,
        repository=row.repository,
        branch=row.branch,
        event=row.event,
        source_branch=row.source_branch,
        target_branch=row.target_branch,
        tag=row.tag,
        sha=row.sha,
        artifact_id=row.artifact_id,
        triggered_by=row.triggered_by,
        gitops_hashes=[
            GitopsHash(
                hash=w.commit_sha,
                env=w.env,
                app=w.app,
                status=flux(w)[0],
                status_desc=flux(w)[1],
            )
            for w in writes
            if w.commit_sha and w.status == ResultStatus.SUCCESS.value
        ],
        results=results,
        notifications=[
            NotificationStatus(
                kind=notification.kind,
                target=delivery.target,
                env=notification.env,
                app=notification.app,
                status=DeliveryStatus(delivery.status),
                status_desc=delivery.status_desc,
                attempts=delivery.attempts,
            )
            for notification, delivery in deliveries
        ],
    )


def _table(row_class: type[Base]) -> Table:
    """The table of a row class, for Core statements on hot paths (no unit of work)."""
    return cast(Table, row_class.__table__)


def _dialect_insert_for(dialect: str, table: type[Base]) -> Any:
    """An INSERT that knows `ON CONFLICT`, in `dialect` (postgresql, or else sqlite)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _insert_ignoring_duplicates(connection: Connection, table: type[Base]) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING`: rows already there are kept as they are."""
    return _dialect_insert_for(connection.dialect.name, table).on_conflict_do_nothing()


def _add_index_entries(
    connection: Connection, gitops_repo: str, entries: Sequence[IndexEntry]
) -> None:
    """Insert index entries (each once) and mark the commits their rollbacks reverted."""
    if entries:
        connection.execute(
            _insert_ignoring_duplicates(connection, ReleaseRow),
            [_release_row_values(gitops_repo, entry) for entry in entries],
        )
    for entry in entries:
        if entry.reverts:
            connection.execute(
                update(_table(ReleaseRow))
                .where(
                    ReleaseRow.gitops_repo == gitops_repo,
                    ReleaseRow.env == entry.env,
                    ReleaseRow.app == entry.app,
                    ReleaseRow.commit_sha.in_(entry.reverts),
                )
                .values(rolled_back=True)
            )


def _index_pushed_commits(connection: Connection, pushed: PushedCommits, now: float) -> None:
    """Move the release index over a drain's own push, if it stands at the push's base.

    When it does not (another writer's commits came first, or a sync is behind,
    ahead or busy), nothing changes: `sync_index` reads the commits from git.
    """
    head = connection.execute(_LOCK_INDEX_HEAD, {"repo": pushed.gitops_repo}).first()
    if head is None or head.commit_sha != pushed.base:
        return
    entries = [replace(entry, position=entry.position + head.position) for entry in pushed.entries]
    _add_index_entries(connection, pushed.gitops_repo, entries)
    connection.execute(
        _MOVE_INDEX_HEAD,
        {
            "repo": pushed.gitops_repo,
            "head": pushed.head,
            "position": head.position + pushed.count,
            "now": now,
        },
    )


def _release_row_values(gitops_repo: str, entry: IndexEntry) -> dict[str, Any]:
    release = entry.release
    return {
        "gitops_repo": gitops_repo,
        "env": entry.env,
        "app": entry.app,
        "commit_sha": entry.commit,
        "position": entry.position,
        "kind": entry.kind.value,
        "artifact_id": release.artifact_id[:512],
        "repository": (release.version.repository_name if release.version else "")[:512],
        "triggered_by": release.triggered_by[:256],
        "event_id": release.event_id[:64],
        "created": entry.created,
        "rolled_back": False,
        "release": release.to_json_text(),
    }


def _history_entry(
    row: ReleaseRow,
    holds: dict[tuple[str, str], Hold],
    statuses: dict[StatusKey, CommitStatusRow],
    *,
    live: bool = False,
) -> HistoryEntry:
    """An index row as the API shows it; the hold is shown on the release it protects.

    In a status (`live`), the hold of the app is shown on what runs now.
    """
    release = json.loads(row.release)
    hold = holds.get((row.env, row.app))
    protects = hold is not None and (live or hold.commit == row.commit_sha)
    flux = statuses.get(_status_key(row))
    return HistoryEntry.model_validate(
        {
            **release,
            "app": row.app,
            "env": row.env,
            "gitopsRef": row.commit_sha,
            "gitopsRepo": public_repo_url(row.gitops_repo),
            "created": row.created,
            "rolledBack": row.rolled_back,
            "kind": row.kind,
            "hold": hold if protects else None,
            "fluxStatus": flux.status if flux else None,
            "fluxStatusDesc": flux.status_desc if flux else None,
        }
    )


def _status_key(row: GitopsWriteRow | ReleaseRow) -> StatusKey:
    """The key of the Flux status of the commit a write or release row made."""
    return (row.gitops_repo, row.env, row.commit_sha)


def _commit_statuses(
    session: Session, commits: Collection[StatusKey]
) -> dict[StatusKey, CommitStatusRow]:
    """Flux's statuses of (gitops repo, env, sha) commits, by that key."""
    if not commits:
        return {}
    rows = session.scalars(
        select(CommitStatusRow).where(CommitStatusRow.sha.in_({sha for _, _, sha in commits}))
    )
    wanted = set(commits)
    return {key: row for row in rows if (key := (row.gitops_repo, row.env, row.sha)) in wanted}


def _holds(
    reader: Session | Connection, gitops_repo: str, env: str | None
) -> dict[tuple[str, str], Hold]:
    """The holds of one environment (of every one when `env` is None) by (env, app)."""
    statement = select(_table(HoldRow)).where(HoldRow.gitops_repo == gitops_repo)
    if env is not None:
        statement = statement.where(HoldRow.env == env)
    return {(row.env, row.app): _hold(row) for row in reader.execute(statement)}


def _find_hold(connection: Connection, gitops_repo: str, env: str, app: str) -> Hold | None:
    """The hold on env/app, if any."""
    row = connection.execute(_HOLD, {"repo": gitops_repo, "env": env, "app": app}).first()
    return None if row is None else _hold(row)


def _hold(row: Any) -> Hold:
    """The hold of a row of the holds table."""
    return Hold(
        env=row.env,
        app=row.app,
        reason=row.reason,
        placed_by=row.placed_by,
        event_id=row.event_id,
        commit=row.commit_sha,
        created=row.created,
    )


def _delete_hold(connection: Connection, gitops_repo: str, env: str, app: str) -> None:
    connection.execute(
        delete(_table(HoldRow)).where(
            HoldRow.gitops_repo == gitops_repo, HoldRow.env == env, HoldRow.app == app
        )
    )


def _replace_hold(connection: Connection, gitops_repo: str, hold: Hold) -> None:
    """Place `hold` on its app, replacing any hold the app has."""
    _delete_hold(connection, gitops_repo, hold.env, hold.app)
    connection.execute(
        insert(_table(HoldRow)),
        {
            "gitops_repo": gitops_repo,
            "env": hold.env,
            "app": hold.app,
            "reason": hold.reason,
            "placed_by": hold.placed_by,
            "event_id": hold.event_id,
            "commit_sha": hold.commit,
            "created": hold.created,
        },
    )


_W = GitopsWriteRow
#: The queue index's steps (`_queue_keys`): the first repository, the first env of a
#: repository after `env`, the first repository after `repo`. `ORDER BY ... LIMIT 1` rather
#: than min(), so PostgreSQL takes the index even before it has statistics on the table.
_FIRST_REPO = select(_W.gitops_repo).order_by(_W.gitops_repo).limit(1)
_NEXT_ENV = (
    select(_W.env)
    .where(_W.gitops_repo == bindparam("repo"), _W.env > bindparam("env"))
    .order_by(_W.env)
    .limit(1)
)
_NEXT_REPO = (
    select(_W.gitops_repo)
    .where(_W.gitops_repo > bindparam("repo"))
    .order_by(_W.gitops_repo)
    .limit(1)
)
#: The writes one queue (`repo`, `env`) has not applied yet.
_UNFINISHED_IN_QUEUE = (
    _W.gitops_repo == bindparam("repo"), _W.env == bindparam("env"), _W.status.in_(UNFINISHED)
)  # fmt: skip
#: How many, and when the oldest was planned.
_PENDING_IN_QUEUE = select(func.count(), func.min(_W.created)).where(*_UNFINISHED_IN_QUEUE)

#: The statements of `claim_events`, `start_writes` and `finish_writes`, built once: on the
#: workers' path, building and compiling a statement, and the ORM's handling of an UPDATE, cost
#: more than running it. Each `FOR UPDATE` takes its rows in id order (PostgreSQL; SQLite has
#: one writer at a time).
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_E = EventRow
_LOCK_EVENTS = select(_E.id).where(_E.id.in_(_IDS)).order_by(_E.id).with_for_update()
_COUNT_EVENT_ATTEMPTS = (
    update(_table(EventRow))
    .where(_E.id.in_(_IDS), _E.status == EventStatus.NEW.value)
    .values(attempts=_E.attempts + 1, touched_at=bindparam("now"))
)
_CLAIMED_EVENTS = select(
    _E.id, _E.seq, _E.type, _E.status, _E.artifact_id, _E.triggered_by, _E.blob, _E.attempts,
    _E.planned,
).where(_E.id.in_(_IDS))  # fmt: skip
_ARTIFACT_BLOBS = select(ArtifactRow.id, ArtifactRow.blob).where(ArtifactRow.id.in_(_IDS))
#: What ending an event needs of it (`_end_event_if_done`, `_planned_outcome`).
_ENDING_EVENT_COLUMNS = (_E.id, _E.type, _E.status, _E.planned, _E.repository, _E.branch)
#: The events a batch plans, locked, with what `plan_events` needs to write and end them.
_LOCK_PLANNED_EVENTS = (
    select(*_ENDING_EVENT_COLUMNS, _E.seq).where(_E.id.in_(_IDS)).order_by(_E.id).with_for_update()
)
_MARK_PLANNED = (
    update(_table(EventRow))
    .where(_E.id == bindparam("event_id"))
    .values(planned=True, touched_at=bindparam("now"))
)
_MARK_PLANNED_AND_ENDED = (
    update(_table(EventRow))
    .where(_E.id == bindparam("event_id"))
    .values(
        planned=True,
        touched_at=bindparam("now"),
        status=bindparam("new_status"),
        status_desc=bindparam("desc"),
    )
)
_INSERT_WRITE = insert(_table(GitopsWriteRow))
#: The drain's reads of a queue (`repo`, `env`), its apps' holds and its environment's lock.
_UNFINISHED_WRITES = (
    select(_table(GitopsWriteRow)).where(*_UNFINISHED_IN_QUEUE).order_by(_W.event_seq, _W.id)
)
_ANY_UNFINISHED_WRITE = select(_W.id).where(*_UNFINISHED_IN_QUEUE).limit(1)
_LAST_APPLIED_SEQ = select(func.max(_W.event_seq)).where(
    _W.gitops_repo == bindparam("repo"),
    _W.env == bindparam("env"),
    _W.app == bindparam("app"),
    _W.status.in_((ResultStatus.SUCCESS.value, ResultStatus.UNCHANGED.value)),
)
_HOLD = select(_table(HoldRow)).where(
    HoldRow.gitops_repo == bindparam("repo"),
    HoldRow.env == bindparam("env"),
    HoldRow.app == bindparam("app"),
)
_ENV_LOCK = select(_table(EnvLockRow)).where(
    EnvLockRow.gitops_repo == bindparam("repo"), EnvLockRow.env == bindparam("env")
)
#: What ending an event needs of its writes.
_WRITES_OF_EVENT = (
    select(_W.env, _W.app, _W.status, _W.status_desc)
    .where(_W.event_id == bindparam("event_id"))
    .order_by(_W.id)
)
_END_EVENT = (
    update(_table(EventRow))
    .where(_E.id == bindparam("event_id"), _E.status == EventStatus.NEW.value)
    .values(
        status=bindparam("new_status"), status_desc=bindparam("desc"), touched_at=bindparam("now")
    )
)
#: The events of the writes `finish_writes` records, locked before the writes.
_LOCK_EVENTS_OF_WRITES = (
    select(*_ENDING_EVENT_COLUMNS)
    .where(_E.id.in_(select(_W.event_id).where(_W.id.in_(_IDS))))
    .order_by(_E.id)
    .with_for_update()
)
#: Skips a head another transaction holds (a sync or a rebuild): a drain's record never waits
#: for the index, which the sync then brings up to date.
_LOCK_INDEX_HEAD = (
    select(IndexHeadRow.commit_sha, IndexHeadRow.position)
    .where(IndexHeadRow.gitops_repo == bindparam("repo"))
    .with_for_update(skip_locked=True)
)
_MOVE_INDEX_HEAD = (
    update(_table(IndexHeadRow))
    .where(IndexHeadRow.gitops_repo == bindparam("repo"))
    .values(commit_sha=bindparam("head"), position=bindparam("position"), updated=bindparam("now"))
)
#: The writes, locked, with what `finish_writes` needs to place holds.
_LOCK_WRITES = (
    select(_W.id, _W.event_id, _W.gitops_repo, _W.env, _W.app)
    .where(_W.id.in_(_IDS))
    .order_by(_W.id)
    .with_for_update()
)
#: A write started before keeps its base: the oldest head it may have been pushed onto.
_START_WRITES = (
    update(_table(GitopsWriteRow))
    .where(_W.id.in_(_IDS), _W.status.in_(UNFINISHED))
    .values(
        status=ResultStatus.APPLYING.value,
        base_sha=func.coalesce(func.nullif(_W.base_sha, ""), bindparam("base")),
        updated=bindparam("now"),
    )
)
_FINISH_WRITE = (
    update(_table(GitopsWriteRow))
    .where(_W.id == bindparam("write_id"), _W.status.in_(UNFINISHED))
    .values(
        status=bindparam("new_status"),
        commit_sha=bindparam("commit"),
        status_desc=bindparam("desc"),
        files="{}",
        updated=bindparam("now"),
    )
)


def _queue_keys(connection: Connection) -> Iterator[tuple[str, str]]:
    """Every (GitOps repository, env) that ever had a write, in order.

    Read by skipping along the queue's index, one seek per key: a GROUP BY
    reads every write ever made. At a million writes to 30 environments on
    SQLite, a scrape took 145 ms with the GROUP BY and takes 10 ms this way,
    time in which a gevent API process serves nothing else.
    """
    repo = connection.scalar(_FIRST_REPO)
    while repo is not None:
        env = connection.scalar(_NEXT_ENV, {"repo": repo, "env": ""})
        while env is not None:
            yield repo, env
            env = connection.scalar(_NEXT_ENV, {"repo": repo, "env": env})
        repo = connection.scalar(_NEXT_REPO, {"repo": repo})


def _public_queues(
    queues: dict[tuple[str, str], tuple[int, float]],
) -> dict[tuple[str, str], tuple[int, float]]:
    """The queues by `public_repo_url`: one URL with and without credentials is one queue."""
    public: dict[tuple[str, str], tuple[int, float]] = {}
    for (repo, env), (count, age) in queues.items():
        key = (public_repo_url(repo), env)
        before_count, before_age = public.get(key, (0, 0.0))
        public[key] = (before_count + count, max(before_age, age, 0.0))
    return public


def _env_lock(row: EnvLockRow | Row[Any]) -> EnvLock:
    return EnvLock(env=row.env, reason=row.reason, locked_by=row.locked_by, created=row.created)


def _branch_rows(versions: Sequence[Version]) -> list[dict[str, Any]]:
    """The rows of `_HotStatements.branch` that note the branches of `versions`.

    A push proves the branch exists in its repository now; a pull request's
    source branch may be in a fork, so it is only noted. An artifact of a branch
    marked deleted brings it back: CI finished after the deletion, and what it
    releases must be cleaned up by the next report.
    """
    seen: dict[tuple[str, str], float | None] = {}
    for version in versions:
        branch = version.branch or version.source_branch
        if not branch:
            continue
        key = (version.repository_name, branch)
        pushed = _now() if version.event is GitEvent.PUSH else None
        seen[key] = seen.get(key) or pushed  # one row per branch: an upsert may not touch it twice
    return [
        {"repository": repository, "branch": branch, "seen_at": seen_at}
        # Sorted: batches committing at once lock their rows in one order (PostgreSQL).
        for (repository, branch), seen_at in sorted(seen.items())
    ]


#: The columns each row of `_HotStatements`' inserts gives (`create_artifacts` builds them).
_VERSION_KEYS = ("repository", "branch", "event", "source_branch", "target_branch", "tag", "sha")
_ARTIFACT_KEYS = ("id", "created", "accepted_at", "blob", *_VERSION_KEYS)
_EVENT_KEYS = ("id", "created", "type", "blob", "status", "status_desc", "artifact_id",
               "triggered_by", "touched_at", "dedupe_key", *_VERSION_KEYS)  # fmt: skip
_AUDIT_KEYS = ("at", "login", "address", "action", "target", "detail", "event_id")
_APP_REPO_KEYS = ("repository", "url", "created", "poll_error")


@dataclass(frozen=True)
class _HotStatements:
    """The statements of the API's hottest path, compiled once per store for its dialect.

    They run on the driver's cursor (`gimletd.driver_sql`): SQLAlchemy's execution
    around a statement cost more than running it, and building a statement (above
    all an upsert's `excluded` columns) more still.
    """

    artifact: DriverStatement
    event: DriverStatement
    audit: DriverStatement
    #: Notes a branch as existing (see `BranchRow`): rows of `_branch_rows`.
    branch: DriverStatement
    #: Registers a repository for branch polling at a URL. The first URL found stays:
    #: anyone with a CI token can send an artifact, and a later one must not point the
    #: poll (and APP_REPOS_TOKEN) somewhere else. APP_REPOS overrides it.
    app_repo: DriverStatement
    #: The user of a token, by its hash: every authenticated request runs it.
    user_by_token: DriverStatement

    @classmethod
    def compile(cls, dialect: Dialect) -> _HotStatements:
        upsert = _dialect_insert_for(dialect.name, BranchRow).values(
            repository=bindparam("repository"),
            branch=bindparam("branch"),
            seen_at=bindparam("seen_at"),
            deleted_at=None,
            deletion_event_id="",
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=["repository", "branch"],
            set_={
                "seen_at": func.coalesce(upsert.excluded.seen_at, BranchRow.seen_at),
                "deleted_at": None,
                "deletion_event_id": "",
            },
        )
        app_repo = _dialect_insert_for(dialect.name, AppRepoRow)
        app_repo = app_repo.on_conflict_do_update(
            index_elements=["repository"],
            set_={"url": app_repo.excluded.url},
            where=AppRepoRow.url == "",
        )
        compile = DriverStatement.compile
        return cls(
            artifact=compile(insert(_table(ArtifactRow)), dialect, _ARTIFACT_KEYS),
            event=compile(insert(_table(EventRow)), dialect, _EVENT_KEYS),
            audit=compile(insert(_table(AuditRow)), dialect, _AUDIT_KEYS),
            branch=compile(upsert, dialect),
            app_repo=compile(app_repo, dialect, _APP_REPO_KEYS),
            user_by_token=compile(
                select(_table(UserRow)).where(UserRow.token_hash == bindparam("token_hash")),
                dialect,
            ),
        )


def _ensure_branch(session: Session, repository: str, branch: str) -> None:
    """Add the row of a branch unless it is there, so conditional updates can decide on it."""
    session.execute(
        _insert_ignoring_duplicates(session.connection(), BranchRow).values(
            repository=repository, branch=branch, deletion_event_id=""
        )
    )


def _app_repo(row: AppRepoRow) -> AppRepo:
    return AppRepo(row.repository, row.url, row.polled_at, row.poll_error)


def _mark_seen(session: Session, row: BranchRow, listed_at: float) -> None:
    """A poll listed a branch nobody had seen in the repository yet: it is there."""
    session.execute(
        update(BranchRow)
        .where(
            BranchRow.repository == row.repository,
            BranchRow.branch == row.branch,
            BranchRow.seen_at.is_(None),
            BranchRow.deleted_at.is_(None),
        )
        .values(seen_at=listed_at)
    )


def _mark_deleted(
    session: Session,
    repository: str,
    branch: str,
    event: EventRow,
    *,
    seen_before: float | None = None,
) -> str | None:
    """Mark a branch deleted by `event`: None when it did so.

    Otherwise the id of the event that deleted it already, or "" when none did
    and it was not marked: a poll's branch pushed after the listing began.

    Conditional updates decide, so of two concurrent reports one wins. A
    deletion whose event ended in `error` counts as not done, and a report (not
    a poll) takes its place, so a failed cleanup can be reported again.
    `seen_before`, a poll's listing time, also requires the branch to have been
    seen before the listing began.
    """
    _ensure_branch(session, repository, branch)
    mine = (BranchRow.repository == repository) & (BranchRow.branch == branch)
    unmarked: list[ColumnElement[bool]] = [mine, BranchRow.deleted_at.is_(None)]
    if seen_before is not None:
        unmarked.append(BranchRow.seen_at < seen_before)
    marks = {"deleted_at": event.touched_at, "deletion_event_id": event.id}
    if _rowcount(session.execute(update(BranchRow).where(*unmarked).values(**marks))):
        return None
    first: str = session.scalar(select(BranchRow.deletion_event_id).where(mine)) or ""
    failed = select(EventRow.id).where(
        EventRow.id == first, EventRow.status == EventStatus.ERROR.value
    )
    if seen_before is None and session.scalar(failed) is not None:
        retry = update(BranchRow).where(mine, BranchRow.deletion_event_id == first)
        if _rowcount(session.execute(retry.values(**marks))):
            return None
    return first


def _cleanup_event_row(
    kind: CleanupEvent, repository: str, branch: str, triggered_by: str, detail: dict[str, Any]
) -> EventRow:
    now = _now()
    return EventRow(
        id=str(uuid.uuid4()),
        created=int(now),
        type=kind.value,  # the event types of cleanups are named as their events
        blob=json.dumps(detail),
        status=EventStatus.NEW.value,
        status_desc="",
        repository=repository,
        branch=branch,
        event=kind.value,
        triggered_by=triggered_by,
        touched_at=now,
    )


def _pending_delivery(notice_id: str, target: str) -> tuple[ColumnElement[bool], ...]:
    """The conditions that select a delivery while it is pending."""
    return (
        DeliveryRow.notification_id == notice_id,
        DeliveryRow.target == target,
        DeliveryRow.status == DeliveryStatus.PENDING.value,
    )


def _add_notices(connection: Connection, notices: Notices) -> None:
    """Store notices and a pending delivery per target; a notice with no target is dropped."""
    now = _now()
    stored = [(notice, targets) for notice, targets in notices if targets]
    if not stored:
        return
    connection.execute(
        insert(_table(NotificationRow)),
        [
            {
                "id": notice.id,
                "event_id": notice.event_id[:64],
                "kind": notice.kind.value,
                "env": notice.env[:256],
                "app": notice.app[:256],
                "created": now,
                "notice": notice.model_dump_json(by_alias=True),
            }
            for notice, _ in stored
        ],
    )
    connection.execute(
        insert(_table(DeliveryRow)),
        [
            {
                "notification_id": notice.id,
                "target": target,
                "status": DeliveryStatus.PENDING.value,
                "status_desc": "",
                "attempts": 0,
                "not_before": 0.0,
                "leased_until": 0.0,
                "updated": now,
            }
            for notice, targets in stored
            for target in targets
        ],
    )


def _flux_changes(
    session: Session, gitops_repo: str, env: str, shas: list[str], *, final: bool
) -> list[FluxChange]:
    """The changes of `shas`: one per app each changed, or one without a release."""
    if not shas:
        return []
    keys = [(gitops_repo, env, sha) for sha in shas]
    statuses = {key[2]: row for key, row in _commit_statuses(session, keys).items()}
    rows = session.scalars(
        select(ReleaseRow)
        .where(ReleaseRow.gitops_repo == gitops_repo, ReleaseRow.env == env,
               ReleaseRow.commit_sha.in_(shas))
        .order_by(ReleaseRow.position, ReleaseRow.app)
    ).all()  # fmt: skip
    changes = [
        FluxChange(
            commit=row.commit_sha,
            status=statuses[row.commit_sha].status,
            final=final,
            release=Release.model_validate_json(row.release),
            kind=WriteKind(row.kind),
            created=row.created,
        )
        for row in rows
    ]
    indexed = {row.commit_sha for row in rows}
    changes.extend(
        FluxChange(sha, statuses[sha].status, final, None, None, int(statuses[sha].updated))
        for sha in shas
        if sha not in indexed
    )
    return changes


def _audit(
    session: Session, entry: AuditEntry | None, event_id: str = "", *, target: str = ""
) -> None:
    """Add `entry` to the audit trail in the session's transaction (nothing when None).

    `event_id` and `target` fill in what the caller could not know before the write.
    """
    if entry is None:
        return
    session.execute(insert(_table(AuditRow)), _audit_values(entry, event_id, target=target))


def _audit_values(entry: AuditEntry, event_id: str = "", *, target: str = "") -> dict[str, Any]:
    """The audit row of `entry`, cut to its columns' sizes."""
    return {
        "at": entry.at,
        "login": entry.login[:256],
        "address": entry.address[:64],
        "action": entry.action[:32],
        "target": (entry.target or target)[:1024],
        "detail": json.dumps(entry.detail),
        "event_id": (entry.event_id or event_id)[:64],
    }


def _startup_audit(action: str) -> AuditEntry:
    """The audit entry of the admin user made or given GIMLETD_ADMIN_TOKEN at start."""
    return AuditEntry(
        at=_now(), login="gimletd", address="local", action=action, target=ADMIN_LOGIN,
        detail={"by": "start-up (GIMLETD_ADMIN_TOKEN, or the first start)"},
    )  # fmt: skip


def _audit_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        login=row.login,
        address=row.address,
        action=row.action,
        target=row.target,
        detail=json.loads(row.detail),
        event_id=row.event_id,
    )


def _user_row(session: Session, login: str) -> UserRow:
    row = session.scalar(select(UserRow).where(UserRow.login == login))
    if row is None:
        raise NotFound(f"user {login!r} does not exist")
    return row


def _user(row: UserRow | Row[Any] | SimpleNamespace) -> UserInfo:
    return UserInfo(
        login=row.login,
        role=Role(row.role),
        envs=json.loads(row.envs) if row.envs else None,
        created=row.created,
        token_issued=row.token_issued,
        expires_at=row.expires_at,
    )
