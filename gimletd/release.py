"""The release use cases: short functions combining the pure parts with a store and a repository.

`plan_artifact` decides, without I/O of its own, which environments of an
artifact are released and what their files are. `apply_queue` commits the
planned writes of one environment in acceptance order. The worker tasks in
`workers/` only call these two and record what they return.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gimletd.errors import (
    ChartSourceError,
    GimletdError,
    GitOpsError,
    LockLost,
    PushRejected,
    WriteDeferred,
)
from gimletd.gitops import layout
from gimletd.gitops.repository import AppChange, GitopsRepository, WriteOutcome
from gimletd.logs import log_context
from gimletd.models import Artifact, Manifest, Release, ResultStatus
from gimletd.policy import deploy_matches
from gimletd.store import FailedEnvironment, GitopsWrite, PlannedWrite, Store
from gimletd.templating import resolve_manifest
from gimletd.variables import artifact_variables

log = logging.getLogger(__name__)

#: Longest wait before a failed GitOps write is tried again, in seconds.
MAX_RETRY_DELAY = 60.0

#: Turns a template-resolved environment config into the files of `<env>/<app>/`.
Renderer = Callable[[Manifest], dict[str, bytes]]


@dataclass
class Plan:
    """What an artifact event writes, what failed, and whether a failure is worth retrying."""

    writes: list[PlannedWrite] = field(default_factory=list)
    failures: list[FailedEnvironment] = field(default_factory=list)
    retryable: list[ChartSourceError] = field(default_factory=list)

    def takes(self, env: str, app: str) -> bool:
        """Whether `env`/`app` already has an outcome in this plan."""
        names = [(w.env, w.app) for w in self.writes] + [(f.env, f.app) for f in self.failures]
        return (env, app) in names

    def fail(self, env: str, app: str, reason: str) -> None:
        """Record a failed environment; a name already used gets a `#n` suffix to stay unique."""
        name, n = app, 1
        while self.takes(env, name):
            n += 1
            name = f"{app}#{n}"
        self.failures.append(FailedEnvironment(env, name, reason))


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
            plan.fail(resolved.env, resolved.app, str(exc))
            if isinstance(exc, ChartSourceError):
                plan.retryable.append(exc)
            continue
        if plan.takes(resolved.env, resolved.app):
            plan.fail(
                resolved.env,
                resolved.app,
                f"two environment configs of the artifact resolve to {resolved.env}/"
                f"{resolved.app}; only the first is released",
            )
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

    `keep_alive` renews the lock and raises `LockLost` when another worker took it
    over; that ends this call at once, without touching the write. Any other
    failure of a write (an unreachable remote, a full disk, a bug) counts as one
    attempt: the write is deferred and `WriteDeferred` raised, so the caller
    retries after its delay and later writes keep waiting behind it; after
    `max_attempts` the write is recorded as failed and the queue moves on.
    """
    reports = []
    for write in store.unfinished_writes(repo.url, env):
        waiting = write.not_before - time.time()
        if waiting > 0:
            # Its retry delay is not over: this drain ends, without counting an attempt.
            raise WriteDeferred(waiting, f"{write.env}/{write.app} waits for its retry")
        with log_context(event_id=write.event_id, env=write.env, app=write.app):
            if write.status is ResultStatus.APPLYING:
                # The worker that was applying it died (or its lock expired): an attempt.
                store.count_write_attempt(write.id)
                write = dataclasses.replace(write, attempts=write.attempts + 1)
            if write.attempts >= max_attempts:
                report = WriteReport(
                    write.id, write.env, write.app, ResultStatus.FAILURE,
                    desc=f"gave up after {write.attempts} attempts: the workers applying "
                    "it stopped before recording an outcome",
                )  # fmt: skip
            else:
                report = _attempt_write(
                    store,
                    repo,
                    write,
                    push_attempts=push_attempts,
                    max_attempts=max_attempts,
                    keep_alive=keep_alive,
                )
            if not store.finish_write(
                report.write_id, report.status, commit_sha=report.commit, desc=report.desc
            ):
                continue  # another worker recorded this write after our lock had expired
            log.info(
                "gitops write %s/%s of event %s: %s %s",
                write.env,
                write.app,
                write.event_id,
                report.status.value,
                report.commit,
            )
        reports.append(report)
    return reports


