"""The release use cases: short functions combining the pure parts with a store and a repository.

`plan_artifact` decides, without I/O of its own, which environments of an
artifact are released and what their files are; `plan_operation` does the same
for a rollback or delete someone asked for. `apply_queue` commits the planned
writes of one environment in acceptance order, keeping back what an
environment lock or a hold keeps back. The worker tasks in `workers/` only
call these and record what they return.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gimletd import metrics
from gimletd.errors import (
    ChartSourceError,
    GimletdError,
    GitOpsError,
    LockLost,
    PushRejected,
    StoreUnavailable,
    WriteDeferred,
)
from gimletd.gitops import layout
from gimletd.gitops.repository import AppChange, GitopsRepository
from gimletd.history import index_entries, reverted_commits, sync_index
from gimletd.logs import log_context
from gimletd.models import (
    TEMPLATE_MARK,
    Artifact,
    EnvLock,
    Hold,
    Manifest,
    Release,
    ResultStatus,
    Version,
    WriteKind,
)
from gimletd.notifications.notice import Notice, write_notice
from gimletd.policy import deploy_matches
from gimletd.store import (
    FailedEnvironment,
    GitopsWrite,
    PlannedWrite,
    PushedCommits,
    Store,
    WriteReport,
)
from gimletd.templating import resolve_manifest
from gimletd.variables import artifact_variables

log = logging.getLogger(__name__)

#: Longest wait before a failed GitOps write is tried again, in seconds.
MAX_RETRY_DELAY = 60.0
#: Most releases committed one after another and pushed at once.
MAX_BATCH = 25

#: Turns a template-resolved environment config into the files of `<env>/<app>/`.
Renderer = Callable[[Manifest], dict[str, bytes]]
#: The GitOps repository an environment is written to.
RepoForEnv = Callable[[str], str]
#: The notification targets that take a notice (none when notifications are off).
TargetsFor = Callable[[Notice], list[str]]
#: Queues the sending of stored (notice id, target) deliveries.
SendDeliveries = Callable[[list[tuple[str, str]]], None]


@dataclass(frozen=True)
class Target:
    """The environment (and app, when given) an ad-hoc release asks for."""

    env: str
    app: str | None = None

    def matches(self, manifest: Manifest) -> bool:
        return manifest.env == self.env and self.app in (None, manifest.app)


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

    def fail(self, gitops_repo: str, env: str, app: str, reason: str) -> None:
        """Record a failed environment; a name already used gets a `#n` suffix to stay unique."""
        name, n = app, 1
        while self.takes(env, name):
            n += 1
            name = f"{app}#{n}"
        self.failures.append(FailedEnvironment(gitops_repo, env, name, reason))


def release_targets(artifact: Artifact) -> list[tuple[str, str]]:
    """The (env, app) pairs an artifact can be released to, names resolved where they can be."""
    variables = artifact_variables(artifact)
    targets = []
    for manifest in artifact.environments:
        # A template that fails is reported when released; named as written until then.
        with contextlib.suppress(GimletdError):
            manifest = resolve_manifest(manifest, variables)
        targets.append((manifest.env, manifest.app))
    return targets


def plan_artifact(
    artifact: Artifact,
    *,
    event_id: str,
    triggered_by: str,
    gitops_repo_for: RepoForEnv,
    render: Renderer,
    now: float,
    target: Target | None = None,
    forced: bool = False,
) -> Plan:
    """Render the environments an artifact is released to.

    Those whose deploy policy matches, or with a `target` (an ad-hoc release)
    the environment configs it names, whatever their policy. A failure in one
    environment (a missing template variable, a chart that cannot be fetched)
    is recorded for that environment only; the others are still planned.
    """
    plan = Plan()
    variables = artifact_variables(artifact)
    for manifest in artifact.environments:
        if target is None and not deploy_matches(manifest.deploy, artifact.version):
            continue
        if target is not None and TEMPLATE_MARK not in manifest.env and manifest.env != target.env:
            continue
        resolved = manifest
        try:
            resolved = resolve_manifest(manifest, variables)
            if target is not None and not target.matches(resolved):
                continue
            files = render(resolved)
        except GimletdError as exc:
            # Named as resolved when templating got that far, as written otherwise.
            plan.fail(gitops_repo_for(resolved.env), resolved.env, resolved.app, str(exc))
            if isinstance(exc, ChartSourceError):
                plan.retryable.append(exc)
            continue
        gitops_repo = gitops_repo_for(resolved.env)
        if plan.takes(resolved.env, resolved.app):
            plan.fail(
                gitops_repo,
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
            gitops_repo=layout.public_repo_url(gitops_repo),
            created=int(now),
            event_id=event_id,
        )
        plan.writes.append(
            PlannedWrite(gitops_repo, resolved.env, resolved.app, files, release, forced=forced)
        )
    if target is not None and not plan.writes and not plan.failures:
        app = target.app or "*"
        plan.fail(
            gitops_repo_for(target.env),
            target.env,
            app,
            f"artifact {artifact.id} has no environment config for {target.env}/{app}",
        )
    return plan


def failure_notices(
    failures: Sequence[FailedEnvironment],
    kind: WriteKind,
    *,
    event_id: str,
    triggered_by: str,
    artifact: Artifact | None,
    now: float,
) -> list[Notice]:
    """The notices of environments an event failed before writing anything (a missing variable)."""
    notices = []
    for failure in failures:
        release = Release(
            app=failure.app,
            env=failure.env,
            artifact_id=artifact.id if artifact is not None else "",
            triggered_by=triggered_by,
            version=artifact.version if artifact is not None else None,
            gitops_repo=layout.public_repo_url(failure.gitops_repo),
            event_id=event_id,
        )
        notice = write_notice(
            kind, ResultStatus.FAILURE, release, commit="", desc=failure.reason, now=now
        )
        if notice is not None:
            notices.append(notice)
    return notices


def plan_operation(
    kind: WriteKind,
    *,
    gitops_repo: str,
    env: str,
    app: str,
    event_id: str,
    triggered_by: str,
    now: float,
    target_sha: str = "",
    artifact_id: str = "",
    forced: bool = False,
) -> PlannedWrite:
    """The write of a rollback (to `target_sha`) or a delete; its files are read when applied."""
    release = Release(
        app=app,
        env=env,
        artifact_id=artifact_id,
        triggered_by=triggered_by,
        gitops_repo=layout.public_repo_url(gitops_repo),
        created=int(now),
        event_id=event_id,
    )
    return PlannedWrite(
        gitops_repo, env, app, {}, release, kind=kind, target_sha=target_sha, forced=forced
    )


@dataclass(frozen=True)
class QueueResult:
    """What a drain applied, and which writes it left waiting for a lock or a hold."""

    reports: list[WriteReport]
    waiting: list[int]


def waiting_reason(write: GitopsWrite, lock: EnvLock | None, hold: Hold | None) -> str | None:
    """Why a write cannot be applied now, or None when it can. Pure.

    An environment lock keeps back every write not forced by an admin; a hold
    keeps back policy deploys of its app.
    """
    if lock is not None and not write.forced:
        return f"waiting for the lock of {write.env} to be lifted: {lock.reason} ({lock.locked_by})"
    if hold is not None and write.by_policy:
        return f"held: {hold.reason}"
    return None


def newer_policy_deploy(write: GitopsWrite, queued_after: list[GitopsWrite]) -> bool:
    """True when a policy deploy of the same env/app is queued behind this policy deploy. Pure."""
    return write.by_policy and any(
        later.by_policy and (later.env, later.app) == (write.env, write.app)
        for later in queued_after
    )


def apply_queue(
    store: Store,
    repo: GitopsRepository,
    env: str,
    *,
    push_attempts: int,
    max_attempts: int,
    keep_alive: Callable[[], None] = lambda: None,
    targets_for: TargetsFor = lambda _: [],
    send: SendDeliveries = lambda _: None,
) -> QueueResult:
    """Commit every unfinished write of `env`, oldest first (I3). Call it under the env lock.

    Writes kept back by the environment's lock or a hold stay queued (see
    `waiting_reason`); later writes of other apps go ahead of them. A policy
    deploy with a newer policy deploy of its app queued behind it is recorded
    as superseded: only the newest is committed.

    Policy deploys queued one after another are committed one after another,
    each with its own commit and trailers, and pushed once (up to MAX_BATCH); a
    rollback, a delete or a release by a person is pushed and recorded on its
    own, so the hold it places or lifts is seen by the writes behind it.

    `keep_alive` renews the lock and raises `LockLost` when another worker took it
    over; that ends this call at once, without touching the write. Any other
    failure of a push (an unreachable remote, a full disk, a bug) counts as one
    attempt of each write in it: they are deferred and `WriteDeferred` raised, so
    the caller retries after the delay and later writes keep waiting behind them;
    after `max_attempts` a write is recorded as failed and the queue moves on,
    once its commit was looked for on the remote when an attempt may have pushed
    it (found, it is a success: `_give_up`).

    Each outcome is recorded with its notice (see `write_notice`) for the
    targets `targets_for` names, and `send` queues its deliveries at once, so
    a drain that ends in `WriteDeferred` or `LockLost` leaves none to the sweep.
    The outcomes of one push, and those settled without a commit since the last
    (superseded, given up), are recorded in one transaction: a drain pays a
    database commit per push, not per write. A write given up but found pushed
    with a hold to place or lift is recorded at once, before the writes behind
    it. A drain that stops before recording them leaves them unfinished, and the
    next drain settles them again.
    """
    reports: list[WriteReport] = []
    waiting: list[int] = []
    remote = _RemoteLook(store, repo, keep_alive)
    lock = store.env_lock(repo.url, env)
    queue = store.unfinished_writes(repo.url, env)
    writes = {write.id: write for write in queue}
    position = {write.id: index for index, write in enumerate(queue)}
    batch: list[GitopsWrite] = []
    #: Outcomes that needed no commit (superseded, given up): recorded with the next push's.
    settled: list[WriteReport] = []

    def record(outcomes: list[WriteReport], pushed: PushedCommits | None) -> None:
        """Record outcomes in one transaction, in queue order; then log them, send notices.

        The commits `pushed` enter the release index in the same transaction.
        """
        outcomes = sorted(outcomes, key=lambda report: position[report.write_id])
        # Per write id, its notice and the targets it goes to.
        announced: dict[int, tuple[Notice, list[str]]] = {}
        for report in outcomes:
            write = writes[report.write_id]
            notice = write_notice(
                write.kind,
                report.status,
                write.release,
                commit=report.commit,
                desc=report.desc,
                now=time.time(),
                version=report.version,
                target_sha=write.target_sha,
                reverted=report.reverted,
            )
            if notice is not None:
                announced[report.write_id] = (notice, targets_for(notice))
        recorded = store.finish_writes(
            outcomes,
            notices={write_id: [pair] for write_id, pair in announced.items()},
            pushed=pushed,
        )
        deliveries: list[tuple[str, str]] = []
        for report in outcomes:
            if report.write_id not in recorded:
                continue  # another worker recorded this write after our lock had expired
            write = writes[report.write_id]
            with log_context(event_id=write.event_id, env=write.env, app=write.app):
                log.info(
                    "gitops %s %s/%s of event %s: %s %s",
                    write.kind.value,
                    write.env,
                    write.app,
                    write.event_id,
                    report.status.value,
                    report.commit,
                )
            reports.append(report)
            if report.write_id in announced:
                notice, targets = announced[report.write_id]
                deliveries.extend((notice.id, target) for target in targets)
        if deliveries:
            send(deliveries)

    def flush() -> None:
        attempt = _Attempt([])
        if batch:
            attempt = _attempt_batch(
                store,
                repo,
                list(batch),
                push_attempts=push_attempts,
                max_attempts=max_attempts,
                keep_alive=keep_alive,
            )
            batch.clear()
        if settled or attempt.outcomes:
            record(settled + attempt.outcomes, attempt.pushed)
            settled.clear()
        if attempt.deferred is not None:
            raise attempt.deferred

    for index, write in enumerate(queue):
        if waiting_reason(write, lock, store.hold(repo.url, write.env, write.app)) is not None:
            waiting.append(write.id)
            continue
        waits = write.not_before - time.time()
        if waits > 0:
            # Its retry delay is not over: this drain ends, without counting an attempt.
            flush()
            raise WriteDeferred(waits, f"{write.env}/{write.app} waits for its retry")
        write, outcome = _settle(
            store, write, queue[index + 1 :], max_attempts=max_attempts, remote=remote
        )
        if outcome is not None:
            settled.append(outcome)
            if outcome.hold is not None or outcome.lift_hold:
                flush()  # a write given up found pushed: the writes behind see its hold
            continue
        # A rollback or delete reads the index; a release by a person may place or lift a
        # hold that the next policy deploy must see. Each is pushed and recorded on its own.
        alone = not write.by_policy
        if alone:
            flush()
        batch.append(write)
        if alone or len(batch) >= MAX_BATCH:
            flush()
    flush()
    return QueueResult(reports, waiting)


#: The base recorded for a write started on a branch with no commit yet: git's null object
#: id. A write's base says it was started, and may have been pushed, even with no head:
#: "" means never started.
EMPTY_BRANCH = "0" * 40


def _settle(
    store: Store,
    write: GitopsWrite,
    queued_after: list[GitopsWrite],
    *,
    max_attempts: int,
    remote: _RemoteLook,
) -> tuple[GitopsWrite, WriteReport | None]:
    """The write with its attempts counted, and its outcome when it needs no commit."""
    if write.status is ResultStatus.APPLYING:
        # The worker that was applying it died (or its lock expired): an attempt.
        store.count_write_attempt(write.id)
        write = dataclasses.replace(write, attempts=write.attempts + 1, problem="")
    if write.attempts >= max_attempts:
        return write, remote.give_up(write)
    if not write.started and newer_policy_deploy(write, queued_after):
        return write, WriteReport(
            write.id, write.env, write.app, ResultStatus.SUPERSEDED,
            desc=f"a newer policy deploy of {write.env}/{write.app} was queued behind it",
        )  # fmt: skip
    return write, None


class _RemoteLook:
    """Gives up writes out of attempts, looking for their commits on one fetch per drain."""

    def __init__(
        self, store: Store, repo: GitopsRepository, keep_alive: Callable[[], None]
    ) -> None:
        self._store, self._repo, self._keep_alive = store, repo, keep_alive
        self._head: str | None = None
        self._problem: str | None = None  # why the remote could not be searched
        self._fetched = False

    def give_up(self, write: GitopsWrite) -> WriteReport:
        """The outcome of a write out of attempts: failed, unless its commit landed after all.

        A started write may have been pushed by the attempt that used up its
        budget: its worker died before recording, or the push landed and then
        failed to say so. Recorded as failed, its commit would run unrecorded,
        and a rollback's app unprotected; so the remote is searched for it first
        (I2). When that search fails the write fails all the same, saying so,
        so that every event ends (I5); only the store going away is raised.
        """
        why = write.problem or "the workers applying it stopped before recording an outcome"
        reason = f"gave up after {write.attempts} attempts: {why}"
        if write.started:
            try:
                found = _own_commit(self._store, self._repo, write, self._fetch(), write.base_sha)
            except (StoreUnavailable, LockLost):
                raise
            except Exception as exc:
                if not isinstance(exc, GitOpsError):
                    log.exception("looking for the commit of %s/%s failed", write.env, write.app)
                reason += f"; whether its commit reached the remote could not be checked: {exc}"
            else:
                if found is not None:
                    return found
        return WriteReport(write.id, write.env, write.app, ResultStatus.FAILURE, desc=reason)

    def _fetch(self) -> str | None:
        """The remote head, fetched once per drain; a failed fetch is not tried again."""
        if not self._fetched:
            self._fetched = True
            self._keep_alive()
            try:
                self._head = self._repo.fetch()
            except GitOpsError as exc:
                self._problem = str(exc)
        if self._problem is not None:
            raise GitOpsError(self._problem)
        return self._head


@dataclass(frozen=True)
class _Attempt:
    """How an attempt at a batch ended: its outcomes, the commits it pushed, or its deferral."""

    outcomes: list[WriteReport]
    pushed: PushedCommits | None = None
    deferred: WriteDeferred | None = None


def _attempt_batch(
    store: Store,
    repo: GitopsRepository,
    batch: list[GitopsWrite],
    *,
    push_attempts: int,
    max_attempts: int,
    keep_alive: Callable[[], None],
) -> _Attempt:
    """One attempt at pushing a batch: its outcomes, or the failure that defers it.

    A write out of attempts that no attempt can have pushed is reported failed;
    the others are deferred (one that may have been pushed even out of attempts,
    for the next drain to look for its commit) and the returned `WriteDeferred`
    says for how long.

    :raise LockLost: another worker took over the environment; nothing was recorded.
    """
    progress = _Progress()
    try:
        with metrics.WRITE_SECONDS.time():
            return _apply_batch(
                store,
                repo,
                batch,
                push_attempts=push_attempts,
                keep_alive=keep_alive,
                progress=progress,
            )
    except LockLost:
        raise
    except Exception as exc:
        failed = []
        delay = min(2.0 ** (min(w.attempts for w in batch) + 1), MAX_RETRY_DELAY)
        for write in batch:
            # One that may have been pushed is deferred even out of attempts: the next
            # drain gives it up only after looking for its commit (`_give_up`).
            maybe_pushed = progress.pushing or write.started
            if write.attempts + 1 >= max_attempts and not maybe_pushed:
                failed.append(
                    WriteReport(
                        write.id,
                        write.env,
                        write.app,
                        ResultStatus.FAILURE,
                        desc=f"gave up after {write.attempts + 1} attempts: {exc}",
                    )
                )
            else:
                store.defer_write(
                    write.id,
                    until=time.time() + delay,
                    problem=str(exc),
                    # Started by this attempt, which pushed nothing: as if never started.
                    unstart=not progress.pushing and not write.started,
                )
                metrics.WRITE_RETRIES.inc()
        deferred = WriteDeferred(delay, str(exc)) if len(failed) < len(batch) else None
        given_up = {report.write_id for report in failed}
        for write in batch:  # a line per write, so each release's trail shows its retries
            log.warning(
                "gitops write of %s/%s of event %s failed, %s: %s",
                write.env,
                write.app,
                write.event_id,
                "out of attempts" if write.id in given_up else f"retrying in {delay:.0f}s",
                exc,
                exc_info=not isinstance(exc, GitOpsError) and write is batch[0],
                extra={"event_id": write.event_id, "env": write.env, "app": write.app},
            )
        if deferred is not None:
            deferred.__cause__ = exc
        return _Attempt(failed, deferred=deferred)


@dataclass
class _Progress:
    """How far an attempt at a batch got: whether it tried a push, which may have landed."""

    pushing: bool = False


@dataclass(frozen=True)
class _Meaning:
    """What a write's commit means once pushed: the hold it places or lifts, the version it
    names (of what a rollback restores or a delete removes), the commits a rollback reverts."""

    hold: Hold | None = None
    lift_hold: bool = False
    version: Version | None = None
    reverted: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Commit:
    """What a write commits on a given head, and what it means once pushed."""

    change: AppChange
    message: str
    meaning: _Meaning


def _apply_batch(
    store: Store,
    repo: GitopsRepository,
    batch: list[GitopsWrite],
    *,
    push_attempts: int,
    keep_alive: Callable[[], None],
    progress: _Progress,
) -> _Attempt:
    """Commit a batch of writes one after another and push once, re-checking every try.

    Returns the outcomes, with the commits pushed and their index entries.

    The writes are marked started once, before the first fetch, on the head
    last seen: every commit this drain makes lands after that base, and no
    database write sits between a fetch and its push, where it would widen
    the window for another writer's push to win the race.

    Each try fetches the head, then, for each write, looks for the write's own
    commit since its base (a worker that died after pushing, or one whose lock
    expired mid-write, may have pushed it: I2) and checks that no release
    accepted later was applied first (I3), before chaining its commit on the
    previous one.
    """
    keep_alive()
    # A new clone has seen no head yet: its first fetch gives the base.
    base = repo.known_head() or repo.fetch() or EMPTY_BRANCH
    if not store.start_writes([w.id for w in batch], base_sha=base):
        names = ", ".join(f"{w.env}/{w.app}" for w in batch)
        raise LockLost(f"a write of {names} was finished by another worker")
    # Where to look for a write's own commit: only a write started before may have been
    # pushed on the first try; after a rejection, any may have been (a lost lock's taker).
    bases = {w.id: (w.base_sha if w.started else None) for w in batch}
    for attempt in range(push_attempts):
        if attempt:
            keep_alive()
        head = repo.fetch()
        tip = head
        outcomes: dict[int, WriteReport] = {}
        chained: list[tuple[GitopsWrite, _Commit, str]] = []
        for write in batch:
            outcome = _outcome_before_commit(store, repo, write, head, tip, bases[write.id])
            if outcome is not None:
                outcomes[write.id] = outcome
                continue
            planned = _plan_commit(store, repo, write, tip)
            if isinstance(planned, WriteReport):
                outcomes[write.id] = planned
                continue
            commit = repo.commit(planned.change, planned.message, parent=tip)
            if commit is None:
                outcomes[write.id] = _pushed(
                    write, planned.meaning, ResultStatus.UNCHANGED, tip or ""
                )
                continue
            tip = commit
            chained.append((write, planned, commit))
        if chained and tip is not None:
            keep_alive()
            progress.pushing = True
            try:
                with metrics.PUSH_SECONDS.time():
                    repo.push(tip, expected=head)
            except PushRejected:
                metrics.PUSH_REJECTIONS.inc()
                log.info(
                    "push of %s to %s rejected, re-applying on the new head",
                    ", ".join(f"{w.env}/{w.app} (event {w.event_id})" for w, _, _ in chained),
                    repo.url,
                )
                # Rebuild at once: another writer won the race and is done. Only when
                # that keeps happening, spread the writers out a little.
                if attempt:
                    time.sleep(random.uniform(0, 0.01 * attempt))
                bases = {w.id: (w.base_sha if w.started else base) for w in batch}
                continue
        for write, planned, commit in chained:
            outcomes[write.id] = _pushed(write, planned.meaning, ResultStatus.SUCCESS, commit)
        pushed = _pushed_commits(repo, head, tip) if chained and tip is not None else None
        return _Attempt([outcomes[write.id] for write in batch], pushed)
    names = ", ".join(f"{w.env}/{w.app}" for w in batch)
    raise GitOpsError(
        f"push of {names} was rejected {push_attempts} times: the remote branch keeps moving"
    )


def _pushed_commits(repo: GitopsRepository, base: str | None, head: str) -> PushedCommits | None:
    """The index entries of the commits just pushed onto `base`, read from the new objects.

    None when they cannot be read, whatever the reason (the push has landed, and its
    outcomes must be recorded): the release index then reads them from git later.
    """
    try:
        commits = repo.commits_since(head, base)
        if commits is None:
            return None  # not what this drain pushed onto `base`: leave it to the index's sync
        entries = [
            entry
            for number, commit in enumerate(commits, start=1)
            for entry in index_entries(commit, repo.app_dir_changes(commit), number)
        ]
    except Exception:
        log.exception("reading back the commits pushed to %s failed; the index sync will", repo.url)
        return None
    return PushedCommits(repo.url, base or "", head, len(commits), entries)


def _outcome_before_commit(
    store: Store,
    repo: GitopsRepository,
    write: GitopsWrite,
    head: str | None,
    tip: str | None,
    base: str | None,
) -> WriteReport | None:
    """The outcome of a write that needs no new commit: pushed already, or superseded."""
    found = _own_commit(store, repo, write, head, base)
    if found is not None:
        return found
    newest = store.last_applied_seq(repo.url, write.env, write.app)
    if newest is not None and newest > write.event_seq:
        return WriteReport(
            write.id, write.env, write.app, ResultStatus.SUPERSEDED, tip or "",
            f"a release accepted later was applied to {write.env}/{write.app} first",
        )  # fmt: skip
    return None


def _own_commit(
    store: Store, repo: GitopsRepository, write: GitopsWrite, head: str | None, base: str | None
) -> WriteReport | None:
    """The success of a write whose own commit is on `head` after `base` (None: not looked for).

    Found by its trailers (I2), with what the commit means (`_meaning_of_found`).
    """
    if head is None or base is None:
        return None
    found = repo.find_commit(
        head,
        since=base or None,
        matches=lambda m: layout.is_commit_of(m, write.event_id, write.env, write.app),
    )
    if found is None:
        return None
    return _pushed(write, _meaning_of_found(store, repo, write, found), ResultStatus.SUCCESS, found)


def _pushed(
    write: GitopsWrite, meaning: _Meaning, status: ResultStatus, commit: str
) -> WriteReport:
    """The outcome of a commit, with the hold it places (a release's protects it)."""
    hold = meaning.hold
    if hold is not None and write.kind is WriteKind.RELEASE:
        hold = hold.model_copy(update={"commit": commit})
    return WriteReport(
        write.id, write.env, write.app, status, commit, hold=hold, lift_hold=meaning.lift_hold,
        version=meaning.version, reverted=meaning.reverted,
    )  # fmt: skip


def _meaning_of_found(
    store: Store, repo: GitopsRepository, write: GitopsWrite, commit: str
) -> _Meaning:
    """What the write's own commit, found on the remote (I2), means: as when it was made.

    Its worker pushed it and stopped before recording the outcome. A rollback
    found that way must still hold its app, or the next policy deploy would
    undo it; so the meaning is read back from the commit and its parent, the
    head it was made on, and a hold it places dates from the commit.
    """
    made = repo.commit_info(commit)
    release_path = f"{layout.app_dir(write.env, write.app)}/{layout.RELEASE_FILE}"
    if write.kind is WriteKind.ROLLBACK:
        return _Meaning(
            hold=_rollback_hold(write, created=made.time),
            version=_version_of(repo.read_file(commit, release_path)),
            reverted=reverted_commits(made.message),
        )
    before = repo.read_file(made.parent, release_path) if made.parent is not None else None
    if write.kind is WriteKind.DELETE:
        return _Meaning(lift_hold=True, version=_version_of(before))
    return _release_meaning(store, write, live_artifact=_artifact_of(before), created=made.time)


def _rollback_hold(write: GitopsWrite, *, created: int) -> Hold:
    """The hold a rollback places on its app, protecting the commit it restored."""
    who = write.release.triggered_by
    return Hold(
        env=write.env,
        app=write.app,
        reason=f"rolled back to {write.target_sha[:12]} by {who}",
        placed_by=who,
        event_id=write.event_id,
        commit=write.target_sha,
        created=created,
    )


def _release_meaning(
    store: Store, write: GitopsWrite, *, live_artifact: str | None, created: int
) -> _Meaning:
    """A release by a person holds its app when it is older than what ran; otherwise lifts it."""
    if write.by_policy:
        return _Meaning()
    who = write.release.triggered_by
    if _is_older(store, write.release.artifact_id, than=live_artifact):
        hold = Hold(
            env=write.env,
            app=write.app,
            reason=f"{who} released {write.release.artifact_id}, older than {live_artifact}",
            placed_by=who,
            event_id=write.event_id,
            created=created,
        )
        return _Meaning(hold=hold)
    return _Meaning(lift_hold=True)


def _plan_commit(
    store: Store, repo: GitopsRepository, write: GitopsWrite, head: str | None
) -> _Commit | WriteReport:
    """The commit `write` makes on `head`, or its outcome when there is nothing to commit."""
    trailers = layout.CommitTrailers(
        event_id=write.event_id,
        artifact_id=write.release.artifact_id,
        triggered_by=write.release.triggered_by,
        env=write.env,
        app=write.app,
    )
    app_dir = layout.app_dir(write.env, write.app)
    current = repo.list_dir(head, app_dir) if head is not None else {}
    who = write.release.triggered_by

    def outcome(status: ResultStatus, desc: str, *, lift_hold: bool = False) -> WriteReport:
        return WriteReport(
            write.id, write.env, write.app, status, head or "", desc, lift_hold=lift_hold
        )

    if write.kind is WriteKind.DELETE:
        if not current:
            return outcome(
                ResultStatus.UNCHANGED,
                f"nothing to delete: {app_dir} is not in the repository",
                lift_hold=True,
            )
        return _Commit(
            AppChange(write.env, write.app, None, {}),
            layout.delete_message(write.env, write.app, who, trailers),
            _Meaning(lift_hold=True, version=_version_of(current.get(layout.RELEASE_FILE))),
        )

    if write.kind is WriteKind.ROLLBACK:
        target = write.target_sha
        restored = repo.list_dir(target, app_dir)
        if not restored:
            return outcome(ResultStatus.FAILURE, f"{target} has no {app_dir} to roll back to")
        rollback_hold = _rollback_hold(write, created=int(time.time()))
        if restored == current:
            return dataclasses.replace(
                outcome(
                    ResultStatus.UNCHANGED,
                    f"nothing to do: {app_dir} is already as it was at {target}",
                ),
                hold=rollback_hold,
            )
        sync_index(store, repo, head)
        reverted = store.commits_to_revert(repo.url, write.env, write.app, target)
        env_files = {}
        if layout.RELEASE_FILE in restored:
            env_files[layout.RELEASE_FILE] = restored[layout.RELEASE_FILE]
        return _Commit(
            AppChange(write.env, write.app, restored, env_files),
            layout.rollback_message(write.env, write.app, target, reverted, who, trailers),
            _Meaning(
                hold=rollback_hold,
                version=_version_of(restored.get(layout.RELEASE_FILE)),
                reverted=tuple(reverted),
            ),
        )

    release = write.release
    live_artifact = _artifact_of(current.pop(layout.RELEASE_FILE, None))
    if live_artifact == release.artifact_id and current == write.files:
        return outcome(
            ResultStatus.UNCHANGED,
            f"already released: {app_dir} runs {release.artifact_id}",
            lift_hold=not write.by_policy,
        )
    return _Commit(
        AppChange(
            write.env,
            write.app,
            layout.app_files(write.files, release),
            {layout.RELEASE_FILE: layout.release_json(release)},
        ),
        layout.deploy_message(write.env, write.app, who, trailers),
        _release_meaning(store, write, live_artifact=live_artifact, created=int(time.time())),
    )


def _artifact_of(release_file: bytes | None) -> str | None:
    """The artifact id a `release.json` names, None when there is none or it is unreadable."""
    release = _release_of(release_file)
    return None if release is None else release.artifact_id


def _version_of(release_file: bytes | None) -> Version | None:
    """The source version a `release.json` names, None when there is none or it is unreadable."""
    release = _release_of(release_file)
    return None if release is None else release.version


def _release_of(release_file: bytes | None) -> Release | None:
    if release_file is None:
        return None
    try:
        return Release.model_validate_json(release_file)
    except ValueError:
        return None


def _is_older(store: Store, artifact_id: str, *, than: str | None) -> bool:
    """Whether `artifact_id` was accepted before the artifact `than` (unknown ones are not)."""
    if than is None or than == artifact_id:
        return False
    accepted = store.artifact_accepted_at(artifact_id)
    live_accepted = store.artifact_accepted_at(than)
    return accepted is not None and live_accepted is not None and accepted < live_accepted
