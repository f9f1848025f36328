"""The release index: kept in step with every GitOps repository, also for commits made elsewhere."""

from __future__ import annotations

import logging

from gimletd.history import sync_index
from workers import context
from workers.celery import RETRY_WHILE_STORE_UNAVAILABLE, app
from workers.gitops import keep_packed

log = logging.getLogger(__name__)


@app.task(name="gimletd.index.sync", acks_late=True, **RETRY_WHILE_STORE_UNAVAILABLE)
def sync() -> dict[str, int]:
    """Fetch every GitOps repository and index the commits made since the last sync.

    Writes index their own commits at once; this picks up the commits of people,
    of the Go original and of other tools, and builds the index of a repository
    the first time GimletD sees it.
    """
    added = {}
    for url in context.settings().all_gitops_repos:
        repo = context.gitops_repo(url)
        try:
            added[url] = sync_index(context.store(), repo, repo.fetch())
        except Exception:
            log.exception("indexing %s failed; the next sync tries again", url)
    for url in added:
        keep_packed(url)  # a fetch that brought objects left a pack in the clone
    if any(added.values()):
        log.info("release index: %s", ", ".join(f"{n} new in {u}" for u, n in added.items() if n))
    return added
