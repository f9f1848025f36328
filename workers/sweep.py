"""The periodic sweep: work that was accepted but never finished is queued again (I1, I5)."""

from __future__ import annotations

import logging
import time

from workers import context
from workers.celery import app
from workers.events import process
from workers.gitops import queue_drains
from workers.notify import send_deliveries

log = logging.getLogger(__name__)


@app.task(name="gimletd.sweep", acks_late=True)
def sweep() -> dict[str, int]:
    """Re-enqueue stale events, environment queues and notifications; end events out of attempts."""
    settings = context.settings()
    store = context.store()
    cutoff = time.time() - settings.stale_after
    requeued = 0
    settled = store.settle_events()
    for event_id in store.stale_events(older_than=cutoff):
        # The task itself gives up once the event is out of attempts, naming the last problem.
        process.delay(event_id)
        requeued += 1
    queues = store.stale_queues(older_than=cutoff)
    queue_drains(queues)
    deliveries = store.stale_deliveries(older_than=cutoff)
    send_deliveries(deliveries)
    if requeued or queues or settled or deliveries:
        log.info(
            "sweep: %d events re-enqueued, %d environment queues re-drained, %d events settled, "
            "%d notifications re-sent",
            requeued,
            len(queues),
            settled,
            len(deliveries),
        )
    return {
        "events": requeued,
        "queues": len(queues),
        "settled": settled,
        "notifications": len(deliveries),
    }
