"""The API's only broker client: sends tasks by name, after the database commit.

The API never imports worker code. When Redis is down, enqueueing fails fast
and is logged; the event is already stored, so the workers' sweep picks it up
once Redis is back (I1).
"""

from __future__ import annotations

import logging

from celery import Celery

log = logging.getLogger(__name__)

PROCESS_ARTIFACT_EVENT = "gimletd.artifacts.process"
#: Every task name the API sends; a test checks the workers register each one.
TASK_NAMES = (PROCESS_ARTIFACT_EVENT,)


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
        )

    def process_event(self, event_id: str) -> bool:
        """Queue the processing of an event; False (logged) when the broker is unreachable."""
        return self._send(PROCESS_ARTIFACT_EVENT, event_id)

    def _send(self, task_name: str, *args: str) -> bool:
        try:
            self._celery.send_task(task_name, args=list(args), retry=False)
        except Exception as exc:  # any broker failure: the sweep will enqueue it later
            log.warning(
                "could not enqueue %s for %s, the sweep will: %s",
                task_name,
                args,
                exc,
                extra={"event_id": args[0] if args else None},
            )
            return False
        return True
