"""The workers' measurements reach `GET /metrics` of the API, across processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from gimletd.settings import Settings
from tests.support.processes import Process
from tests.support.prometheus import samples
from tests.workers.conftest import on_branch, post_artifact, wait_for_event

StartWorkers = Callable[..., list[Process]]


@pytest.mark.slow
def test_a_release_is_measured_by_the_worker_and_counted_by_the_api(
    client: FlaskClient, artifact: dict[str, Any], settings: Settings, start_workers: StartWorkers
) -> None:
    start_workers(settings)
    event = wait_for_event(client, post_artifact(client, on_branch(artifact, "main", "push"))
                           ["eventId"])  # fmt: skip
    assert event["status"] == "processed"
    values = samples(client.get("/metrics").get_data(as_text=True))
    assert values[("gimletd_gitops_push_seconds_count", ())] >= 1
    assert values[("gimletd_gitops_write_seconds_count", ())] >= 1
    assert values[("gimletd_gitops_push_rejections_total", ())] == 0
    assert values[("gimletd_gitops_write_retries_total", ())] == 0
    assert values[("gimletd_events", (("status", "processed"), ("type", "artifact")))] == 1
    assert settings.metrics_dir.is_dir() and any(settings.metrics_dir.glob("*.db"))
