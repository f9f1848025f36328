"""Flux's reports on applying GitOps commits: read them, and record what they say.

Flux's notification-controller posts an event (`generic` or `generic-hmac`
provider) each time a Kustomization reconciles. `read_flux_event` turns one
into a `FluxReport` without I/O. Statuses use the names the Go original's
clients know: `ReconciliationSucceeded` once applied, a reason ending in
`Failed` when not, `Progressing` in between.

`record_flux_report` stores the status of the reported commit and gives the
same final result to the earlier commits of that environment still waiting
for one: Flux applies the newest revision only, so it never reports on the
commits it skipped, though it applied them too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gimletd.errors import InputError
from gimletd.gitops.layout import public_repo_url
from gimletd.gitops.repository import GitopsRepository
from gimletd.models import (
    FLUX_APPLIED,
    FLUX_FAILED,
    FLUX_PROGRESSING,
    Release,
    ShortText,
    WriteKind,
)
from gimletd.notifications.notice import Notice, flux_notice
from gimletd.store import FluxChange, Store
from gimletd.webhooks import Ignored

#: The metadata mark of Flux's event for a finished apply (the Go original dropped these).
COMMIT_STATUS_KEY, COMMIT_STATUS_UPDATE = "commit_status", "update"
MESSAGE_LIMIT = 39_000
#: `main@sha1:<hex>`, `sha1:<hex>`, and the older `main/<hex>`. An OCI source's
#: `<tag>@sha256:<digest>` names no git commit.
_REVISION = re.compile(r"(?:sha1:|/|^)(?P<sha>[0-9a-f]{40})$")
#: How many commits still waiting for Flux are looked at when one is reported on.
AWAITING_LIMIT = 500


class FluxEventBody(BaseModel):
    """The fields of Flux's `Event` that are used; the rest is accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    involved_object: dict[str, Any] = Field(default_factory=dict, alias="involvedObject")
    severity: ShortText = "info"
    timestamp: ShortText = ""
    message: str = Field(default="", max_length=MESSAGE_LIMIT * 2)
    reason: ShortText = ""
    metadata: dict[ShortText, ShortText] = Field(default_factory=dict)
    reporting_controller: ShortText = Field(default="", alias="reportingController")


@dataclass(frozen=True)
class FluxReport:
    """What Flux said about one GitOps commit of one environment."""

    env: str
    commit: str
    status: str
    desc: str
    reason: str
    #: Flux's time of the event: an older report never overwrites a newer one.
    reported_at: float
    source: str

    @property
    def final(self) -> bool:
        return self.status != FLUX_PROGRESSING

    @property
    def applied(self) -> bool:
        return self.status == FLUX_APPLIED

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FluxReport:
        return cls(**data)


def read_flux_event(body: bytes, env: str, *, now: float) -> FluxReport | Ignored:
    """The report in a Flux event; `Ignored` when it is not about a git commit.

    :raise InputError: when the body is not a Flux event.
    """
    try:
        event = FluxEventBody.model_validate_json(body)
    except ValidationError as exc:
        raise InputError(f"not a Flux event: {exc.errors()[0]['msg']}") from None
    revision = _revision(event.metadata)
    if not revision:
        return Ignored("the event names no revision")
    match = _REVISION.search(revision)
    if match is None:
        return Ignored(f"revision {revision[:100]!r} is not a git commit")
    status, desc = _status(event)
    kind = str(event.involved_object.get("kind", ""))
    name = "/".join(str(event.involved_object.get(key, "")) for key in ("namespace", "name")).strip(
        "/"
    )
    return FluxReport(
        env=env,
        commit=match.group("sha"),
        status=status,
        desc=desc[:MESSAGE_LIMIT],
        reason=event.reason,
        reported_at=_timestamp(event.timestamp, now),
        source=f"{kind}/{name}" if kind else name,
    )


def _revision(metadata: dict[str, str]) -> str:
    """`revision`, or `<api group>/revision` as Flux sent it before stripping prefixes."""
    if metadata.get("revision"):
        return metadata["revision"]
    for key, value in metadata.items():
        if key.endswith("/revision") and value:
            return value
    return ""


def _metadata(metadata: dict[str, str], key: str) -> str:
    return metadata.get(key) or next(
        (value for name, value in metadata.items() if name.endswith(f"/{key}")), ""
    )


def _status(event: FluxEventBody) -> tuple[str, str]:
    """The Go-compatible status and its description.

    An error is final: its reason when that names a failure, else
    `ReconciliationFailed` with the reason kept in the description. An info
    event is a finished apply when it is the success event (marked
    `commit_status: update`, or `ReconciliationSucceeded`), progress otherwise.
    """
    reason, message = event.reason, event.message.strip()
    if event.severity == "error":
        if "Failed" in reason:
            return reason, message
        return FLUX_FAILED, f"{reason}: {message}" if reason else message
    marked = _metadata(event.metadata, COMMIT_STATUS_KEY) == COMMIT_STATUS_UPDATE
    if marked or reason == FLUX_APPLIED:
        return FLUX_APPLIED, message
    return FLUX_PROGRESSING, message


def _timestamp(raw: str, now: float) -> float:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return now


#: How long after a commit Flux applying it is still news: older skipped commits get
#: their status without a message (Flux's first report would announce all history).
NEWS_WINDOW = 24 * 3600.0


@dataclass(frozen=True)
class Recorded:
    """What a report changed, and the (notice id, target) deliveries that announce it."""

    changes: list[FluxChange]
    deliveries: list[tuple[str, str]]


def record_flux_report(
    store: Store,
    repo: GitopsRepository,
    report: FluxReport,
    *,
    targets_for: Callable[[Notice], list[str]],
    now: float | None = None,
) -> Recorded:
    """Record `report`, and its final result on the earlier commits it applied.

    Call it with the repository fetched and its release index synced, so the
    commits Flux skipped are known. The notices of the commits whose status
    changed are stored in the same transaction: one per app the commit
    changed, or one for the environment when it changed none.
    """
    now = time.time() if now is None else now
    implied: list[str] = []
    if report.final:
        awaiting = store.commits_awaiting_flux(repo.url, report.env, limit=AWAITING_LIMIT)
        implied = [
            sha for sha in awaiting if sha != report.commit and repo.includes(report.commit, sha)
        ]

    deliveries: list[tuple[str, str]] = []

    def notices(changes: list[FluxChange]) -> list[tuple[Notice, list[str]]]:
        built = []
        for change in changes:
            if not change.final:
                continue
            skipped = change.commit != report.commit
            if skipped and (change.release is None or change.created < now - NEWS_WINDOW):
                continue
            release = change.release or Release(
                app="",
                env=report.env,
                artifact_id="",
                triggered_by="",
                gitops_repo=public_repo_url(repo.url),
            )
            notice = flux_notice(
                release,
                change.kind or WriteKind.RELEASE,
                applied=report.applied,
                commit=change.commit,
                reported_commit=report.commit,
                reason=report.reason,
                message=report.desc,
                now=now,
            )
            targets = targets_for(notice)
            built.append((notice, targets))
            deliveries.extend((notice.id, target) for target in targets)
        return built

    changes = store.record_flux_statuses(
        repo.url,
        report.env,
        commit=report.commit,
        status=report.status,
        desc=report.desc,
        reported_at=report.reported_at,
        implied=implied,
        notices=notices,
    )
    return Recorded(changes, deliveries)
