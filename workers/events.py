"""Event processing: an accepted event becomes planned GitOps writes on their environments.

An artifact event is matched against every environment's deploy policy; a
release event renders the environments it names; rollback and delete events
plan one write whose files are read from the GitOps repository when applied; a
branch deletion or closed pull request plans a delete per preview app its
artifacts' cleanup policies name. A Flux report plans nothing: its statuses
are recorded and announced.
"""

from __future__ import annotations

import json
import logging
import time

from celery import Task
from celery.exceptions import Retry

from gimletd.cleanup import plan_cleanup
from gimletd.errors import Conflict, GitOpsError, StoreUnavailable, WriteDeferred
from gimletd.flux import FluxReport, record_flux_report
from gimletd.history import sync_index
from gimletd.models import POLICY_TRIGGER, CleanupEvent, EventType, WriteKind
from gimletd.notifications.notice import Notice
from gimletd.release import Plan, Target, failure_notices, plan_artifact, plan_operation
from gimletd.store import EventClaim, EventPlan, Store
from workers import context
from workers.celery import RETRY_WHILE_STORE_UNAVAILABLE, app
from workers.gitops import drain, drain_queue, index_repository, keep_packed, queue_drains
from workers.notify import notice_targets, send_deliveries, send_notices

log = logging.getLogger(__name__)

#: Tries at fetching a chart before the environment is recorded as failed.
CHART_FETCH_ATTEMPTS = 3


@app.task(
    bind=True,
    name="gimletd.events.process",
    acks_late=True,
    **RETRY_WHILE_STORE_UNAVAILABLE,
)
def process(self: Task, event_id: str) -> None:
    """Plan the writes of an event and queue them on their environments."""
    store = context.store()
    settings = context.settings()
    claim = store.claim_event(event_id)
    if claim is None:
        return  # already finished: a redelivery
    if claim.planned:
        queue_drains(store.queues_of_event(event_id))
        return
    if claim.attempts > settings.max_attempts:
        store.fail_event(event_id, _gave_up(store, event_id, claim.attempts - 1))
        return
    if claim.type is EventType.FLUX:
        _record_flux_report(claim)
        return
    try:
        plan = _plan(claim)
        if plan is None:
            return
        if plan.retryable and self.request.retries < CHART_FETCH_ATTEMPTS - 1:
            log.warning("event %s: %s; retrying", event_id, plan.retryable[0])
            raise self.retry(countdown=2 ** (self.request.retries + 1), exc=plan.retryable[0])
        notices = _failure_notices(claim, plan)
        queues = store.plan_event(
            event_id, writes=plan.writes, failures=plan.failures, notices=notices
        )
        send_notices(notices)
    except Conflict:
        # Another delivery of this event planned it at the same moment (SQLite has no
        # row locks); its writes are there, so only make sure they get drained.
        queues = store.queues_of_event(event_id)
    except (Retry, StoreUnavailable):
        raise
    except Exception as exc:
        store.note_event_problem(event_id, f"attempt {claim.attempts} failed: {exc}")
        raise
    for queue in queues:
        _drain_now(*queue)
    for gitops_repo in _repos_of(queues):
        keep_packed(gitops_repo)


