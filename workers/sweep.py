"""The periodic sweep: work that was accepted but never finished is queued again (I1, I5)."""

from __future__ import annotations

import logging
import time

from workers import context
from workers.artifacts import process
from workers.celery import app
from workers.gitops import queue_drains

log = logging.getLogger(__name__)


@app.task(name="gimletd.sweep", acks_late=True)
def sweep() -> dict[str, int]:
    """Re-enqueue stale events and stale environment queues; end events out of attempts."""
    settings = context.settings()
    store = context.store()
    cutoff = time.time() - settings.stale_after
    requeued = 0
    for event_id in store.stale_events(older_than=cutoff):
        claim_attempts = store.event_attempts(event_id)
        if claim_attempts >= settings.max_attempts:
            store.fail_event(
                event_id, f"gave up after {claim_attempts} attempts to process the event"
            )
            continue
        process.delay(event_id)
        requeued += 1
    queues = store.stale_queues(older_than=cutoff)
    queue_drains(queues)
    if requeued or queues:
        log.info("sweep re-enqueued %d events and %d environment queues", requeued, len(queues))
    return {"events": requeued, "queues": len(queues)}
