"""Flux events read into reports, and reports recorded on a real GitOps repository's commits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gimletd.errors import InputError
from gimletd.flux import NEWS_WINDOW, FluxReport, read_flux_event
from gimletd.flux import record_flux_report as record
from gimletd.gitops.repository import GitopsRepository
from gimletd.history import sync_index
from gimletd.models import FLUX_APPLIED, FLUX_PROGRESSING
from gimletd.notifications.notice import Notice, NoticeKind
from gimletd.store import HistoryFilter, Store
from gimletd.webhooks import Ignored, signature_matches
from tests.support.gitops import commit_by_hand

FIXTURE_SHA = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
NOW = 1_700_000_000.0


def flux_fixture(fixtures_dir: Path, name: str) -> bytes:
    return (fixtures_dir / "payloads" / "flux" / name).read_bytes()


def test_the_success_event_is_an_applied_report(fixtures_dir: Path) -> None:
    report = read_flux_event(
        flux_fixture(fixtures_dir, "kustomization-ready.json"), "prod", now=NOW
    )
    assert report == FluxReport(
        env="prod",
        commit=FIXTURE_SHA,
        status=FLUX_APPLIED,
        desc="Reconciliation finished in 1.734556812s, next run in 10m0s",
        reason="ReconciliationSucceeded",
        reported_at=1666942212.0,
        source="Kustomization/apps/webapp",
    )
    assert report.applied and report.final


def test_a_failure_keeps_flux_reason_and_message(fixtures_dir: Path) -> None:
    report = read_flux_event(
        flux_fixture(fixtures_dir, "kustomization-failed.json"), "prod", now=NOW
    )
    assert isinstance(report, FluxReport)
    assert (report.status, report.final, report.applied) == ("HealthCheckFailed", True, False)
    assert report.desc.startswith("health check failed after 5m0.009826547s")


def test_the_docs_example_with_a_prefixed_key_and_old_revision_is_read(fixtures_dir: Path) -> None:
    body = flux_fixture(fixtures_dir, "kustomization-validation-failed.docs-example.json")
    report = read_flux_event(body, "prod", now=NOW)
    assert isinstance(report, FluxReport)
    assert (report.commit, report.status) == (FIXTURE_SHA, "ValidationFailed")


def test_the_hmac_vector_verifies_and_a_forgery_does_not(fixtures_dir: Path) -> None:
    vector = json.loads(flux_fixture(fixtures_dir, "generic-hmac-test-vector.json"))
    body, key = vector["body"].encode(), vector["token"].encode()
    assert signature_matches(key, body, vector["X-Signature"], algorithms=frozenset({"sha256"}))
    assert not signature_matches(b"wrong", body, vector["X-Signature"])
    assert not signature_matches(key, body + b" ", vector["X-Signature"])
    assert read_flux_event(body, "prod", now=NOW) == read_flux_event(
        flux_fixture(fixtures_dir, "kustomization-ready.json"), "prod", now=NOW
    )


def event(**changes: Any) -> bytes:
    base: dict[str, Any] = {
        "involvedObject": {"kind": "Kustomization", "namespace": "flux-system", "name": "prod"},
        "severity": "info",
        "timestamp": "2026-11-21T10:00:00Z",
        "message": "Deployment/default/web configured",
        "reason": "Progressing",
        "metadata": {"revision": f"main@sha1:{FIXTURE_SHA}"},
        "reportingController": "kustomize-controller",
    }
    base.update(changes)
    return json.dumps(base).encode()


@pytest.mark.parametrize(
    ("changes", "status", "desc"),
    [
        ({}, FLUX_PROGRESSING, "Deployment/default/web configured"),
        ({"reason": "DependencyNotReady"}, FLUX_PROGRESSING, "Deployment/default/web configured"),
        ({"severity": "error", "reason": "AccessDenied", "message": "no"}, "ReconciliationFailed",
         "AccessDenied: no"),
        ({"metadata": {"revision": f"sha1:{FIXTURE_SHA}", "commit_status": "update"}}, FLUX_APPLIED,
         "Deployment/default/web configured"),
    ],
)  # fmt: skip
def test_statuses_use_the_names_the_go_clients_know(
    changes: dict[str, Any], status: str, desc: str
) -> None:
    report = read_flux_event(event(**changes), "prod", now=NOW)
    assert isinstance(report, FluxReport)
    assert (report.status, report.desc) == (status, desc)


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({}, "the event names no revision"),
        ({"revision": "1.2.3"}, "is not a git commit"),
        ({"helm.toolkit.fluxcd.io/revision": "6.3.1"}, "is not a git commit"),
        ({"revision": "latest@sha256:" + "ab" * 32}, "is not a git commit"),
    ],
)
def test_events_about_no_git_commit_are_ignored(metadata: dict[str, str], reason: str) -> None:
    ignored = read_flux_event(event(metadata=metadata), "prod", now=NOW)
    assert isinstance(ignored, Ignored) and reason in ignored.reason


@pytest.mark.parametrize(
    "body", [b"[1]", b"{", b'{"severity": 5}', b'{"metadata": {"revision": 1}}', b'"x"']
)
def test_what_is_not_a_flux_event_is_refused(body: bytes) -> None:
    with pytest.raises(InputError, match="not a Flux event"):
        read_flux_event(body, "prod", now=NOW)


# -- recording, on a real repository ----------------------------------------


@pytest.fixture
def repo(gitops_remote: Path, tmp_path: Path) -> GitopsRepository:
    return GitopsRepository(str(gitops_remote), cache_dir=tmp_path / "cache", clone_name="t")


def release_file(env: str, app: str, n: int) -> str:
    sha = f"{n:040x}"
    return json.dumps(
        {
            "app": app,
            "env": env,
            "artifactId": f"{app}-{n}",
            "triggeredBy": "policy",
            "eventId": f"event-{n}",
            "version": {"repositoryName": f"acme/{app}", "sha": sha, "branch": "main"},
        }
    )


def release_commits(remote: Path, work: Path, *apps: tuple[str, str]) -> list[str]:
    return [
        commit_by_hand(
            remote,
            work,
            {f"{env}/{app}/release.json": release_file(env, app, n)},
            f"release {env}/{app} {n}",
        )
        for n, (env, app) in enumerate(apps, start=1)
    ]


def collecting(announced: list[Notice], targets: list[str]) -> Callable[[Notice], list[str]]:
    """A `targets_for` that keeps each notice in `announced` and gives it `targets`."""

    def targets_for(notice: Notice) -> list[str]:
        announced.append(notice)
        return targets

    return targets_for


def report(
    commit: str, status: str = FLUX_APPLIED, at: float = NOW, env: str = "prod"
) -> FluxReport:
    return FluxReport(env, commit, status, f"{status} message", status, at, "Kustomization/x")


def statuses(store: Store, repo: GitopsRepository, env: str) -> dict[str, str | None]:
    history = store.history(HistoryFilter(gitops_repo=repo.url, env=env))
    return {entry.artifact_id: entry.flux_status for entry in history}


def test_flux_applying_a_commit_applies_the_ones_it_skipped_in_that_env_only(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    first, _staging, third, fourth = release_commits(
        gitops_remote, tmp_path / "work",
        ("prod", "web"), ("staging", "web"), ("prod", "api"), ("prod", "web"),
    )  # fmt: skip
    sync_index(store, repo, repo.fetch())
    announced: list[Notice] = []
    targets = collecting(announced, ["slack"])

    recorded = record(store, repo, report(third), targets_for=targets, now=NOW)
    assert statuses(store, repo, "prod") == {
        "web-4": None,
        "api-3": FLUX_APPLIED,
        "web-1": FLUX_APPLIED,
    }
    assert statuses(store, repo, "staging") == {"web-2": None}
    assert sorted(c.commit for c in recorded.changes) == sorted([first, third])
    # The commit Flux named is announced; so is the one it skipped, when it is recent.
    assert [(n.kind, n.app, n.applied_with) for n in announced] == [
        (NoticeKind.FLUX_APPLIED, "web", third),
        (NoticeKind.FLUX_APPLIED, "api", ""),
    ]
    assert sorted(recorded.deliveries) == sorted((n.id, "slack") for n in announced)
    assert {n.version.sha for n in announced if n.version} == {f"{1:040x}", f"{3:040x}"}

    # A failure of the newest commit does not touch the applied ones.
    record(store, repo, report(fourth, "HealthCheckFailed", NOW + 10), targets_for=targets)
    assert statuses(store, repo, "prod") == {
        "web-4": "HealthCheckFailed", "api-3": FLUX_APPLIED, "web-1": FLUX_APPLIED,
    }  # fmt: skip
    assert announced[-1].kind is NoticeKind.FLUX_FAILED
    assert announced[-1].error == "HealthCheckFailed message"


def test_duplicates_stale_reports_and_progress_change_nothing_final(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    [commit] = release_commits(gitops_remote, tmp_path / "work", ("prod", "web"))
    sync_index(store, repo, repo.fetch())
    announced: list[Notice] = []
    targets = collecting(announced, ["webhook-1"])

    record(store, repo, report(commit, "HealthCheckFailed", NOW), targets_for=targets)
    # Flux retried and applied it: the newer report wins.
    record(store, repo, report(commit, FLUX_APPLIED, NOW + 60), targets_for=targets)
    # The same report again (a redelivery), an older failure arriving late, then progress.
    assert not record(
        store, repo, report(commit, FLUX_APPLIED, NOW + 60), targets_for=targets
    ).changes
    assert not record(
        store, repo, report(commit, "BuildFailed", NOW + 1), targets_for=targets
    ).changes
    assert not record(
        store, repo, report(commit, FLUX_PROGRESSING, NOW + 90), targets_for=targets
    ).changes
    assert statuses(store, repo, "prod") == {"web-1": FLUX_APPLIED}
    assert [n.kind for n in announced] == [NoticeKind.FLUX_FAILED, NoticeKind.FLUX_APPLIED]


def test_old_skipped_commits_get_their_status_without_a_message(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    old, new = release_commits(gitops_remote, tmp_path / "work", ("prod", "web"), ("prod", "api"))
    sync_index(store, repo, repo.fetch())
    announced: list[Notice] = []
    targets = collecting(announced, [])

    later = time.time() + 2 * NEWS_WINDOW  # the commits are two days old at this report
    record(store, repo, report(new, at=later), targets_for=targets, now=later)
    assert statuses(store, repo, "prod") == {"api-2": FLUX_APPLIED, "web-1": FLUX_APPLIED}
    assert [n.gitops_commit for n in announced] == [new]
    assert old != new


def test_a_commit_that_changed_no_app_is_announced_for_the_env(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    [release] = release_commits(gitops_remote, work, ("prod", "web"))
    readme = commit_by_hand(gitops_remote, work, {"README.md": "hi\n"}, "docs")
    sync_index(store, repo, repo.fetch())
    announced: list[Notice] = []
    targets = collecting(announced, ["slack"])

    record(store, repo, report(readme, "BuildFailed"), targets_for=targets, now=NOW)
    assert [(n.app, n.gitops_commit, n.kind) for n in announced] == [
        ("web", release, NoticeKind.FLUX_FAILED),
        ("", readme, NoticeKind.FLUX_FAILED),
    ]


def web_then_api_in_prod(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> tuple[str, str]:
    """Two release commits to prod, indexed: web's, then api's."""
    first, second = release_commits(
        gitops_remote, tmp_path / "work", ("prod", "web"), ("prod", "api")
    )
    sync_index(store, repo, repo.fetch())
    return first, second


def test_a_failure_given_to_skipped_commits_gives_way_when_flux_retries(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    skipped, reported = web_then_api_in_prod(store, repo, gitops_remote, tmp_path)
    announced: list[Notice] = []
    targets = collecting(announced, [])

    record(store, repo, report(reported, "HealthCheckFailed", NOW), targets_for=targets)
    assert statuses(store, repo, "prod") == {
        "api-2": "HealthCheckFailed",
        "web-1": "HealthCheckFailed",
    }
    # Flux retried the same revision and it went through: so did the commit it skipped.
    record(store, repo, report(reported, FLUX_APPLIED, NOW + 60), targets_for=targets)
    assert statuses(store, repo, "prod") == {"api-2": FLUX_APPLIED, "web-1": FLUX_APPLIED}
    assert [(n.app, n.kind) for n in announced[2:]] == [
        ("web", NoticeKind.FLUX_APPLIED), ("api", NoticeKind.FLUX_APPLIED),
    ]  # fmt: skip
    flux = store.flux_status(repo.url, "prod", skipped)
    assert flux is not None and flux.implied_by == reported


def test_a_commit_s_own_report_arriving_late_replaces_the_status_it_was_given(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    """Flux's report on the first commit was retried (a 503) after its report on the second."""
    first, second = web_then_api_in_prod(store, repo, gitops_remote, tmp_path)
    no_targets = collecting([], [])

    record(store, repo, report(second, "HealthCheckFailed", NOW + 10), targets_for=no_targets)
    assert statuses(store, repo, "prod") == {
        "api-2": "HealthCheckFailed",
        "web-1": "HealthCheckFailed",
    }
    record(store, repo, report(first, FLUX_APPLIED, NOW), targets_for=no_targets)
    assert statuses(store, repo, "prod") == {"api-2": "HealthCheckFailed", "web-1": FLUX_APPLIED}
    # Its own reports still keep their order among themselves.
    record(store, repo, report(first, "BuildFailed", NOW - 5), targets_for=no_targets)
    assert statuses(store, repo, "prod")["web-1"] == FLUX_APPLIED


