"""GitOps writes: drain one environment's queue of planned writes, under its Redis lock."""

from __future__ import annotations

import logging
import random

from celery import Task

from gimletd.errors import GitOpsError
from gimletd.release import apply_queue
from workers import context
from workers.celery import RETRY_WHILE_STORE_UNAVAILABLE, app
from workers.locks import env_lock

log = logging.getLogger(__name__)


@app.task(
    bind=True,
    name="gimletd.gitops.drain",
    acks_late=True,
    **RETRY_WHILE_STORE_UNAVAILABLE,
)
def drain(self: Task, gitops_repo: str, env: str) -> None:
    """Apply every unfinished write of `env` in acceptance order (I3).

    One drain at a time per environment: a task that finds the lock taken
    retries shortly, because the holder may have looked at the queue before
    this task's write was planned.
    """
    repo = context.gitops_repo()
    if repo.url != gitops_repo:
        log.error("drain for %s ignored: this worker writes to %s", gitops_repo, repo.url)
        return
    settings = context.settings()
    lock = env_lock(context.redis_client(), gitops_repo, env, timeout=settings.lock_timeout)
    if not lock.acquire():
        raise self.retry(countdown=0.2 + random.random() * 0.5, max_retries=None)
    try:
        apply_queue(
            context.store(),
            repo,
            env,
            push_attempts=settings.push_attempts,
            max_attempts=settings.max_attempts,
            keep_alive=lock.reacquire,
        )
    except GitOpsError as exc:
        log.warning("gitops writes to %s wait for the repository: %s", env, exc, extra={"env": env})
        raise self.retry(
            countdown=min(2**self.request.retries, 60), max_retries=None, exc=exc
        ) from exc
    finally:
        try:
            lock.release()
        except Exception:  # the lock expired while we worked: the next drain will take over
            log.warning("the gitops lock of %s expired before it was released", env)


def queue_drains(queues: list[tuple[str, str]]) -> None:
    """Ask for a drain of each (gitops repo, env) queue."""
    for gitops_repo, env in queues:
        drain.delay(gitops_repo, env)
