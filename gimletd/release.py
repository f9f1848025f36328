"""The release use cases: short functions combining the pure parts with a store and a repository.

`plan_artifact` decides, without I/O of its own, which environments of an
artifact are released and what their files are. `apply_queue` commits the
planned writes of one environment in acceptance order. The worker tasks in
`workers/` only call these two and record what they return.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gimletd.errors import ChartSourceError, GimletdError, GitOpsError, PushRejected
from gimletd.gitops import layout
from gimletd.gitops.repository import AppChange, GitopsRepository, WriteOutcome
from gimletd.logs import log_context
from gimletd.models import Artifact, Manifest, Release, ResultStatus
from gimletd.policy import deploy_matches
from gimletd.store import FailedEnvironment, GitopsWrite, PlannedWrite, Store
from gimletd.templating import resolve_manifest
from gimletd.variables import artifact_variables

log = logging.getLogger(__name__)

#: Turns a template-resolved environment config into the files of `<env>/<app>/`.
Renderer = Callable[[Manifest], dict[str, bytes]]


@dataclass
class Plan:
    """What an artifact event writes, what failed, and whether a failure is worth retrying."""

    writes: list[PlannedWrite] = field(default_factory=list)
    failures: list[FailedEnvironment] = field(default_factory=list)
    retryable: list[ChartSourceError] = field(default_factory=list)


def plan_artifact(
    artifact: Artifact,
    *,
    event_id: str,
    triggered_by: str,
    gitops_repo: str,
    render: Renderer,
    now: float,
) -> Plan:
    """Match every environment's deploy policy and render the ones that match.

    A failure in one environment (a missing template variable, a chart that
    cannot be fetched) is recorded for that environment only; the others are
    still planned.
    """
    plan = Plan()
    variables = artifact_variables(artifact)
    for manifest in artifact.environments:
        if not deploy_matches(manifest.deploy, artifact.version):
            continue
        resolved = manifest
        try:
            resolved = resolve_manifest(manifest, variables)
            files = render(resolved)
        except GimletdError as exc:
            # Named as resolved when templating got that far, as written otherwise.
            plan.failures.append(FailedEnvironment(resolved.env, resolved.app, str(exc)))
            if isinstance(exc, ChartSourceError):
                plan.retryable.append(exc)
            continue
        release = Release(
            app=resolved.app,
            env=resolved.env,
            artifact_id=artifact.id,
            triggered_by=triggered_by,
            version=artifact.version,
            gitops_repo=gitops_repo,
            created=int(now),
            event_id=event_id,
        )
        plan.writes.append(PlannedWrite(resolved.env, resolved.app, files, release))
    return plan


@dataclass(frozen=True)
class WriteReport:
    write_id: int
    env: str
    app: str
    status: ResultStatus
    commit: str = ""
    desc: str = ""


def apply_queue(
    store: Store,
    repo: GitopsRepository,
    env: str,
    *,
    push_attempts: int,
    max_attempts: int,
    keep_alive: Callable[[], None] = lambda: None,
) -> list[WriteReport]:
    """Commit every unfinished write of `env`, oldest first (I3). Call it under the env lock.

    Raises `GitOpsError` when the repository cannot be reached, leaving the
    current write unfinished so a later call retries it; after `max_attempts`
    the write is recorded as failed instead.
    """
    reports = []
    for write in store.unfinished_writes(repo.url, env):
        keep_alive()
        try:
            with log_context(event_id=write.event_id, env=write.env, app=write.app):
                report = _apply_write(store, repo, write, push_attempts=push_attempts)
        except GitOpsError as exc:
            if write.attempts + 1 < max_attempts:
                raise
            report = WriteReport(
                write.id, write.env, write.app, ResultStatus.FAILURE, desc=str(exc)
            )
        store.finish_write(
            report.write_id, report.status, commit_sha=report.commit, desc=report.desc
        )
        log.info(
            "gitops write %s/%s of event %s: %s %s",
            write.env,
            write.app,
            write.event_id,
            report.status.value,
            report.commit,
            extra={"event_id": write.event_id, "env": write.env, "app": write.app},
        )
        reports.append(report)
    return reports


def _apply_write(
    store: Store, repo: GitopsRepository, write: GitopsWrite, *, push_attempts: int
) -> WriteReport:
    store.count_write_attempt(write.id)
    if write.status is ResultStatus.APPLYING:
        # A previous attempt may have pushed before its worker died (I2).
        head = repo.fetch()
        if head is not None:
            found = repo.find_commit(
                head,
                since=write.base_sha or None,
                matches=lambda message: layout.is_commit_of(
                    message, write.event_id, write.env, write.app
                ),
            )
            if found is not None:
                return WriteReport(write.id, write.env, write.app, ResultStatus.SUCCESS, found)

    newest = store.last_applied_seq(repo.url, write.env, write.app)
    if newest is not None and newest > write.event_seq:
        return WriteReport(
            write.id,
            write.env,
            write.app,
            ResultStatus.SUPERSEDED,
            desc=f"a release accepted later was applied to {write.env}/{write.app} first",
        )

    release = write.release
    trailers = layout.CommitTrailers(
        event_id=write.event_id,
        artifact_id=release.artifact_id,
        triggered_by=release.triggered_by,
        env=write.env,
        app=write.app,
    )
    change = AppChange(
        env=write.env,
        app=write.app,
        files=layout.app_files(write.files, release),
        env_files={layout.RELEASE_FILE: layout.release_json(release)},
    )
    message = layout.deploy_message(write.env, write.app, release.triggered_by, trailers)
    for attempt in range(push_attempts):
        head = repo.fetch()
        store.start_write(write.id, base_sha=head or "")
        if head is not None and _already_released(repo, head, write):
            return WriteReport(
                write.id,
                write.env,
                write.app,
                ResultStatus.UNCHANGED,
                head,
                desc=f"already released: {write.env}/{write.app} runs {release.artifact_id}",
            )
        try:
            result = repo.write(change, message, head=head)
        except PushRejected:
            log.info("push of %s/%s rejected, re-applying on the new head", write.env, write.app)
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
            continue
        status = (
            ResultStatus.SUCCESS
            if result.outcome is WriteOutcome.COMMITTED
            else ResultStatus.UNCHANGED
        )
        return WriteReport(write.id, write.env, write.app, status, result.commit)
    raise GitOpsError(
        f"push of {write.env}/{write.app} was rejected {push_attempts} times: "
        "the remote branch keeps moving"
    )


def _already_released(repo: GitopsRepository, head: str, write: GitopsWrite) -> bool:
    """True when `<env>/<app>/` at `head` holds this artifact with exactly these files."""
    current = repo.list_dir(head, layout.app_dir(write.env, write.app))
    current_release = current.pop(layout.RELEASE_FILE, None)
    if current_release is None or current != write.files:
        return False
    try:
        return Release.model_validate_json(current_release).artifact_id == write.release.artifact_id
    except ValueError:
        return False
