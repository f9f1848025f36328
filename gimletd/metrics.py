"""Prometheus metrics: what the workers measure as they work, and what the store counts.

Two kinds, so every figure is right whatever process serves `/metrics`:

- **Measured** in the worker processes (GitOps write and push latency, push
  rejections, writes retried, object upkeep, failed notification attempts): prometheus-client
  in multiprocess mode, each process writing into the directory
  `PROMETHEUS_MULTIPROC_DIR` names (`Settings.metrics_dir`, set by the worker
  before this module is imported), summed at scrape time.
- **Counted** from the database at scrape time (`StoreCollector`): artifacts
  accepted, events by type and status, queue depth and the oldest pending write
  per environment, notification deliveries by target and status. These stay
  exact across restarts and any number of API or worker processes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gimletd.store import Store


def _process_identifier() -> str:
    """`<host>-<pid>`: containers number their processes from 1, so two containers sharing
    the directory (Compose's worker and notifier, or two API replicas) would write the
    same file if it were named by pid alone, as prometheus-client names it."""
    return f"{socket.gethostname()}-{os.getpid()}"


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # before the metrics below are made
    values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
        process_identifier=_process_identifier
    )

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

WRITE_SECONDS = Histogram(
    "gimletd_gitops_write_seconds",
    "Time to apply one batch of GitOps writes: fetch, commit, push, including retries.",
    buckets=_LATENCY_BUCKETS,
)
PUSH_SECONDS = Histogram(
    "gimletd_gitops_push_seconds", "Time of one push to the GitOps remote.",
    buckets=_LATENCY_BUCKETS,
)  # fmt: skip
PUSH_REJECTIONS = Counter(
    "gimletd_gitops_push_rejections",
    "Pushes the remote refused because its branch moved; the writes were rebuilt on it.",
)
WRITE_RETRIES = Counter(
    "gimletd_gitops_write_retries",
    "GitOps writes that failed (remote unreachable, push refused too often) and wait to retry.",
)
UPKEEP_SECONDS = Histogram(
    "gimletd_gitops_upkeep_seconds",
    "Time of one `git gc --auto` in a GitOps repository on disk or a worker's clone of one, "
    "run when git's thresholds were passed (git may still find nothing to do).",
    buckets=_LATENCY_BUCKETS,
)
NOTIFICATION_FAILURES = Counter(
    "gimletd_notification_failures",
    "Notification attempts that failed, by target and whether they will be retried.",
    labelnames=["target", "outcome"],
)


class StoreCollector(Collector):
    """The figures the database knows, read at each scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        snapshot = self.store.metrics_snapshot(now=time.time())
        yield CounterMetricFamily(
            "gimletd_artifacts_accepted", "Artifacts accepted.", value=snapshot.artifacts
        )
        events = GaugeMetricFamily(
            "gimletd_events", "Events by type and status.", labels=["type", "status"]
        )
        for (event_type, status), count in sorted(snapshot.events.items()):
            events.add_metric([event_type, status], count)
        yield events
        # Every environment that ever had a write, 0 once its queue is empty: a series that
        # vanished would read as "no data" in a dashboard rather than as an empty queue.
        depth = GaugeMetricFamily(
            "gimletd_queue_depth",
            "GitOps writes not yet applied, per GitOps repository and environment.",
            labels=["gitops_repo", "env"],
        )
        oldest = GaugeMetricFamily(
            "gimletd_queue_oldest_pending_seconds",
            "Age of the oldest GitOps write not yet applied (0 when none is), per GitOps "
            "repository and environment.",
            labels=["gitops_repo", "env"],
        )
        for (repo, env), (count, age) in sorted(snapshot.queues.items()):
            depth.add_metric([repo, env], count)
            oldest.add_metric([repo, env], age)
        yield depth
        yield oldest
        deliveries = GaugeMetricFamily(
            "gimletd_notification_deliveries",
            "Notification deliveries by target and status (failed: given up on).",
            labels=["target", "status"],
        )
        for (target, status), count in sorted(snapshot.deliveries.items()):
            deliveries.add_metric([target, status], count)
        yield deliveries


def scrape(store: Store, metrics_dir: Path) -> bytes:
    """The Prometheus text of every metric: the store's, and the processes' in `metrics_dir`."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    if metrics_dir.is_dir():
        MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    return generate_latest(registry)