@app.task(name="gimletd.events.dispatch", acks_late=True)
def dispatch(event_ids: list[str]) -> None:
    """Process a batch of events the API stored together, as one.

    The API sends one message per batch of artifact pushes. Their events are
    claimed in one transaction and their plans recorded in another, where
    `process` takes two per event; each environment they write to is drained
    once for all of them, and each repository's release index read once, after
    the last drain.

    An event out of attempts ends in error here, as in `process`. What else the
    batch does not handle goes to a `process` task of its own, which handles it
    as any single event: an event planned already (a redelivery), one of another
    kind, one whose chart could not be fetched (retried there, the batch's try
    counted), and every event not yet planned when the store fails (`process`
    retries while it is unavailable). Such an event's attempt is counted here
    and there: one more, of EVENT_MAX_ATTEMPTS. An event whose planning raised
    has the problem noted and is left to the sweep, as a failed `process` task
    leaves it.
    """
    store, settings = context.store(), context.settings()
    try:
        claims = store.claim_events(event_ids)
    except Exception:
        log.exception("claiming a batch of %d events failed; each gets a task", len(event_ids))
        _process_each(event_ids)
        return
    plans: list[EventPlan] = []
    alone: list[str] = []
    chart_retries: list[str] = []
    for event_id, claim in claims.items():
        if claim is None:
            continue  # already finished: a redelivery
        if claim.planned or claim.type not in (EventType.ARTIFACT, EventType.RELEASE):
            alone.append(event_id)
            continue
        try:
            if claim.attempts > settings.max_attempts:
                store.fail_event(event_id, _gave_up(store, event_id, claim.attempts - 1))
                continue
            plan = _plan(claim)
        except StoreUnavailable:
            alone.append(event_id)
            continue
        except Exception as exc:
            log.exception("event %s: planning failed", event_id)
            try:
                store.note_event_problem(event_id, f"attempt {claim.attempts} failed: {exc}")
            except StoreUnavailable:
                alone.append(event_id)
            continue
        if plan is None:
            continue  # ended in error, recorded
        if plan.retryable:
            log.warning("event %s: %s; retrying", event_id, plan.retryable[0])
            chart_retries.append(event_id)
            continue
        plans.append(EventPlan(event_id, plan.writes, plan.failures, _failure_notices(claim, plan)))
    queues: list[tuple[str, str]] = []
    if plans:
        try:
            queues = store.plan_events(plans)
        except Exception:
            log.exception("recording the plans of %d events failed; each gets a task", len(plans))
            alone.extend(plan.event_id for plan in plans)
        else:
            send_notices(notice for plan in plans for notice in plan.notices)
    _process_each(alone)
    for event_id in chart_retries:  # the batch's try was the first of CHART_FETCH_ATTEMPTS
        process.apply_async((event_id,), countdown=2, retries=1)
    for gitops_repo, env in queues:
        _drain_now(gitops_repo, env, index=False)
    written = _repos_of(queues)
    for gitops_repo in written:
        index_repository(gitops_repo)
    for gitops_repo in written:
        keep_packed(gitops_repo)


def _repos_of(queues: list[tuple[str, str]]) -> list[str]:
    """The GitOps repositories of (repository, env) queues, each once, in order."""
    return sorted({gitops_repo for gitops_repo, _ in queues})


def _process_each(event_ids: list[str]) -> None:
    """Queue a `process` task per event, with one connection to the broker."""
    with app.producer_or_acquire() as producer, producer.batch():
        for event_id in event_ids:
            process.apply_async((event_id,), producer=producer)


def _plan(claim: EventClaim) -> Plan | None:
    """What the event writes; None when it ended already (recorded as an error)."""
    store, settings = context.store(), context.settings()
    now = time.time()
    request = json.loads(claim.blob) if claim.blob else {}
    if claim.type in (EventType.ARTIFACT, EventType.RELEASE):
        if claim.artifact is None:
            store.fail_event(claim.id, f"the event's artifact {claim.artifact_id!r} is not stored")
            return None
        target = None
        if claim.type is EventType.RELEASE:
            target = Target(env=request["env"], app=request.get("app") or None)
        return plan_artifact(
            claim.artifact,
            event_id=claim.id,
            triggered_by=POLICY_TRIGGER if target is None else claim.triggered_by,
            gitops_repo_for=settings.gitops_repo_for,
            render=context.renderer(),
            now=now,
            target=target,
            forced=bool(request.get("force")),
        )
    if claim.type in (EventType.BRANCH_DELETED, EventType.PR_CLOSED):
        return plan_cleanup(
            store.branch_artifacts(request["repository"], request["branch"]),
            event=CleanupEvent(claim.type.value),
            branch=request["branch"],
            event_id=claim.id,
            gitops_repo_for=settings.gitops_repo_for,
            now=now,
        )
    kind = WriteKind.ROLLBACK if claim.type is EventType.ROLLBACK else WriteKind.DELETE
    env, app_name = request["env"], request["app"]
    write = plan_operation(
        kind,
        gitops_repo=settings.gitops_repo_for(env),
        env=env,
        app=app_name,
        event_id=claim.id,
        triggered_by=claim.triggered_by,
        now=now,
        target_sha=request.get("sha", ""),
        artifact_id=request.get("artifactId", ""),
        forced=bool(request.get("force")),
    )
    return Plan(writes=[write])