def _attempt_write(
    store: Store,
    repo: GitopsRepository,
    write: GitopsWrite,
    *,
    push_attempts: int,
    max_attempts: int,
    keep_alive: Callable[[], None],
) -> WriteReport:
    """One attempt at a write; a failure is deferred (WriteDeferred) or, the last time, reported.

    :raise LockLost: another worker took over the environment; nothing was recorded.
    :raise WriteDeferred: the attempt failed and the write waits for its retry delay.
    """
    try:
        return _apply_write(store, repo, write, push_attempts=push_attempts, keep_alive=keep_alive)
    except LockLost:
        raise
    except Exception as exc:
        if write.attempts + 1 >= max_attempts:
            return WriteReport(write.id, write.env, write.app, ResultStatus.FAILURE, desc=str(exc))
        delay = min(2.0 ** (write.attempts + 1), MAX_RETRY_DELAY)
        log.warning(
            "gitops write %s/%s failed, retrying in %.0fs: %s",
            write.env,
            write.app,
            delay,
            exc,
            exc_info=not isinstance(exc, GitOpsError),
        )
        store.defer_write(write.id, until=time.time() + delay, problem=str(exc))
        raise WriteDeferred(delay, str(exc)) from exc


def _apply_write(
    store: Store,
    repo: GitopsRepository,
    write: GitopsWrite,
    *,
    push_attempts: int,
    keep_alive: Callable[[], None],
) -> WriteReport:
    """Commit one write, re-checking on every try what may have changed meanwhile.

    Each try fetches the head, then looks for this write's own commit since the
    last base it was applied on (a worker that died after pushing, or one whose
    lock expired mid-write, may have pushed it: I2), and checks that no release
    accepted later was applied first (I3), before building and pushing.
    """
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
    # A write that was started before (a base is recorded) may have been pushed already.
    started = write.status is ResultStatus.APPLYING or bool(write.base_sha)
    base = write.base_sha if started else None

    def report(status: ResultStatus, commit: str = "", desc: str = "") -> WriteReport:
        return WriteReport(write.id, write.env, write.app, status, commit, desc)

    for attempt in range(push_attempts):
        keep_alive()
        head = repo.fetch()
        if head is not None and base is not None:
            found = repo.find_commit(
                head,
                since=base or None,
                matches=lambda m: layout.is_commit_of(m, write.event_id, write.env, write.app),
            )
            if found is not None:
                return report(ResultStatus.SUCCESS, found)
        newest = store.last_applied_seq(repo.url, write.env, write.app)
        if newest is not None and newest > write.event_seq:
            return report(
                ResultStatus.SUPERSEDED,
                desc=f"a release accepted later was applied to {write.env}/{write.app} first",
            )
        if head is not None and _already_released(repo, head, write):
            return report(
                ResultStatus.UNCHANGED,
                head,
                desc=f"already released: {write.env}/{write.app} runs {release.artifact_id}",
            )
        base = head or ""
        if not store.start_write(write.id, base_sha=base):
            raise LockLost(f"{write.env}/{write.app} was finished by another worker")
        keep_alive()
        try:
            result = repo.write(change, message, head=head)
        except PushRejected:
            log.info("push of %s/%s rejected, re-applying on the new head", write.env, write.app)
            # Rebuild at once: another writer won the race and is done. Only when that
            # keeps happening, spread the writers out a little.
            if attempt:
                time.sleep(random.uniform(0, 0.01 * attempt))
            continue
        if result.outcome is WriteOutcome.COMMITTED:
            return report(ResultStatus.SUCCESS, result.commit)
        return report(ResultStatus.UNCHANGED, result.commit)
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
