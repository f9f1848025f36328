"""The GitOps remote is unreachable for a while, or for good.

Its directory is moved away (the suite runs as root, for whom a `chmod 000`
changes nothing) and, in the first case, moved back. Writes wait and retry
with back-off; only a write out of attempts ends the event in `error`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from gimletd.settings import Settings
from tests.resilience.harness import Install, Outcome, check, releases
from tests.support import gitops

ENVIRONMENTS = 10
AWAY_FOR = 6.0


@pytest.mark.slow
def test_writes_wait_while_the_remote_is_away_and_land_when_it_returns(
    artifact: dict[str, Any],
    install_settings: Settings,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    install = start_install(install_settings, workers=3)
    away = install.remote.with_name("gitops.away")
    posted = install.post(releases(artifact, range(60), ENVIRONMENTS))
    install.remote.rename(away)
    gone = time.monotonic()
    install.post(releases(artifact, range(60, 120), ENVIRONMENTS), posted=posted)
    time.sleep(max(0.0, AWAY_FOR - (time.monotonic() - gone)))
    away.rename(install.remote)
    install.wait_until_settled(posted.accepted.values(), timeout=150)

    outcome = check("remote unreachable, then back", install, posted)
    if outcome.write_retries == 0:
        outcome.breaches.append("no write was retried: the remote was never missed")
    report(outcome)
    assert sum(outcome.events.values()) == 120


@pytest.mark.slow
def test_writes_end_in_error_naming_the_remote_only_after_their_attempts(
    artifact: dict[str, Any],
    install_settings: Settings,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    attempts = 3
    # One release worker is enough: what is measured is the attempts and back-off of writes.
    install = start_install(
        install_settings.model_copy(update={"max_attempts": attempts}), workers=1
    )
    first = install.post(releases(artifact, [0], ENVIRONMENTS))
    install.wait_until_settled(first.accepted.values())
    [first_commit] = [c.sha for c in gitops.messages(install.remote)]
    gone = install.remote.with_name("gitops.gone")
    install.remote.rename(gone)
    started = time.monotonic()
    artifacts = releases(artifact, range(1, 6), ENVIRONMENTS)
    posted = install.post(artifacts, posted=first)
    install.wait_until_settled(posted.accepted.values(), timeout=90)
    took = time.monotonic() - started
    gone.rename(install.remote)  # for the checks of what is on it

    def failed_naming_the_remote(result: dict[str, Any]) -> bool:
        if result["hash"] == first_commit:
            return result["status"] == "success"
        return result["status"] == "failure" and "gitops.git" in result["statusDesc"]

    outcome = check("remote gone for good", install, posted, allowed=failed_naming_the_remote)
    if outcome.events != {"processed": 1, "error": 5}:
        outcome.breaches.append(f"expected 5 events in error, got {dict(outcome.events)}")
    outcome.extra["seconds_until_given_up"] = round(took)
    # Back-off of 2 s then 4 s between the three attempts: no error before those 6 s.
    if took < 6:
        outcome.breaches.append(f"gave up after {took:.1f}s, before its attempts were spent")
    if outcome.write_retries < attempts - 1:
        outcome.breaches.append(f"only {outcome.write_retries} retries for {attempts} attempts")
    report(outcome)
