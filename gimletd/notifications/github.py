"""GitHub commit statuses on the source commit of an artifact, context `gitops/<env>`.

A release committed to the GitOps repository is `pending` until Flux reports:
`success` when it applied the commit, `failure` when it did not. A release
that failed before reaching git is a `failure` at once. Descriptions are cut
to GitHub's 140 characters; the target URL is the GitOps commit.
"""

from __future__ import annotations

import re
import time

from gimletd.models import WriteKind
from gimletd.notifications.delivery import (
    SENT,
    Outbound,
    Outcome,
    Reply,
    Verdict,
    judge_http,
    retry_after,
)
from gimletd.notifications.notice import Notice, NoticeKind
from gimletd.notifications.text import cut, gitops_commit_url

DEFAULT_API_URL = "https://api.github.com"
DESCRIPTION_LIMIT = 140
API_VERSION = "2022-11-28"
#: Without a `Retry-After` or reset time, GitHub asks for at least a minute's wait.
SECONDARY_LIMIT_WAIT = 60.0
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_KINDS = frozenset(
    {
        NoticeKind.DEPLOY,
        NoticeKind.RELEASE,
        NoticeKind.ROLLBACK,
        NoticeKind.FAILED,
        NoticeKind.FLUX_APPLIED,
        NoticeKind.FLUX_FAILED,
    }
)


def applies(notice: Notice) -> bool:
    """Whether the notice is about a source commit on GitHub that a status can be set on.

    Deletes and cleanups are about an app, not a version, so they set none.
    """
    version = notice.version
    return (
        notice.kind in _KINDS
        and notice.change is not WriteKind.DELETE
        and version is not None
        and bool(_REPOSITORY.match(version.repository_name))
        and bool(_SHA.match(version.sha))
    )


def state(notice: Notice) -> tuple[str, str]:
    """The status `state` and `description` the notice sets."""
    env, kind = notice.env, notice.kind
    if kind is NoticeKind.FLUX_APPLIED:
        return "success", f"Applied in {env}"
    if kind is NoticeKind.FLUX_FAILED:
        reason = f"{notice.flux_reason}: " if notice.flux_reason else ""
        return "failure", cut(f"{reason}{notice.error}", DESCRIPTION_LIMIT)
    if kind is NoticeKind.FAILED:
        return "failure", cut(f"Release to {env} failed: {notice.error}", DESCRIPTION_LIMIT)
    if kind is NoticeKind.ROLLBACK:
        who = notice.triggered_by
        return "pending", cut(f"{who} rolled {env} back to this version; waiting for Flux",
                              DESCRIPTION_LIMIT)  # fmt: skip
    return "pending", cut(f"Committed to {env}; waiting for Flux to apply", DESCRIPTION_LIMIT)


def is_pending(notice: Notice) -> bool:
    """Whether the notice sets `pending`: it waits for Flux's report."""
    return state(notice)[0] == "pending"


def request(notice: Notice, *, token: str, api_url: str) -> Outbound:
    """`POST /repos/{owner}/{repo}/statuses/{sha}`; only for notices `applies` accepts."""
    assert notice.version is not None
    status, description = state(notice)
    return Outbound.json(
        f"{api_url.rstrip('/')}/repos/{notice.version.repository_name}/statuses/"
        f"{notice.version.sha}",
        {
            "state": status,
            "target_url": gitops_commit_url(notice),
            "description": description,
            "context": f"gitops/{notice.env}",
        },
        {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        },
    )


def judge(reply: Reply, *, now: float | None = None) -> Outcome:
    if reply.status == 403 and _rate_limited(reply):
        return Outcome(
            Verdict.RETRY, "GitHub's rate limit is exhausted (403)", _limit_wait(reply, now)
        )
    if reply.status == 404:
        return Outcome(
            Verdict.GIVE_UP,
            "GitHub does not know the repository or commit, or the token cannot see it (404)",
        )
    if reply.status == 422:
        return Outcome(Verdict.GIVE_UP, f"GitHub refused the status (422): {_errors(reply)}")
    if reply.status == 429:
        return Outcome(Verdict.RETRY, "GitHub is rate limiting (429)", _limit_wait(reply, now))
    return judge_http(reply, "GitHub") or SENT


def _rate_limited(reply: Reply) -> bool:
    """A 403 is a rate limit only with the signals GitHub sends with one, else a refusal."""
    return "retry-after" in reply.headers or reply.headers.get("x-ratelimit-remaining") == "0"


def _limit_wait(reply: Reply, now: float | None) -> float:
    wait = retry_after(reply.headers, now=now)
    if wait is not None:
        return wait
    reset = reply.headers.get("x-ratelimit-reset", "")
    if reply.headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(float(reset) - (now or time.time()), 0.0)
    return SECONDARY_LIMIT_WAIT


def _errors(reply: Reply) -> str:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        messages = [str(e.get("message", e)) for e in body["errors"] if isinstance(e, dict)]
        if messages:
            return "; ".join(messages)
    return reply.excerpt()
