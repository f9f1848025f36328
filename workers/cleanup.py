"""Scheduled preview cleanup: branch polling and ttl expiry.

Both create ordinary events and hand them to `gimletd.events.process`, so what
they find is recorded, retried and swept like a webhook's report.
"""

from __future__ import annotations

import functools
import logging
import time

from gimletd.app_repos import BranchLister
from gimletd.cleanup import expire_apps, poll_app_repo
from gimletd.errors import AppRepoError, GitOpsError
from gimletd.history import sync_index
from workers import context
from workers.celery import RETRY_WHILE_STORE_UNAVAILABLE, app
from workers.events import process
from workers.gitops import keep_packed

log = logging.getLogger(__name__)


@functools.cache
def _lister() -> BranchLister:
    settings = context.settings()
    token = settings.app_repos_token.get_secret_value() if settings.app_repos_token else None
    return BranchLister(
        settings.resolved_repo_cache_path, token=token, token_hosts=settings.app_repo_token_hosts
    )


@app.task(name="gimletd.cleanup.poll", acks_late=True, **RETRY_WHILE_STORE_UNAVAILABLE)
def poll() -> int:
    """Ask for a poll of every application repository, one task each, so a slow one delays none."""
    repos = context.store().app_repos()
    for repo in repos:
        poll_repository.delay(repo.repository)
    return len(repos)


@app.task(name="gimletd.cleanup.poll_repository", acks_late=True, **RETRY_WHILE_STORE_UNAVAILABLE)
def poll_repository(repository: str) -> list[str]:
    """List one repository's branches; report the deleted ones. Returns the events created."""
    store, settings = context.store(), context.settings()
    repo = store.app_repo(repository)
    if repo is None:
        return []
    url = settings.app_repo_url(repository, repo.url)
    try:
        events = poll_app_repo(store, repo, url=url, lister=_lister(), clock=time.time)
    except AppRepoError as exc:
        log.warning("branch poll of %s failed, the next poll tries again: %s", repository, exc)
        return []
    for event in events:
        log.info("branch %s of %s is gone", event.branch, repository, extra={"event_id": event.id})
        process.delay(event.id)
    return [event.id for event in events]


@app.task(name="gimletd.cleanup.expire", acks_late=True, **RETRY_WHILE_STORE_UNAVAILABLE)
def expire(now: float | None = None) -> list[str]:
    """Delete the preview apps not released for their ttl. `now` is for tests and drills.

    Each repository's release index is brought up to its remote head first, so
    a release pushed but not indexed yet (its worker died in between) counts;
    a repository whose remote cannot be read is left for the next run.
    """
    store = context.store()
    created = []
    for url in context.settings().all_gitops_repos:
        repo = context.gitops_repo(url)
        try:
            sync_index(store, repo, repo.fetch())
        except GitOpsError as exc:
            log.warning("not expiring apps of %s this time: its remote: %s", repo.url, exc)
            continue
        for event in expire_apps(store, url, now=time.time() if now is None else now):
            process.delay(event.id)
            created.append(event.id)
        keep_packed(url)
    return created
