"""`GET /metrics`: Prometheus text, no token, counts straight from the database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from gimletd.models import DeliveryStatus, EventType, Release, ResultStatus, WriteKind
from gimletd.notifications.notice import Notice, NoticeKind
from gimletd.store import FailedEnvironment, PlannedWrite, Store, WriteReport
from tests.conftest import ADMIN


def samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_count_artifacts_and_events_by_type_and_status(
    client: FlaskClient, fixtures_dir: Path
) -> None:
    seed = json.loads((fixtures_dir / "seed-artifact-restored.json").read_text())
    before = samples(client)
    assert before[("gimletd_artifacts_accepted_total", ())] == 0
    for _ in range(3):
        assert client.post("/api/artifact", json=seed, headers=ADMIN).status_code == 201
    client.post(
        "/api/events/branch-deleted", json={"repository": "a/b", "branch": "x"}, headers=ADMIN
    )
    after = samples(client)
    assert after[("gimletd_artifacts_accepted_total", ())] == 3
    assert after[("gimletd_events", (("status", "new"), ("type", "artifact")))] == 3
    assert after[("gimletd_events", (("status", "new"), ("type", "branchDeleted")))] == 1


def test_metrics_show_queue_depth_age_and_notification_deliveries(
    client: FlaskClient, store: Store
) -> None:
    event = store.create_event(EventType.DELETE, request={}, triggered_by="jane")
    release = Release(app="web", env="prod", artifact_id="", triggered_by="jane")
    write = PlannedWrite("repo", "prod", "web", {}, release, kind=WriteKind.DELETE)
    notice = Notice(kind=NoticeKind.FAILED, created=1, env="prod", app="api", event_id=event.id)
    failure = FailedEnvironment("repo", "prod", "api", "no chart")
    store.plan_event(
        event.id, writes=[write], failures=[failure], notices=[(notice, ["slack", "webhook-1"])]
    )
    store.finish_delivery(notice.id, "slack", DeliveryStatus.FAILED, "channel_not_found")
    values = samples(client)
    prod = (("env", "prod"), ("gitops_repo", "repo"))
    assert values[("gimletd_queue_depth", prod)] == 1
    assert values[("gimletd_queue_oldest_pending_seconds", prod)] >= 0
    assert (
        values[("gimletd_notification_deliveries", (("status", "failed"), ("target", "slack")))]
        == 1
    )
    assert (
        values[
            ("gimletd_notification_deliveries", (("status", "pending"), ("target", "webhook-1")))
        ]
        == 1
    )


def test_queues_are_per_gitops_repo_and_read_zero_once_empty(
    client: FlaskClient, store: Store
) -> None:
    """Two repositories with an env of the same name are two queues; credentials never show."""
    secret_repo = "https://deployer:s3cret@git.example.com/org/gitops.git"
    public_repo = "https://git.example.com/org/gitops.git"
    for repo in ("repo", "other-repo", secret_repo, public_repo):
        event = store.create_event(EventType.DELETE, request={}, triggered_by="jane")
        release = Release(app="web", env="prod", artifact_id="", triggered_by="jane")
        write = PlannedWrite(repo, "prod", "web", {}, release, kind=WriteKind.DELETE)
        store.plan_event(event.id, writes=[write], failures=[])
    [prod] = store.unfinished_writes("repo", "prod")
    store.finish_writes([WriteReport(prod.id, "prod", prod.app, ResultStatus.SUCCESS)])
    text = client.get("/metrics").get_data(as_text=True)
    assert "s3cret" not in text
    values = samples(client)
    depth = {
        dict(labels)["gitops_repo"]: value
        for (name, labels), value in values.items()
        if name == "gimletd_queue_depth"
    }
    # The same repository written with and without credentials is one queue.
    assert depth == {"repo": 0, "other-repo": 1, public_repo: 2}
    emptied = (("env", "prod"), ("gitops_repo", "repo"))
    assert values[("gimletd_queue_oldest_pending_seconds", emptied)] == 0


def test_each_process_writes_files_named_by_host_and_pid(tmp_path: Path) -> None:
    """Containers number their processes from 1: a pid alone would name the same file twice."""
    code = "import os, gimletd.metrics as m; m.WRITE_RETRIES.inc(); print(os.getpid())"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pid = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    names = {path.name for path in tmp_path.iterdir()}
    assert f"counter_{socket.gethostname()}-{pid}.db" in names
    assert f"counter_{pid}.db" not in names
