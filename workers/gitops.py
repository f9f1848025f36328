"""GitOps writes: drain one environment's queue of planned writes, under its Redis lock."""

from __future__ import annotations

import enum
import logging

from celery import Task
from redis.exceptions import LockError
from redis.lock import Lock

from gimletd import metrics
from gimletd.errors import GitOpsError, LockLost, WriteDeferred
from gimletd.history import sync_index
from gimletd.release import apply_queue
from workers import context
from workers.celery import RETRY_WHILE_STORE_UNAVAILABLE, app
from workers.locks import env_lock, holder_token
from workers.notify import notice_targets, send_deliveries

log = logging.getLogger(__name__)


class Drained(enum.Enum):
    """How a drain attempt ended."""

    DONE = "done"  # nothing left that can be applied now (writes may wait for a lock or hold)
    BUSY = "busy"  # another worker holds the lock and drains the queue
    MORE = "more"  # writes arrived after the last look; another drain was queued


@app.task(
    bind=True,
    name="gimletd.gitops.drain",
    acks_late=True,
    **RETRY_WHILE_STORE_UNAVAILABLE,
)
def drain(self: Task, gitops_repo: str, env: str) -> None:
    """Apply every unfinished write of `env` in acceptance order (I3).

    A failed write is deferred by `apply_queue` (WriteDeferred); the task is
    retried after the write's delay.
    """
    try:
        drain_queue(gitops_repo, env)
    except WriteDeferred as exc:
        raise self.retry(countdown=exc.delay, max_retries=None, exc=exc) from exc
    keep_packed(gitops_repo)


def drain_queue(gitops_repo: str, env: str, *, index: bool = True) -> Drained:
    """Apply `env`'s unfinished writes under its lock; the one place that drains.

    One drain at a time per environment. A drain that finds the lock taken
    simply ends: the holder looks at the queue again after releasing the lock
    and queues another drain if a write arrived meanwhile, so nothing waits and
    no task spins on a busy lock. A killed holder's lock expires after
    GITOPS_LOCK_TIMEOUT, and the sweep queues drains for queues left behind.

    Each push enters the release index with its record, when the index stands
    at the push's base. What could not be indexed that way (another writer's
    commits came first) is read from git afterwards, unless `index` is False:
    a caller draining several queues of one repository does that once, after
    the last (`index_repository`).

    :raise WriteDeferred: a write failed and waits for its retry delay.
    """
    store = context.store()
    settings = context.settings()
    if gitops_repo not in settings.all_gitops_repos:
        reason = (
            f"this GimletD does not write to {gitops_repo} (GITOPS_REPO or GITOPS_REPOS changed?)"
        )
        log.error("writes to %s in %s cannot be applied: %s", env, gitops_repo, reason)
        store.fail_unfinished_writes(gitops_repo, env, reason)
        return Drained.DONE
    repo = context.gitops_repo(gitops_repo)
    lock = env_lock(context.redis_client(), gitops_repo, env, timeout=settings.lock_timeout)
    if not lock.acquire(token=holder_token()):
        return Drained.BUSY
    try:
        result = apply_queue(
            store,
            repo,
            env,
            push_attempts=settings.push_attempts,
            max_attempts=settings.max_attempts,
            keep_alive=lambda: _renew(lock, env),
            targets_for=notice_targets,
            send=send_deliveries,
        )
    except LockLost:
        log.warning("lost the gitops lock of %s; its new holder carries on", env)
        return Drained.BUSY
    finally:
        _release(lock, env)
    if result.reports and index:
        index_repository(gitops_repo)
    if store.has_unfinished_writes(gitops_repo, env, excluding=result.waiting):
        drain.delay(gitops_repo, env)
        return Drained.MORE
    return Drained.DONE


def index_repository(gitops_repo: str) -> None:
    """Bring the release index up to the head last fetched, reading from git what it lacks.

    After a drain that is nothing, or the commits its pushes could not index
    themselves; when this fails, the periodic sync catches up.
    """
    repo = context.gitops_repo(gitops_repo)
    try:
        sync_index(context.store(), repo, repo.known_head())
    except Exception:
        log.exception("indexing %s after a write failed; the periodic sync will", repo.url)


def keep_packed(gitops_repo: str) -> None:
    """Pack this process's objects of a repository when git would (`git gc --auto`).

    Called at the end of a task that wrote or fetched, once its writes are
    recorded, the next drain decided and the index read: a gc then delays no
    release of the task, though it keeps this worker process busy meanwhile.
    A failure is logged, never raised: upkeep can wait for the next look.
    """
    if gitops_repo not in context.settings().all_gitops_repos:
        return
    try:
        repo = context.gitops_repo(gitops_repo)
        if not repo.upkeep_due():
            return
        log.info("packing the objects of %s (git gc --auto)", repo.path)
        with metrics.UPKEEP_SECONDS.time():
            repo.upkeep()
    except GitOpsError as exc:
        log.warning("packing the objects of %s failed; a later look tries again: %s",
                    gitops_repo, exc)  # fmt: skip
    except Exception:
        log.exception("packing the objects of %s failed; a later look tries again", gitops_repo)


def _renew(lock: Lock, env: str) -> None:
    """Extend the lock for another timeout; `LockLost` when another worker holds it now."""
    try:
        lock.reacquire()
    except LockError as exc:
        raise LockLost(f"the gitops lock of {env} expired and was taken over") from exc


def _release(lock: Lock, env: str) -> None:
    try:
        lock.release()
    except LockError:  # it expired while we worked (or was lost); whoever holds it drains
        log.warning("the gitops lock of %s was no longer ours to release", env)


def queue_drains(queues: list[tuple[str, str]]) -> None:
    """Ask for a drain of each (gitops repo, env) queue."""
    for gitops_repo, env in queues:
        drain.delay(gitops_repo, env)
