"""Slow and failing notification endpoints do not slow releases down (I6).

One webhook endpoint answers after SLOW_SECONDS, the other with 500, while
artifacts arrive one by one, as CI sends them. Each release's commit must
be on the remote less than SLOW_SECONDS / 2 after its artifact arrived (in
practice within a second or two), and most deliveries to the slow endpoint
must still be waiting when all have landed. Neither could hold if a release
waited for its notifications, or if a delivery took a worker slot that a
release needs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from gimletd.settings import Settings
from tests.resilience.harness import (
    Install,
    Outcome,
    Posted,
    check,
    fetch_events,
    releases,
)
from tests.support import gitops

ARTIFACTS = 60
ENVIRONMENTS = 10
SLOW_SECONDS = 10.0


class Endpoints(BaseHTTPRequestHandler):
    """`/slow` answers 200 after SLOW_SECONDS; `/failing` answers 500 at once."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/slow":
            time.sleep(SLOW_SECONDS)
        self.send_response(200 if self.path == "/slow" else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def endpoints() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoints)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def release_latencies(install: Install, posted: Posted) -> list[float]:
    """Seconds from each artifact's 201 to its commit's time (git's, to the second)."""
    committed = {}
    log = gitops.git(install.remote, "log", "--format=%ct %(trailers:key=Gimlet-Event,valueonly)")
    for line in log.splitlines():
        at, _, event_id = line.partition(" ")
        if event_id:
            committed[event_id.strip()] = float(at)
    return [committed[event_id] - posted.accepted_at[n]
            for n, event_id in posted.accepted.items() if event_id in committed]  # fmt: skip


@pytest.mark.slow
def test_releases_land_while_their_notifications_are_still_on_their_way(
    artifact: dict[str, Any],
    install_settings: Settings,
    endpoints: str,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    settings = install_settings.model_copy(
        update={
            "notifications_provider": "webhook",
            "webhook_urls": SecretStr(f"{endpoints}/slow,{endpoints}/failing"),
            "notifications_timeout": SLOW_SECONDS * 2,
            "notifications_retry_base": 0.5,
        }
    )
    install = start_install(settings, workers=3)
    artifacts = releases(artifact, range(ARTIFACTS), ENVIRONMENTS)
    posted = install.post(artifacts, clients=1, pace=0.1)
    install.wait_until_settled(posted.accepted.values(), timeout=120)

    deliveries = Counter(
        (notification["target"], notification["status"])
        for event in fetch_events(install, posted.accepted.values()).values()
        for notification in event["notifications"]
    )
    outcome = check("slow notifications", install, posted)
    released = outcome.results["success"]
    slow_sent = deliveries[("webhook-1", "sent")]
    slowest = max(release_latencies(install, posted))
    outcome.extra.update(slow_notifications_sent_when_released=slow_sent, releases=released,
                         slowest_release_seconds=round(slowest))  # fmt: skip
    if slowest >= SLOW_SECONDS / 2:
        outcome.breaches.append(f"a release took {slowest:.0f}s from its artifact to its commit: "
                                "it waited behind notifications (I6)")  # fmt: skip
    # Each release has one delivery per endpoint, and the slow one sends one at a time.
    if slow_sent > released // 2:
        outcome.breaches.append(f"{slow_sent} of {released} slow deliveries were sent before "
                                "the releases ended: releases waited for them (I6)")  # fmt: skip
    report(outcome)
    assert sum(deliveries[("webhook-1", status)] for status in ("pending", "sent")) == released
