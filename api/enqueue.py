"""The API's only broker client: sends tasks by name, after the database commit.

The API never imports worker code. When Redis is down, enqueueing fails fast
and is logged; the event is already stored, so the workers' sweep picks it up
once Redis is back (I1).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery

from gimletd.gitops.layout import public_repo_url

log = logging.getLogger(__name__)

PROCESS_EVENT = "gimletd.events.process"
#: Takes a list of event ids and processes them together (see `workers.events.dispatch`).
DISPATCH_EVENTS = "gimletd.events.dispatch"
DRAIN_QUEUE = "gimletd.gitops.drain"
SYNC_INDEX = "gimletd.index.sync"
#: Every task name the API sends; a test checks the workers register each one.
TASK_NAMES = (PROCESS_EVENT, DISPATCH_EVENTS, DRAIN_QUEUE, SYNC_INDEX)
#: The workers' queue for all of them (`workers.celery.RELEASE_QUEUE`; a test checks).
RELEASE_QUEUE = "gimletd"


class Enqueuer:
    def __init__(self, broker_url: str) -> None:
        self._celery = Celery("gimletd-api", broker=broker_url, set_as_current=False)
        self._celery.conf.update(
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            broker_connection_timeout=2,
            broker_transport_options={
                "socket_connect_timeout": 1,
                "socket_timeout": 2,
                "max_retries": 0,
            },
            task_serializer="json",
            task_default_queue=RELEASE_QUEUE,
        )

    def process_event(self, event_id: str) -> bool:
        """Queue the processing of an event; False (logged) when the broker is unreachable."""
        return self.process_events([event_id])

    def process_events(self, event_ids: Sequence[str]) -> bool:
        """Queue the processing of events with one message to the broker.

        Several events go as one DISPATCH_EVENTS task, which a worker processes
        as a batch: on the API's hot path one message per batch of pushes costs
        a fraction of one per push. False (logged) when
        the broker did not take it; the sweep enqueues what is missing, and a
        task sent twice finds its event claimed.
        """
        if len(event_ids) == 1:
            return self._send(PROCESS_EVENT, event_ids[0], event_id=event_ids[0])
        return self._send(DISPATCH_EVENTS, list(event_ids))

    def drain(self, gitops_repo: str, env: str) -> bool:
        """Ask for the queue of an environment to be applied (after a lock or hold is lifted).

        When the broker is down, the sweep drains queues left waiting.
        """
        return self._send(DRAIN_QUEUE, gitops_repo, env)

    def sync_index(self) -> bool:
        """Ask for the release index to be brought up to every repository's head."""
        return self._send(SYNC_INDEX)

    def _send(self, task_name: str, *args: str | list[str], event_id: str | None = None) -> bool:
        """Send a task; False (logged, naming `event_id` if given) when the broker failed."""
        try:
            self._celery.send_task(task_name, args=list(args), retry=False, argsrepr=_shown(args))
        except Exception as exc:  # any broker failure: the sweep will enqueue it later
            log.warning(
                "could not enqueue %s for %s, the sweep will: %s",
                task_name,
                args,
                exc,
                extra={"event_id": event_id} if event_id else {},
            )
            return False
        return True


def _shown(args: Sequence[str | list[str]]) -> str:
    """A task's arguments as worker logs show them: without credentials in a repository URL.

    Given to Celery as `argsrepr`: its own (saferepr) costs a tenth of a send, and
    these are plain strings and lists of event ids.
    """
    return repr([public_repo_url(a) if isinstance(a, str) else a for a in args])[:1024]
