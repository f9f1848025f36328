"""Redis restarted during ingestion and again during processing: nothing is lost (I1, I5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pytest_redis.executor import RedisExecutor

from gimletd.settings import Settings
from tests.resilience.harness import Install, Outcome, check, events_in_flight, releases

ARTIFACTS = 100
ENVIRONMENTS = 10
DOWN_FOR = 3.0


@pytest.mark.slow
def test_redis_restarted_while_artifacts_arrive_and_while_they_are_processed(
    artifact: dict[str, Any],
    install_settings: Settings,
    own_redis: RedisExecutor,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    install = start_install(install_settings, workers=3)
    third = ARTIFACTS // 3
    posted = install.post(releases(artifact, range(third), ENVIRONMENTS))

    # During ingestion: with Redis gone the API still stores each event and answers 201
    # (any other answer is a breach `check` reports); the sweep enqueues them later (I1).
    own_redis.stop()
    install.post(releases(artifact, range(third, 2 * third), ENVIRONMENTS), posted=posted)
    accepted_while_down = len(posted.accepted) - third
    own_redis.start()
    install.post(releases(artifact, range(2 * third, ARTIFACTS), ENVIRONMENTS), posted=posted)

    # During processing: the backlog is in Redis when it goes (and comes back empty).
    more = releases(artifact, range(ARTIFACTS, 2 * ARTIFACTS), ENVIRONMENTS)
    install.post(more, posted=posted)
    in_flight = events_in_flight(install_settings)
    own_redis.stop()
    time.sleep(DOWN_FOR)
    own_redis.start()
    install.wait_until_settled(posted.accepted.values(), timeout=120)

    outcome = check("redis restarted", install, posted)
    outcome.extra["accepted_while_redis_was_down"] = accepted_while_down
    outcome.extra["events_in_flight_when_redis_stopped"] = in_flight
    if in_flight == 0:
        outcome.breaches.append("nothing was left to process when Redis stopped: the "
                                "processing phase tested nothing")  # fmt: skip
    if accepted_while_down != third:
        outcome.breaches.append(f"{accepted_while_down} of {third} artifacts accepted while "
                                "Redis was down (I1)")  # fmt: skip
    report(outcome)
    assert sum(outcome.events.values()) == 2 * ARTIFACTS
