"""The shapes of the API's answers that are not a core model, for the OpenAPI document.

Each is what a handler answers; `tests/api/test_openapi.py` checks the live
answers against the document built from these and the core models.
"""

from __future__ import annotations

from pydantic import Field

from gimletd.models import Artifact, EnvLock, Event, Hold, Model, UserInfo


class ErrorBody(Model):
    """Every 4xx and 5xx answer: what went wrong, and details where there are some."""

    message: str


class Root(Model):
    name: str
    api: str


class Health(Model):
    status: str


class Ready(Model):
    ready: bool
    database: str
    redis: str


class ArtifactAccepted(Artifact):
    """A stored artifact with the event that releases it by policy.

    `duplicate` when it answers a push repeated with the same `Idempotency-Key`.
    """

    event_id: str = Field(alias="eventId")
    duplicate: bool | None = None


class EventAnswer(Event):
    """An event as accepted: `duplicate` when it was the first report of a repeated one."""

    duplicate: bool | None = None


class Ignored(Model):
    """A delivery that was understood and not acted on, and why."""

    ignored: str


class Pong(Model):
    message: str


class EnvSummary(Model):
    name: str
    apps: list[str]
    gitops_repo: str = Field(alias="gitopsRepo")
    lock: EnvLock | None = None


class GitopsRepos(Model):
    gitops_repo: str = Field(alias="gitopsRepo")
    gitops_repos: dict[str, str] = Field(alias="gitopsRepos")


class HoldLifted(Model):
    lifted: Hold
    lifted_by: str = Field(alias="liftedBy")


class Unlocked(Model):
    unlocked: EnvLock
    unlocked_by: str = Field(alias="unlockedBy")


class QueuedWrite(Model):
    event_id: str = Field(alias="eventId")
    env: str
    app: str
    kind: str
    artifact_id: str = Field(alias="artifactId")
    triggered_by: str = Field(alias="triggeredBy")
    status: str
    attempts: int
    reason: str


class Queue(Model):
    env: str
    gitops_repo: str = Field(alias="gitopsRepo")
    lock: EnvLock | None = None
    writes: list[QueuedWrite]


class AppRepoInfo(Model):
    repository: str
    url: str
    polled_at: float | None = Field(default=None, alias="polledAt")
    poll_error: str = Field(alias="pollError")


class UserWithToken(UserInfo):
    """A user as created or given a new token: the token is shown this once."""

    token: str


class UserDeleted(Model):
    deleted: UserInfo
