"""Fixtures of the resilience suite: a whole install per test, and the report of every run.

Redis is a pytest-redis instance of this package's own, since tests here stop
and restart it; it is emptied before each test. Each run's outcome goes with
its test's report (`tests.resilience.report` prints them all at the end of the
session). Each test starts a whole install that keeps both cores busy, so
`./dev test` runs the suite on its own, one test after another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from pytest_redis import factories
from pytest_redis.executor import RedisExecutor

from gimletd.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.resilience.harness import Install, Outcome
from tests.resilience.report import REPORT_PROPERTY

resilience_redis = factories.redis_proc(port=None)


@pytest.fixture
def own_redis(resilience_redis: RedisExecutor) -> RedisExecutor:
    redis.Redis(host=resilience_redis.host, port=resilience_redis.port).flushall()
    return resilience_redis


@pytest.fixture
def install_settings(tmp_path: Path, gitops_remote: Path, own_redis: RedisExecutor) -> Settings:
    """A production-like install on SQLite, with timeouts short enough for a test."""
    return Settings(
        data_dir=tmp_path / "data",
        gitops_repo=str(gitops_remote),
        redis_url=f"redis://{own_redis.host}:{own_redis.port}/0",
        admin_token=ADMIN_TOKEN,
        sweep_interval=1.0,
        stale_after=3.0,
        lock_timeout=5.0,
    )


@pytest.fixture
def start_install(tmp_path: Path, gitops_remote: Path) -> Iterator[Callable[..., Install]]:
    """Start an install on the given settings; it is stopped when the test ends."""
    started: list[Install] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)

    def start(settings: Settings, *, workers: int = 3) -> Install:
        install = Install(settings, log_dir, gitops_remote)
        started.append(install)
        install.start(workers=workers)
        return install

    yield start
    for install in started:
        install.stop()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[Outcome], None]:
    """Record a run's outcome for the session's report, and fail the test on any breach."""

    def record(outcome: Outcome) -> None:
        lines = [outcome.line(), *(f"  BREACH {breach}" for breach in outcome.breaches[:10])]
        request.node.user_properties.append((REPORT_PROPERTY, lines))
        assert not outcome.breaches, "\n".join([outcome.line(), *outcome.breaches[:20]])

    return record
