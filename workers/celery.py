"""The Celery app, configured from `Settings`; tasks live in their own modules."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.signals import (
    celeryd_after_setup,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)
from kombu import Queue

from gimletd.errors import StoreUnavailable
from gimletd.logs import configure_logging, log_context
from gimletd.settings import Settings
from gimletd.store import Store
from workers import context

settings = Settings()

# The Helm engine reads these when it loads: keep its caches in the data directory.
for _variable, _subdir in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                           ("HELM_DATA_HOME", "data")):  # fmt: skip
    os.environ.setdefault(_variable, str(settings.helm_home / _subdir))

#: Policy matching, GitOps writes, Flux reports, cleanups and sweeps.
RELEASE_QUEUE = "gimletd"
#: Notification deliveries: a slow or failing endpoint must not hold up releases (I6), so
#: they go to a queue of their own, which `gimletd worker --queues notifications` serves.
NOTIFICATION_QUEUE = "notifications"

app = Celery(
    "gimletd",
    broker=settings.resolved_redis_url,
    include=[
        "workers.cleanup",
        "workers.events",
        "workers.gitops",
        "workers.history",
        "workers.notify",
        "workers.sweep",
    ],
)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    # A worker started without `-Q` serves both queues; production runs one of each.
    task_default_queue=RELEASE_QUEUE,
    task_queues=(Queue(RELEASE_QUEUE), Queue(NOTIFICATION_QUEUE)),
    task_routes={"gimletd.notify.*": {"queue": NOTIFICATION_QUEUE}},
    # Acknowledge after the task ran, so a killed worker's task is delivered again (I2 keeps
    # the second run harmless), and take one task at a time so none waits behind a slow one.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 600},
    worker_hijack_root_logger=False,
    # A delivery's send has a deadline of its own (`workers.notify`); should anything else
    # in it hang, its process is stopped when its lease runs out and the sweep may send it
    # again (a limit the prefork pool enforces).
    task_annotations={"gimletd.notify.deliver": {"time_limit": 3 * settings.notifications_timeout}},
    beat_schedule={
        "sweep-unfinished-events": {
            "task": "gimletd.sweep",
            "schedule": settings.sweep_interval,
        },
        "sync-release-index": {
            "task": "gimletd.index.sync",
            "schedule": settings.index_sync_interval,
        },
        "poll-app-repo-branches": {
            "task": "gimletd.cleanup.poll",
            "schedule": settings.cleanup_poll_interval,
        },
        "expire-preview-apps": {
            "task": "gimletd.cleanup.expire",
            "schedule": settings.cleanup_poll_interval,
        },
    },
)


@celeryd_after_setup.connect
def _remember_node_name(sender: str, **_: object) -> None:
    context.node_name = sender


#: Task options for every task that uses the store: wait out a database outage.
RETRY_WHILE_STORE_UNAVAILABLE: dict[str, Any] = {
    "autoretry_for": (StoreUnavailable,),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": None,
}


@worker_init.connect
def _migrate_database(**_: object) -> None:
    """Bring the schema up to date before any task runs (the API does the same)."""
    store = Store(settings.resolved_database_url)
    store.migrate()
    store.close()


@worker_process_init.connect
def _fresh_process_state(**_: object) -> None:
    """Connections opened before the fork must not be shared with the child."""
    context.reset()


_task_log_contexts: dict[str, Any] = {}


@task_prerun.connect
def _bind_log_context(task_id: str, task: Task, args: tuple[Any, ...], **_: object) -> None:
    """Every log line of a task names the task and the event or environment it works on."""
    fields = {"task_id": task_id}
    if task.name == "gimletd.events.process" and args:
        fields["event_id"] = str(args[0])
    elif task.name == "gimletd.gitops.drain" and len(args) == 2:
        fields["env"] = str(args[1])
    context_manager = log_context(**fields)
    context_manager.__enter__()
    _task_log_contexts[task_id] = context_manager


@task_postrun.connect
def _unbind_log_context(task_id: str, **_: object) -> None:
    context_manager = _task_log_contexts.pop(task_id, None)
    if context_manager is not None:
        context_manager.__exit__(None, None, None)


configure_logging(development=settings.development)