def _failure_notices(claim: EventClaim, plan: Plan) -> list[tuple[Notice, list[str]]]:
    """The notices of the environments the plan failed, named as the writes would have been.

    Each with the targets it goes to, as the store keeps them.
    """
    if not plan.failures:
        return []
    kind, triggered_by = WriteKind.RELEASE, claim.triggered_by
    if claim.type in (EventType.ARTIFACT, EventType.BRANCH_DELETED, EventType.PR_CLOSED):
        triggered_by = POLICY_TRIGGER
    if claim.type in (EventType.BRANCH_DELETED, EventType.PR_CLOSED, EventType.DELETE):
        kind = WriteKind.DELETE
    elif claim.type is EventType.ROLLBACK:
        kind = WriteKind.ROLLBACK
    notices = failure_notices(
        plan.failures,
        kind,
        event_id=claim.id,
        triggered_by=triggered_by,
        artifact=claim.artifact,
        now=time.time(),
    )
    return [(notice, notice_targets(notice)) for notice in notices]


def _record_flux_report(claim: EventClaim) -> None:
    """Record what Flux said, on the commit and the earlier ones it applied, and announce it.

    The repository is fetched and its index synced first, so a commit pushed
    moments ago is known. The event ends processed, describing what changed;
    then the clone is packed if the fetch made that due.
    """
    store, settings = context.store(), context.settings()
    report = FluxReport.from_json(json.loads(claim.blob))
    gitops_repo = settings.gitops_repo_for(report.env)
    repo = context.gitops_repo(gitops_repo)
    try:
        sync_index(store, repo, repo.fetch())
    except GitOpsError as exc:
        # Flux read the commit from the remote a moment ago: record the report rather
        # than lose it (Flux does not send it again). The index stays as it is: this
        # clone's own head may be older than what other workers indexed. Commits Flux
        # applied that this clone has not seen are then not marked; the next report does.
        log.warning("recording a Flux report without a fetch of %s: %s", repo.url, exc)
    recorded = record_flux_report(store, repo, report, targets_for=notice_targets)
    send_deliveries(recorded.deliveries)
    changed = sorted({change.commit[:12] for change in recorded.changes})
    summary = f"{report.commit[:12]} in {report.env}: {report.status}"
    if not recorded.changes:
        summary += " (no change: already recorded, or a newer report is)"
    elif changed != [report.commit[:12]]:
        summary += f"; commits updated: {', '.join(changed)}"
    store.finish_event(claim.id, summary)
    keep_packed(gitops_repo)


def _drain_now(gitops_repo: str, env: str, *, index: bool = True) -> None:
    """Apply the writes just planned right here, saving a trip through the queue.

    When the environment's lock is taken its holder applies them; a failed
    write or any other problem leaves them to a drain task.
    """
    try:
        drain_queue(gitops_repo, env, index=index)
    except WriteDeferred as exc:
        drain.apply_async((gitops_repo, env), countdown=exc.delay)
    except Exception:
        log.exception("applying the writes to %s here failed; a drain task takes over", env)
        drain.delay(gitops_repo, env)


def _gave_up(store: Store, event_id: str, attempts: int) -> str:
    last = store.event(event_id).status_desc
    return f"gave up after {attempts} attempts to process the event" + (f"; {last}" if last else "")
