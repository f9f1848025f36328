"""Many artifacts at once, two worker processes: order, exactly-once, and a clean repository."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import text

from gimletd.store import Store
from tests.support import gitops
from tests.support.processes import Process
from tests.workers.conftest import post_artifact, wait_for_event

ARTIFACTS = 50
ENVIRONMENTS = [f"env-{n}" for n in range(5)]


def numbered(artifact: dict[str, Any], n: int) -> dict[str, Any]:
    """Artifact `n`: a push to main released by policy to every environment."""
    changed = copy.deepcopy(artifact)
    changed["version"].update(branch="main", event="push", sha=f"{n:040x}")
    changed["context"].update(CIRCLE_SHA1=f"{n:040x}", BRANCH="main")
    template = changed["environments"][0]
    changed["environments"] = [dict(copy.deepcopy(template), env=env) for env in ENVIRONMENTS]
    return changed


def test_fifty_concurrent_artifacts_to_five_environments(
    app: Flask,
    artifact: dict[str, Any],
    gitops_remote: Path,
    settings: Any,
    store: Store,
    start_workers: Callable[..., list[Process]],
) -> None:
    start_workers(settings, 2)

    def post(n: int) -> dict[str, Any]:
        return post_artifact(app.test_client(), numbered(artifact, n))

    with ThreadPoolExecutor(max_workers=8) as pool:
        posted = list(pool.map(post, range(ARTIFACTS)))
    client = app.test_client()
    events = {p["eventId"]: wait_for_event(client, p["eventId"], timeout=180) for p in posted}

    # Every event is terminal and every environment either committed or was superseded.
    assert {e["status"] for e in events.values()} == {"processed"}
    outcomes = Counter(r["status"] for e in events.values() for r in e["results"])
    assert set(outcomes) <= {"success", "superseded"}, outcomes
    assert sum(outcomes.values()) == ARTIFACTS * len(ENVIRONMENTS)

    # Every expected commit is on the remote exactly once (I2), nothing else is.
    history = gitops.commits(gitops_remote)
    written = Counter((c.trailers["Gimlet-Event"], c.trailers["Gimlet-Env"]) for c in history)
    expected = {
        (event_id, r["env"]): r["hash"]
        for event_id, event in events.items()
        for r in event["results"]
        if r["status"] == "success"
    }
    assert set(written) == set(expected)
    assert set(written.values()) == {1}
    assert {c.sha for c in history} == set(expected.values())

    # Each environment's history follows acceptance order and ends on the last artifact (I3).
    with store.engine.connect() as connection:
        seq = {row.id: row.seq for row in connection.execute(text("SELECT id, seq FROM events"))}
    last_event = max(seq, key=seq.__getitem__)
    for env in ENVIRONMENTS:
        applied = [seq[c.trailers["Gimlet-Event"]] for c in reversed(history)
                   if c.trailers["Gimlet-Env"] == env]  # fmt: skip
        assert applied == sorted(applied), env
    for env in ENVIRONMENTS:
        release = gitops.read_json(gitops_remote, f"{env}/frontend/release.json")
        assert release["eventId"] == last_event, env

    assert gitops.fsck(gitops_remote).returncode == 0
