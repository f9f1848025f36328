"""Inbound webhooks, without I/O: signatures, and GitHub deliveries read as cleanup reports.

GitHub signs each delivery with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
the raw body>`. A `delete` of a branch becomes a `branchDeleted` report and a
closed pull request (merged or not) a `prClosed` one, unless it came from a fork.
The `push` GitHub sends for the same branch deletion is ignored: the `delete`
event is the one acted on, and the branch state in the store drops any second
report of it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gimletd.models import CleanupEvent, Name

__all__ = ["CleanupReport", "Ignored", "github_cleanup_report", "signature_matches"]

#: `triggeredBy` of events reported by GitHub: the prefix, then the sender's login.
GITHUB_SENDER = "github:"


def signature_matches(
    secret: bytes,
    body: bytes,
    header: str | None,
    *,
    algorithms: frozenset[str] = frozenset({"sha256"}),
) -> bool:
    """Whether `header` (`<algorithm>=<hex>`) is the HMAC of `body` under `secret`.

    Compared in constant time; an unknown algorithm or a malformed header never matches.
    """
    if not header:
        return False
    algorithm, sep, digest = header.strip().partition("=")
    if not sep or algorithm.lower() not in algorithms:
        return False
    expected = hmac.new(secret, body, getattr(hashlib, algorithm.lower())).hexdigest()
    return hmac.compare_digest(expected.encode(), digest.lower().encode())


@dataclass(frozen=True)
class CleanupReport:
    """A branch deleted or a pull request closed in `repository`, as someone reported it."""

    kind: CleanupEvent
    repository: str
    branch: str
    triggered_by: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Ignored:
    """A delivery GimletD does not act on, and why."""

    reason: str


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Account(_Payload):
    login: Name = ""


class _Repository(_Payload):
    full_name: Name = Field(min_length=1)


class _Delete(_Payload):
    ref: Name = Field(min_length=1)
    ref_type: str
    repository: _Repository
    sender: _Account = Field(default_factory=_Account)


class _Ref(_Payload):
    ref: Name = Field(min_length=1)
    sha: Name = ""
    repo: _Repository | None = None


class _PullRequest(_Payload):
    head: _Ref
    merged: bool | None = None


class _PullRequestEvent(_Payload):
    action: str
    number: int = 0
    pull_request: _PullRequest
    repository: _Repository
    sender: _Account = Field(default_factory=_Account)


class _Push(_Payload):
    ref: str = ""
    deleted: bool = False


def github_cleanup_report(
    event_name: str, payload: Any, *, delivery: str = ""
) -> CleanupReport | Ignored:
    """What a GitHub delivery of `X-GitHub-Event: event_name` reports.

    :raise pydantic.ValidationError: a field the report needs is missing or has the wrong type.
    """
    if event_name == "delete":
        deleted = _Delete.model_validate(payload)
        if deleted.ref_type != "branch":
            return Ignored(f"a deleted {deleted.ref_type} has no preview apps")
        return CleanupReport(
            CleanupEvent.BRANCH_DELETED,
            deleted.repository.full_name,
            deleted.ref,
            GITHUB_SENDER + deleted.sender.login,
            _detail(deleted.repository.full_name, deleted.ref, delivery, deleted.sender.login),
        )
    if event_name == "pull_request":
        event = _PullRequestEvent.model_validate(payload)
        if event.action != "closed":
            return Ignored(f"pull_request {event.action}: only closed pull requests are acted on")
        head = event.pull_request.head
        if head.repo is None or head.repo.full_name != event.repository.full_name:
            return Ignored(
                f"pull request #{event.number} is from a fork: its branch name is not a branch "
                "of this repository, so anyone could name one to delete its preview apps; "
                "previews of forks are left to a cleanup ttl"
            )
        detail = _detail(event.repository.full_name, head.ref, delivery, event.sender.login)
        detail.update(number=event.number, merged=bool(event.pull_request.merged), sha=head.sha)
        return CleanupReport(
            CleanupEvent.PR_CLOSED,
            event.repository.full_name,
            head.ref,
            GITHUB_SENDER + event.sender.login,
            detail,
        )
    if event_name == "push":
        push = _Push.model_validate(payload)
        if push.deleted:
            return Ignored(f"the push deleting {push.ref}: its delete event is the one acted on")
        return Ignored("pushes are not acted on: CI sends artifacts")
    return Ignored(f"{event_name or 'an unnamed'} event is not acted on")


def _detail(repository: str, branch: str, delivery: str, sender: str) -> dict[str, Any]:
    return {
        "repository": repository,
        "branch": branch,
        "source": "github",
        "delivery": delivery,
        "sender": sender,
    }
