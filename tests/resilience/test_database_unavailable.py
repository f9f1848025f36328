"""The database drops every connection and refuses new ones for a while, twice in a run.

The install's database is one of its own on the PostgreSQL server the suite
finds; the server itself is never stopped, as other tests share it. While the
database refuses connections the API must answer 503 with a retry hint (never
500), the workers must wait and retry, and nothing accepted may be lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gimletd.settings import Settings
from tests.resilience.harness import Install, Outcome, check, releases

ARTIFACTS = 100
ENVIRONMENTS = 10
DOWN_FOR = 2.0


class Outage:
    """Refuse connections to one database and end those it has, then allow them again."""

    def __init__(self, admin_url: str, database_url: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = make_url(database_url).database

    def start(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS false'))
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": self.name},
            )

    def stop(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS true'))


@pytest.mark.slow
def test_the_database_going_away_gives_503s_and_loses_nothing(
    artifact: dict[str, Any],
    install_settings: Settings,
    postgres_admin_url: str,
    postgres_url: str,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    settings = install_settings.model_copy(update={"database_url": SecretStr(postgres_url)})
    install = start_install(settings, workers=3)
    outage = Outage(postgres_admin_url, settings.resolved_database_url)
    third = ARTIFACTS // 3
    posted = install.post(releases(artifact, range(third), ENVIRONMENTS))
    for batch in (range(third, 2 * third), range(2 * third, ARTIFACTS)):
        # The outage starts before the batch is posted and ends while its clients retry;
        # the workers meet it too, with the previous batch still in their hands.
        outage.start()
        threading.Timer(DOWN_FOR, outage.stop).start()
        install.post(releases(artifact, batch, ENVIRONMENTS), posted=posted)
    install.wait_until_settled(posted.accepted.values(), timeout=120)

    # A connection cut while COMMIT is in flight may leave an artifact stored whose client
    # was answered 503; its retry, with the same Idempotency-Key, is answered with it.
    outcome = check("database unavailable", install, posted)
    if posted.unavailable == 0:
        outcome.breaches.append("the API never answered 503 while the database was away")
    report(outcome)
    assert sum(outcome.events.values()) == ARTIFACTS
