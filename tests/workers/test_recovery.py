"""Recovery: what was accepted while Redis was down is processed once it is back (I1, I5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from flask.testing import FlaskClient
from pytest_redis import factories
from pytest_redis.executor import RedisExecutor

from api import create_app
from gimletd.settings import Settings
from tests.conftest import ADMIN
from tests.support import gitops
from tests.support.processes import Process
from tests.workers.conftest import post_artifact, wait_for_event
from tests.workers.test_release_flow import on_branch
from workers.locks import env_lock

#: A Redis of this module's own, because the test stops and restarts it.
restartable_redis = factories.redis_proc(port=None)


def test_an_artifact_posted_while_redis_is_down_is_processed_after_it_returns(
    restartable_redis: RedisExecutor,
    settings: Settings,
    artifact: dict[str, Any],
    gitops_remote: Path,
    start_workers: Callable[..., list[Process]],
) -> None:
    own = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{restartable_redis.port}/0"})
    app = create_app(own)
    client = app.test_client()
    start_workers(own, 1, beat=True)

    restartable_redis.stop()
    posted = post_artifact(client, on_branch(artifact, "main", "push"))
    assert client.get(f"/api/event?id={posted['eventId']}", headers=ADMIN).json["status"] == "new"
    restartable_redis.start()

    event = wait_for_event(client, posted["eventId"], timeout=120)
    assert event["status"] == "processed", event
    [commit] = gitops.commits(gitops_remote)
    assert commit.trailers["Gimlet-Event"] == posted["eventId"]
    app.extensions["gimletd"].close()


def test_a_lock_left_by_a_killed_worker_blocks_its_environment_only_until_it_expires(
    settings: Settings,
    client: FlaskClient,
    artifact: dict[str, Any],
    gitops_remote: Path,
    redis_url: str,
    start_workers: Callable[..., list[Process]],
) -> None:
    """The drain that meets the lock ends; after the lock's timeout the sweep drains (I5)."""
    held_for = 4.0
    lock = env_lock(
        redis.Redis.from_url(redis_url), settings.resolved_gitops_repo, "staging", timeout=held_for
    )
    assert lock.acquire()  # as if a worker took it and was SIGKILLed
    started = time.monotonic()
    start_workers(settings, 1, beat=True)
    posted = post_artifact(client, on_branch(artifact, "main", "push"))

    event = wait_for_event(client, posted["eventId"], timeout=60)
    assert event["status"] == "processed", event
    assert time.monotonic() - started >= held_for
    [commit] = gitops.commits(gitops_remote)
    assert commit.trailers["Gimlet-Event"] == posted["eventId"]
