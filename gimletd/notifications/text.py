"""The words of a notification, shared by every provider: headline, facts, links. Pure."""

from __future__ import annotations

import re

from gimletd.gitops.layout import commit_web_url
from gimletd.models import Version, WriteKind
from gimletd.notifications.notice import Notice, NoticeKind

ELLIPSIS = "…"
#: http(s), a host, and no whitespace, quotes, `<`, `>` or `|`.
_WEB_URL = re.compile(r"^https?://[^\s<>|\"'`]+$")
SHORT_SHA = 8

_FAILED_CHANGE = {
    WriteKind.RELEASE: "Release",
    WriteKind.ROLLBACK: "Rollback",
    WriteKind.DELETE: "Delete",
}


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, an ellipsis marking a cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def short(sha: str) -> str:
    return sha[:SHORT_SHA]


def headline(notice: Notice) -> str:
    """One line saying what happened, such as `jane released frontend to staging`."""
    app, env, who = notice.app or "the environment", notice.env, notice.triggered_by or "someone"
    kind = notice.kind
    if kind is NoticeKind.DEPLOY:
        return f"Deployed {app} to {env}"
    if kind is NoticeKind.RELEASE:
        return f"{who} released {app} to {env}"
    if kind is NoticeKind.ROLLBACK:
        return f"{who} rolled back {app} in {env}"
    if kind is NoticeKind.DELETE:
        return f"{who} deleted {app} from {env}"
    if kind is NoticeKind.CLEANUP:
        return f"Cleaned up preview app {app} in {env}"
    if kind is NoticeKind.FAILED:
        change = "Cleanup" if notice.change is WriteKind.DELETE and notice.by_policy else None
        return f"{change or _FAILED_CHANGE[notice.change]} of {app} in {env} failed"
    subject = app if notice.app else f"GitOps commit {short(notice.gitops_commit)}"
    if kind is NoticeKind.FLUX_APPLIED:
        if notice.change is WriteKind.DELETE and notice.app:
            return f"Flux removed {app} from {env}"
        return f"Flux applied {subject} in {env}"
    return f"Flux failed to apply {subject} in {env}"


def version_line(version: Version | None) -> str:
    """`1a2b3c4d on main` or `1a2b3c4d, tag v1.2.0`; "" without a version."""
    if version is None or not version.sha:
        return ""
    if version.tag:
        return f"{short(version.sha)}, tag {version.tag}"
    if version.branch:
        return f"{short(version.sha)} on {version.branch}"
    return short(version.sha)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def facts(notice: Notice) -> list[tuple[str, str]]:
    """Labelled facts about the notice, in display order; empty ones are left out."""
    version = notice.version
    rows = [
        ("Environment", notice.env),
        ("App", notice.app),
        ("Version", version_line(version)),
        ("Commit message", first_line(version.message) if version else ""),
        ("Author", version.author_name if version else ""),
        ("Triggered by", notice.triggered_by),
        ("GitOps commit", short(notice.gitops_commit)),
        ("Applied with", short(notice.applied_with)),
        ("Rolled back to", short(notice.rollback_to)),
        ("Reverted", ", ".join(short(sha) for sha in notice.reverted)),
        ("Flux reason", notice.flux_reason if notice.kind.failure else ""),
    ]
    return [(label, value) for label, value in rows if value]


def web_url(url: str) -> str | None:
    """`url` if it is a plain http(s) URL, safe inside Slack's `<url|label>` and Discord links."""
    return url if _WEB_URL.match(url) else None


def links(notice: Notice) -> list[tuple[str, str]]:
    """(label, URL) of the source commit and the GitOps commit, where there are pages for them.

    The source commit's URL comes from the artifact: one that is not a plain
    http(s) URL (say it smuggles `|x> <!channel>` into Slack's markup) is left out.
    """
    found = []
    source = web_url(notice.version.url) if notice.version is not None else None
    if source is not None:
        found.append(("Source commit", source))
    gitops = gitops_commit_url(notice)
    if gitops is not None:
        found.append(("GitOps commit", gitops))
    return found


def gitops_commit_url(notice: Notice) -> str | None:
    """The web page of the notice's GitOps commit, when the GitOps repository has pages."""
    return commit_web_url(notice.gitops_repo, notice.gitops_commit)


def plain_text(notice: Notice) -> str:
    """The whole message as plain text: headline, error, facts."""
    lines = [headline(notice)]
    if notice.error:
        lines.append(f"Error: {notice.error}")
    lines.extend(f"{label}: {value}" for label, value in facts(notice))
    return "\n".join(lines)
