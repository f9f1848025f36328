"""Reports of deleted branches and closed pull requests, and the repositories polled for them.

`POST /api/events/branch-deleted` and `POST /api/events/pr-closed` let any SCM
or CI (GitLab, Bitbucket, a pipeline step) report what GitHub's webhook reports
on its own (`api/webhooks.py`). Both end in `accept_cleanup_report`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import Field, field_validator

from api.auth import audit, authenticate, current_user
from api.query import idempotency_key, json_body
from api.services import services
from gimletd.gitops.layout import public_repo_url
from gimletd.models import AuditEntry, CleanupEvent, Model, Name, check_ref_name
from gimletd.webhooks import CleanupReport

blueprint = Blueprint("cleanup", __name__, url_prefix="/api")
blueprint.before_request(authenticate)


class BranchDeletedRequest(Model):
    """`{repository, branch}`: the repository as artifacts name it (`version.repositoryName`)."""

    repository: Name = Field(min_length=1)
    branch: Name = Field(min_length=1)

    @field_validator("branch")
    @classmethod
    def _branch_is_a_ref(cls, value: str) -> str:
        return check_ref_name(value)


class PrClosedRequest(BranchDeletedRequest):
    """The pull request's source branch, and optionally its number and whether it was merged."""

    number: int | None = None
    merged: bool | None = None


@blueprint.post("/events/branch-deleted")
def branch_deleted() -> tuple[Response, int]:
    """Report a deleted branch: its preview apps are cleaned up by their cleanup policies."""
    body = BranchDeletedRequest.model_validate_json(json_body())
    report = _report(CleanupEvent.BRANCH_DELETED, body)
    return accept_cleanup_report(report, dedupe_key=_idempotency_key(report), audit=_audit(report))


@blueprint.post("/events/pr-closed")
def pr_closed() -> tuple[Response, int]:
    """Report a closed pull request, merged or not."""
    body = PrClosedRequest.model_validate_json(json_body())
    report = _report(CleanupEvent.PR_CLOSED, body, number=body.number, merged=body.merged)
    return accept_cleanup_report(report, dedupe_key=_idempotency_key(report), audit=_audit(report))


@blueprint.get("/appRepos")
def app_repos() -> Response:
    """The application repositories polled for deleted branches, and how their last poll went."""
    settings = services().settings
    return jsonify(
        [
            {
                "repository": repo.repository,
                "url": public_repo_url(settings.app_repo_url(repo.repository, repo.url)),
                "polledAt": repo.polled_at,
                "pollError": repo.poll_error,
            }
            for repo in services().store.app_repos()
        ]
    )


def accept_cleanup_report(
    report: CleanupReport, *, dedupe_key: str | None, audit: AuditEntry | None = None
) -> tuple[Response, int]:
    """Store a report and enqueue its event: 202 with the event, or 200 for a repeated report.

    A repeated report (the same delivery or idempotency key, or a branch
    deletion reported before by webhook, poll or API) answers the event of the
    first one, with `duplicate: true`, and creates nothing.
    """
    record = services().store.create_cleanup_event(
        report.kind,
        repository=report.repository,
        branch=report.branch,
        triggered_by=report.triggered_by,
        detail=report.detail,
        dedupe_key=dedupe_key,
        audit=audit,
    )
    if not record.created:
        return jsonify({**record.event.to_json(), "duplicate": True}), 200
    services().enqueuer.process_event(record.event.id)
    return jsonify(record.event.to_json()), 202


def _audit(report: CleanupReport) -> AuditEntry:
    return audit(f"report.{report.kind.value}", f"{report.repository} {report.branch}")


def _report(kind: CleanupEvent, body: BranchDeletedRequest, **extra: Any) -> CleanupReport:
    detail = {"repository": body.repository, "branch": body.branch, "source": "api", **extra}
    return CleanupReport(kind, body.repository, body.branch, current_user().login, detail)


def _idempotency_key(report: CleanupReport) -> str | None:
    """`Idempotency-Key`, so a retried pipeline step reports once.

    Scoped to the user and to what is reported: the same key sent with another
    branch or kind is another report, not a repeat.
    """
    return idempotency_key(
        current_user().login, report.kind.value, report.repository, report.branch
    )
