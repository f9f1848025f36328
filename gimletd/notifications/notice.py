"""What a notification says: a `Notice`, built without I/O from what just happened.

A notice is stored with the outcome it announces and sent later, so it holds
everything the messages need: env, app, the source version (short sha, branch
or tag, commit message, author), who triggered it, and the GitOps commit.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from gimletd.models import POLICY_TRIGGER, Model, Release, ResultStatus, Version, WriteKind


class NoticeKind(enum.StrEnum):
    """What a notice announces."""

    DEPLOY = "deploy"  # a deploy policy released an artifact
    RELEASE = "release"  # a person released an artifact
    ROLLBACK = "rollback"
    DELETE = "delete"  # a person deleted an app
    CLEANUP = "cleanup"  # a cleanup policy deleted a preview app
    FAILED = "failed"  # a release, rollback, delete or cleanup failed; `change` says which
    FLUX_APPLIED = "fluxApplied"  # Flux applied the GitOps commit
    FLUX_FAILED = "fluxFailed"  # Flux failed to apply the GitOps commit

    @property
    def failure(self) -> bool:
        return self in (NoticeKind.FAILED, NoticeKind.FLUX_FAILED)


class Notice(Model):
    """One thing that happened to one app in one environment, as the messages tell it."""

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    kind: NoticeKind
    #: What the GitOps commit does (or failed to do) to `<env>/<app>/`.
    change: WriteKind = WriteKind.RELEASE
    created: int
    env: str
    app: str = ""
    event_id: str = Field(default="", alias="eventId")
    triggered_by: str = Field(default="", alias="triggeredBy")
    artifact_id: str = Field(default="", alias="artifactId")
    version: Version | None = None
    gitops_repo: str = Field(default="", alias="gitopsRepo")
    gitops_commit: str = Field(default="", alias="gitopsCommit")
    #: Why it failed: the write's error, or Flux's message.
    error: str = ""
    #: The commit a rollback restored, and the commits it reverted.
    rollback_to: str = Field(default="", alias="rollbackTo")
    reverted: list[str] = Field(default_factory=list)
    #: Flux's reason (`ReconciliationSucceeded`, `HealthCheckFailed`, ...).
    flux_reason: str = Field(default="", alias="fluxReason")
    #: The commit Flux reported, when this one was applied with it (Flux skips commits).
    applied_with: str = Field(default="", alias="appliedWith")

    @property
    def by_policy(self) -> bool:
        return self.triggered_by == POLICY_TRIGGER


def write_notice(
    kind: WriteKind,
    status: ResultStatus,
    release: Release,
    *,
    commit: str,
    desc: str,
    now: float,
    version: Version | None = None,
    target_sha: str = "",
    reverted: Sequence[str] = (),
) -> Notice | None:
    """The notice of a GitOps write's outcome; None for outcomes nobody needs to hear of.

    Successes and failures are announced. A write that changed nothing
    (unchanged) or gave way to a newer one (superseded) is not.
    """
    if status is ResultStatus.SUCCESS:
        notice_kind = _success_kind(kind, release.triggered_by)
    elif status is ResultStatus.FAILURE:
        notice_kind = NoticeKind.FAILED
    else:
        return None
    return _about(
        release,
        kind=notice_kind,
        change=kind,
        created=int(now),
        version=version or release.version,
        gitops_commit=commit if status is ResultStatus.SUCCESS else "",
        error=desc if status is ResultStatus.FAILURE else "",
        rollback_to=target_sha,
        reverted=list(reverted),
    )


def flux_notice(
    release: Release,
    change: WriteKind,
    *,
    applied: bool,
    commit: str,
    reported_commit: str,
    reason: str,
    message: str,
    now: float,
) -> Notice:
    """The notice of Flux's result for the GitOps commit `commit` of `release`'s env/app."""
    return _about(
        release,
        kind=NoticeKind.FLUX_APPLIED if applied else NoticeKind.FLUX_FAILED,
        change=change,
        created=int(now),
        version=release.version,
        gitops_commit=commit,
        error="" if applied else message,
        flux_reason=reason,
        applied_with=reported_commit if reported_commit != commit else "",
    )


def _about(release: Release, **fields: Any) -> Notice:
    """A notice about what `release` (its env, app, artifact and trigger) became."""
    return Notice(
        env=release.env,
        app=release.app,
        event_id=release.event_id,
        triggered_by=release.triggered_by,
        artifact_id=release.artifact_id,
        gitops_repo=release.gitops_repo,
        **fields,
    )


def _success_kind(kind: WriteKind, triggered_by: str) -> NoticeKind:
    by_policy = triggered_by == POLICY_TRIGGER
    if kind is WriteKind.ROLLBACK:
        return NoticeKind.ROLLBACK
    if kind is WriteKind.DELETE:
        return NoticeKind.CLEANUP if by_policy else NoticeKind.DELETE
    return NoticeKind.DEPLOY if by_policy else NoticeKind.RELEASE
