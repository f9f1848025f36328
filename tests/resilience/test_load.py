"""Load: 500 artifacts from 8 clients to 20 environments of one GitOps repository, 3 workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gimletd.settings import Settings
from tests.resilience.harness import Install, Outcome, check, releases

ARTIFACTS = 500
ENVIRONMENTS = 20


@pytest.mark.slow
def test_five_hundred_artifacts_to_twenty_environments(
    artifact: dict[str, Any],
    install_settings: Settings,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    install = start_install(install_settings, workers=3)
    posted = install.post(releases(artifact, range(ARTIFACTS), ENVIRONMENTS), clients=8)
    install.wait_until_settled(posted.accepted.values())

    outcome = check("load", install, posted)
    report(outcome)
    assert sum(outcome.events.values()) == ARTIFACTS
    assert outcome.results["success"] >= ENVIRONMENTS
