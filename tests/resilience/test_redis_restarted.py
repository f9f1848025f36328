"""Redis restarted during ingestion and again during processing: nothing is lost (I1, I5)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytest_redis.executor import RedisExecutor

from gimletd.settings import Settings
from tests.resilience.harness import Install, Outcome, Posted, check, release_artifact

ARTIFACTS = 150
ENVIRONMENTS = 10
DOWN_FOR = 4.0


@pytest.mark.slow
def test_redis_restarted_while_artifacts_arrive_and_while_they_are_processed(
    artifact: dict[str, Any],
    install_settings: Settings,
    own_redis: RedisExecutor,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    install = start_install(install_settings, workers=3)
    posted = Posted()
    artifacts = ((n, release_artifact(artifact, n, ENVIRONMENTS)) for n in range(ARTIFACTS))
    poster = threading.Thread(target=install.post, args=(artifacts,),
                              kwargs={"posted": posted, "clients": 4})  # fmt: skip
    poster.start()

    # During ingestion: the API stores each event and answers 201 without a broker.
    time.sleep(1.0)
    own_redis.stop()
    down = time.time()
    time.sleep(DOWN_FOR)
    up = time.time()
    own_redis.start()
    accepted_while_down = posted.accepted_between(down, up)
    poster.join()

    # During processing: the backlog is in Redis when it goes (and comes back empty).
    more = ((n, release_artifact(artifact, n, ENVIRONMENTS))
            for n in range(ARTIFACTS, 2 * ARTIFACTS))  # fmt: skip
    install.post(more, posted=posted)
    own_redis.stop()
    time.sleep(DOWN_FOR)
    own_redis.start()
    install.wait_until_settled(posted.accepted.values(), timeout=120)

    outcome = check("redis restarted", install, posted)
    outcome.extra["accepted_while_redis_was_down"] = accepted_while_down
    if accepted_while_down == 0:
        outcome.breaches.append("no artifact was accepted while Redis was down (I1)")
    report(outcome)
    assert sum(outcome.events.values()) == 2 * ARTIFACTS
