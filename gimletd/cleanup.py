"""Preview cleanup: which apps a deleted branch, a closed pull request or an expired ttl removes.

`plan_cleanup` and `release_ttl` decide without I/O. The use cases below them
read the store and create events; the deletes themselves are ordinary delete
writes on the serialised GitOps writer, the same `POST /api/delete` makes, so a
cleanup is ordered with the releases of its environment, is applied once (I2)
and shows in the release history as a deletion.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable

from gimletd.app_repos import BranchLister
from gimletd.durations import format_duration, parse_duration
from gimletd.errors import AppRepoError, Conflict, GimletdError, NotFound
from gimletd.models import (
    POLICY_TRIGGER,
    Artifact,
    CleanupEvent,
    CleanupPolicy,
    Event,
    EventType,
    Manifest,
    WriteKind,
    check_dns_label,
)
from gimletd.policy import cleanup_matches
from gimletd.release import Plan, RepoForEnv, plan_operation
from gimletd.store import AppRepo, Store
from gimletd.templating import has_template, render_template
from gimletd.variables import artifact_variables

__all__ = [
    "POLL_TRIGGER",
    "cleanup_target",
    "expire_apps",
    "plan_cleanup",
    "poll_app_repo",
    "release_ttl",
]

log = logging.getLogger(__name__)

#: `triggeredBy` of the branch deletions a poll finds.
POLL_TRIGGER = "branch-poll"


def plan_cleanup(
    artifacts: Iterable[Artifact],
    *,
    event: CleanupEvent,
    branch: str,
    event_id: str,
    gitops_repo_for: RepoForEnv,
    now: float,
) -> Plan:
    """One delete per app the cleanup policies of `artifacts` name for `event` on `branch`.

    `artifacts` come newest first; an env/app named by several is deleted once.
    A policy whose names do not resolve is recorded as a failure of that
    environment; the others are still planned.
    """
    plan = Plan()
    refused: set[tuple[str, str]] = set()
    for artifact in artifacts:
        for manifest in artifact.environments:
            policy = manifest.cleanup
            try:
                if policy is None or not cleanup_matches(policy, event, branch):
                    continue
                env, app = cleanup_target(artifact, manifest, policy, branch)
            except (GimletdError, ValueError) as exc:
                named = (manifest.env, policy.app if policy else manifest.app)
                if named not in refused:
                    refused.add(named)
                    plan.fail(gitops_repo_for(named[0]), *named, f"cleanup policy: {exc}")
                continue
            if plan.takes(env, app):
                continue
            plan.writes.append(
                plan_operation(
                    WriteKind.DELETE,
                    gitops_repo=gitops_repo_for(env),
                    env=env,
                    app=app,
                    event_id=event_id,
                    triggered_by=POLICY_TRIGGER,
                    now=now,
                    artifact_id=artifact.id,
                )
            )
    return plan


def cleanup_target(
    artifact: Artifact, manifest: Manifest, policy: CleanupPolicy, branch: str
) -> tuple[str, str]:
    """The env and app a cleanup policy deletes: its `app` template resolved with BRANCH only.

    :raise TemplateError: a template does not resolve.
    :raise ValueError: a name does not resolve to a DNS-1123 label.
    """
    env = manifest.env
    if has_template(env):
        env = render_template(env, artifact_variables(artifact))
    app = render_template(policy.app, {"BRANCH": branch})
    return check_dns_label(env, "env"), check_dns_label(app, "cleanup.app")


def release_ttl(artifact: Artifact, env: str, app: str) -> float | None:
    """The ttl, in seconds, of the environment config of `artifact` that released `env`/`app`.

    None when that config has no ttl, or `artifact` has no config releasing them.
    """
    variables = artifact_variables(artifact)
    for manifest in artifact.environments:
        ttl = manifest.cleanup.ttl if manifest.cleanup is not None else None
        if ttl is None:
            continue
        try:
            names = (
                render_template(manifest.env, variables),
                render_template(manifest.app, variables),
            )
            if names == (env, app):
                return parse_duration(ttl)
        except (GimletdError, ValueError):
            continue
    return None


def expire_apps(store: Store, gitops_repo: str, *, now: float) -> list[Event]:
    """Create a delete event for every live app of `gitops_repo` not released for its ttl.

    Reads the release index, so an app is as old as the last commit that wrote
    it. An app with a write still queued (a release waiting for a lock) is not
    idle, nor one whose source branch has an artifact or release not planned
    yet, which may release it again. Each release expires once: the event's
    dedupe key names its commit.
    """
    artifacts: dict[str, Artifact | None] = {}
    events = []
    repo_key = hashlib.sha256(gitops_repo.encode()).hexdigest()[:16]
    for live in store.live_releases(gitops_repo):
        if not live.artifact_id or live.created is None:
            continue
        if live.artifact_id not in artifacts:
            try:
                artifacts[live.artifact_id] = store.artifact(live.artifact_id)
            except NotFound:
                artifacts[live.artifact_id] = None
        artifact = artifacts[live.artifact_id]
        if artifact is None:
            continue  # no ttl to go by
        ttl = release_ttl(artifact, live.env, live.app)
        idle = now - live.created
        if ttl is None or idle < ttl:
            continue
        # Unplanned events first: planning one marks it planned and stores its writes in
        # one transaction, so an event planned between the two looks is seen by the second.
        branch = artifact.version.branch or artifact.version.source_branch
        if branch and store.has_unplanned_releases(artifact.version.repository_name, branch):
            continue
        if store.has_unfinished_writes(gitops_repo, live.env, app=live.app):
            continue
        reason = (
            f"expired: not released for {format_duration(idle)}, its ttl is {format_duration(ttl)}"
        )
        try:
            event = store.create_event(
                EventType.DELETE,
                request={"env": live.env, "app": live.app, "reason": reason},
                triggered_by=POLICY_TRIGGER,
                dedupe_key=f"expire:{repo_key}:{live.env}/{live.app}:{live.gitops_ref}",
            )
        except Conflict:
            continue  # this release expired before; that event deletes it
        log.info("%s/%s %s", live.env, live.app, reason, extra={"event_id": event.id})
        events.append(event)
    return events


def poll_app_repo(
    store: Store, repo: AppRepo, *, url: str, lister: BranchLister, clock: Callable[[], float]
) -> list[Event]:
    """List the branches of an application repository and report the ones that vanished.

    A failed listing is recorded on the repository and concludes nothing.

    :raise AppRepoError: the branches could not be listed.
    """
    listed_at = clock()
    try:
        if not url:
            raise AppRepoError(
                f"no URL to poll {repo.repository} at: its artifacts name none, "
                f"set APP_REPOS={repo.repository}=<clone url>"
            )
        branches = lister.branches(url)
    except AppRepoError as exc:
        store.record_poll_error(repo.repository, polled_at=listed_at, error=str(exc))
        raise
    return store.record_branch_listing(
        repo.repository, listed_at=listed_at, branches=branches, triggered_by=POLL_TRIGGER
    )
