"""GimletD's Celery workers: `celery -A workers worker` finds `workers.celery.app`.

Before anything imports `gimletd.metrics`, the metrics directory is chosen:
each worker process writes its measurements there, and the API reads them
(see `gimletd.metrics`, which also names each process's files).
"""

import os

from gimletd.settings import Settings

_metrics_dir = Settings().metrics_dir
_metrics_dir.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_metrics_dir))

from workers.celery import app  # noqa: E402  (after the metrics directory is set)

__all__ = ["app"]
