"""After a drain, a worker packs the GitOps repository's objects when git would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gimletd.settings import Settings
from tests.core.gitops.test_repository import change, git, open_repo
from tests.core.gitops.test_upkeep import packs
from tests.support.processes import Process
from tests.support.prometheus import samples
from tests.workers.conftest import on_branch, post_artifact, wait_for_event, wait_until

StartWorkers = Callable[..., list[Process]]


@pytest.mark.slow
def test_a_drain_packs_a_remote_with_more_packs_than_git_allows(
    client: FlaskClient,
    artifact: dict[str, Any],
    settings: Settings,
    gitops_remote: Path,
    tmp_path: Path,
    start_workers: StartWorkers,
) -> None:
    someone = open_repo(str(gitops_remote), tmp_path)
    for n in range(2):  # commits of another tool, each repacked: two packs
        someone.write(change(app=f"tool-{n}"), f"tool {n}", head=someone.fetch())
        git(gitops_remote, "repack", "-d", "-q")
    git(gitops_remote, "config", "gc.autoPackLimit", "1")
    assert packs(gitops_remote) == 2
    start_workers(settings)

    event = wait_for_event(client, post_artifact(client, on_branch(artifact, "main", "push"))
                           ["eventId"])  # fmt: skip

    assert event["status"] == "processed"

    def upkeeps() -> float:
        values = samples(client.get("/metrics").get_data(as_text=True))
        return values.get(("gimletd_gitops_upkeep_seconds_count", ()), 0.0)

    wait_until(lambda: upkeeps() == 1, "a git gc --auto after the drain")
    assert packs(gitops_remote) == 1
    assert git(gitops_remote, "fsck", "--strict") == ""
