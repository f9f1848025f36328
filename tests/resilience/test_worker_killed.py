"""Worker killed: SIGKILL workers in the middle of GitOps writes, several times in one run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pytest_redis.executor import RedisExecutor

from gimletd.settings import Settings
from tests.resilience.harness import Install, Outcome, check, releases
from workers.locks import LOCK_PREFIX

ARTIFACTS = 120
ENVIRONMENTS = 10
KILLS = 4


@pytest.mark.slow
def test_workers_killed_mid_write_lose_nothing_and_apply_nothing_twice(
    artifact: dict[str, Any],
    install_settings: Settings,
    own_redis: RedisExecutor,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    install = start_install(install_settings, workers=3)
    # Paced so that writes go on through all the kills (each waits for its replacement).
    posted, poster = install.post_in_background(
        releases(artifact, range(ARTIFACTS), ENVIRONMENTS), clients=2, pace=0.15
    )
    install.kill_writers(KILLS, seed=8, pause=(0.3, 1.0))
    poster.join()
    last_kill = time.monotonic()  # or the last artifact, which came later
    install.wait_until_settled(posted.accepted.values(), timeout=90)
    settled_after = time.monotonic() - last_kill

    outcome = check("worker killed", install, posted)
    outcome.extra["seconds_settling_after_the_last_kill"] = round(settled_after)
    # A lock left by a killed worker expires after GITOPS_LOCK_TIMEOUT (5 s here), and the
    # sweep (every second) drains a queue that waited STALE_AFTER (3 s): the last kill's env
    # is free again about 9 s after it, and 10 s more cover a slow machine. (Observed: 0-6 s.)
    settings = install_settings
    bound = settings.lock_timeout + settings.stale_after + settings.sweep_interval + 10
    if settled_after > bound:
        outcome.breaches.append(f"settled {settled_after:.0f}s after the last kill (> {bound}s)")
    locks = redis.Redis(host=own_redis.host, port=own_redis.port).keys(f"{LOCK_PREFIX}:*")
    if locks:
        outcome.breaches.append(f"locks left behind after everything settled: {locks}")
    report(outcome)
    assert outcome.kills == KILLS
    assert outcome.kills_mid_write >= KILLS - 1, "the kills missed the GitOps writes"
    assert sum(outcome.events.values()) == ARTIFACTS
