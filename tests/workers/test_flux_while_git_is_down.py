"""A Flux report that arrives while the git host is down is recorded, not lost.

Flux does not send a report again. The worker cannot fetch the GitOps
repository, but its clone has the commit Flux read a moment ago: the report
is recorded without a fetch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr

from gimletd.gitops.repository import init_bare
from gimletd.settings import Settings
from tests.conftest import ADMIN
from tests.support.gitdaemon import served_by_git_daemon
from tests.workers.test_notify_flow import (
    FLUX_SECRET,
    StartWorkers,
    flux_event,
    post_flux,
    release_to_staging,
)


@pytest.fixture
def git_host(tmp_path: Path) -> Iterator[tuple[str, contextlib.ExitStack]]:
    """A GitOps remote served by `git daemon`, and the stack that stops the daemon."""
    base = tmp_path / "served"
    init_bare(base / "gitops.git")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(served_by_git_daemon(base))
        yield f"{server}/gitops.git", stack


@pytest.fixture
def settings(settings: Settings, git_host: tuple[str, contextlib.ExitStack]) -> Settings:
    url, _ = git_host
    return settings.model_copy(
        update={"gitops_repo": url, "flux_webhook_secret": SecretStr(FLUX_SECRET)}
    )


@pytest.mark.slow
def test_a_flux_report_is_recorded_while_the_git_host_is_down(
    client: FlaskClient,
    artifact: dict[str, Any],
    settings: Settings,
    start_workers: StartWorkers,
    git_host: tuple[str, contextlib.ExitStack],
    fixtures_dir: Path,
) -> None:
    start_workers(settings)
    released = release_to_staging(client, artifact)
    commit = released["gitopsHashes"][0]["hash"]
    _, daemon = git_host
    daemon.close()  # the git host goes down

    report = post_flux(client, flux_event(fixtures_dir, "kustomization-ready.json", commit))

    assert report["statusDesc"].endswith("ReconciliationSucceeded")
    event = client.get(f"/api/event?id={released['id']}", headers=ADMIN).json
    assert event["results"][0]["gitopsCommitStatus"] == "ReconciliationSucceeded"
