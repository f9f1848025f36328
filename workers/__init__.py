"""GimletD's Celery workers: `celery -A workers worker` finds `workers.celery.app`.

Before anything imports prometheus-client, the metrics directory is chosen:
each worker process writes its measurements there, and the API reads them
(see `gimletd.metrics`). prometheus-client names each process's file by its
pid; containers number their processes from 1, so two worker containers
sharing the directory (Compose's worker and notifier) would write the same
file. The files are named by host and pid instead.
"""

import os
import socket

from gimletd.settings import Settings

_metrics_dir = Settings().metrics_dir
_metrics_dir.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_metrics_dir))

from prometheus_client import values  # noqa: E402  (reads the directory when imported)

values.ValueClass = values.MultiProcessValue(
    process_identifier=lambda: f"{socket.gethostname()}-{os.getpid()}"
)

from workers.celery import app  # noqa: E402  (after the metrics directory is set)

__all__ = ["app"]