def test_an_old_failure_of_a_commit_does_not_undo_a_newer_success_it_was_given(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    """Flux applied the second commit, and the first with it; the first's old failure comes late."""
    first, second = web_then_api_in_prod(store, repo, gitops_remote, tmp_path)
    no_targets = collecting([], [])

    record(store, repo, report(second, FLUX_APPLIED, NOW + 10), targets_for=no_targets)
    assert not record(
        store, repo, report(first, "HealthCheckFailed", NOW), targets_for=no_targets
    ).changes
    assert statuses(store, repo, "prod") == {"api-2": FLUX_APPLIED, "web-1": FLUX_APPLIED}


def test_environments_sharing_a_repository_keep_their_own_status_of_a_commit(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    staging, production = release_commits(
        gitops_remote, tmp_path / "work", ("staging", "web"), ("production", "web")
    )
    sync_index(store, repo, repo.fetch())
    # Both Kustomizations report on the branch head, the production commit.
    record(
        store, repo, report(production, FLUX_APPLIED, NOW, env="staging"), targets_for=lambda _: []
    )
    record(store, repo, report(production, "HealthCheckFailed", NOW - 5, env="production"),
           targets_for=lambda _: [])  # fmt: skip
    assert statuses(store, repo, "staging") == {"web-1": FLUX_APPLIED}
    assert statuses(store, repo, "production") == {"web-2": "HealthCheckFailed"}
    assert staging != production
