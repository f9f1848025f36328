"""The release index, read from repositories written by hand, by the Go original and by GimletD."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gimletd.gitops.repository import AppDirChange, CommitInfo, GitopsRepository
from gimletd.history import index_entries, sync_index
from gimletd.models import WriteKind
from gimletd.store import HistoryFilter, Store
from tests.support import gitops
from tests.support.gitops import commit_by_hand, go_release


@pytest.fixture
def repo(gitops_remote: Path, tmp_path: Path) -> GitopsRepository:
    return GitopsRepository(str(gitops_remote), cache_dir=tmp_path / "cache", clone_name="t")


def history(store: Store, repo: GitopsRepository, env: str, app: str | None = None,
            **options: object) -> list[tuple[str, str, bool]]:  # fmt: skip
    """(app, artifactId, rolledBack) newest first."""
    query = HistoryFilter(gitops_repo=repo.url, env=env, app=app, **options)  # type: ignore[arg-type]
    return [(e.app, e.artifact_id, e.rolled_back) for e in store.history(query)]


def test_a_repository_written_by_the_go_original_shows_its_history(
    store: Store, repo: GitopsRepository, gitops_remote: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    first = commit_by_hand(
        gitops_remote, work,
        {"staging/web/deployment.yaml": "image: v1\n",
         "staging/web/release.json": go_release("staging", "web", "web-1"),
         "staging/release.json": go_release("staging", "web", "web-1")},
        "[Gimlet] staging/web automated deploy",
    )  # fmt: skip
    second = commit_by_hand(
        gitops_remote, work,
        {"staging/web/deployment.yaml": "image: v2\n",
         "staging/web/release.json": go_release("staging", "web", "web-2", "alice")},
        "[Gimlet] staging/web release by alice",
    )  # fmt: skip
    commit_by_hand(
        gitops_remote, work,
        {"staging/api/deployment.yaml": "image: a1\n",
         "staging/api/release.json": go_release("staging", "api", "api-1")},
        "[Gimlet] staging/api automated deploy",
    )  # fmt: skip
    # The original rolled back with `git revert`, one commit per reverted release.
    gitops.run_git("-C", str(work), "-c", "user.name=x", "-c", "user.email=x@x", "revert",
                   "--no-edit", second)  # fmt: skip
    gitops.run_git("-C", str(work), "push", "-q", "origin", "HEAD:main")
    # A hand edit of the manifests, without a release record, is not a release.
    commit_by_hand(gitops_remote, work, {"staging/web/deployment.yaml": "image: v1-hotfix\n"},
                   "hotfix")  # fmt: skip
    commit_by_hand(gitops_remote, work, {}, "[GimletD delete] staging/api deleted by bob",
                   rm="staging/api")  # fmt: skip

    added = sync_index(store, repo, repo.fetch())

    assert added == 5  # three releases, the revert and the delete
    assert history(store, repo, "staging") == [
        ("api", "api-1", False),
        ("web", "web-2", True),
        ("web", "web-1", False),
    ]
    assert history(store, repo, "staging", "web") == [
        ("web", "web-2", True),
        ("web", "web-1", False),
    ]
    every_kind = HistoryFilter(gitops_repo=repo.url, env="staging", kinds=list(WriteKind))
    assert [(e.app, e.kind) for e in store.history(every_kind)] == [
        ("api", WriteKind.DELETE),
        ("web", WriteKind.ROLLBACK),
        ("api", WriteKind.RELEASE),
        ("web", WriteKind.RELEASE),
        ("web", WriteKind.RELEASE),
    ]
    live = {e.app: e for e in store.live_releases(repo.url, "staging")}
    assert list(live) == ["web"], "the deleted app is gone"
    assert live["web"].artifact_id == "web-1"
    assert live["web"].kind is WriteKind.ROLLBACK
    assert store.indexed_release(repo.url, "staging", "web", first) is not None


def test_only_new_commits_are_read_on_each_sync(
    store: Store, repo: GitopsRepository, gitops_remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gitops.fast_import_releases(
        gitops_remote, [("prod", f"app-{i % 3}", f"a{i}") for i in range(30)]
    )
    assert sync_index(store, repo, repo.fetch()) == 30
    gitops.fast_import_releases(gitops_remote, [("prod", "app-0", "a30"), ("prod", "app-1", "a31")])
    read: list[str] = []
    changes = repo.app_dir_changes
    monkeypatch.setattr(repo, "app_dir_changes", lambda c: read.append(c.sha) or changes(c))
    assert sync_index(store, repo, repo.fetch()) == 2
    assert len(read) == 2
    assert sync_index(store, repo, repo.fetch()) == 0
    assert history(store, repo, "prod", "app-0", limit=2) == [
        ("app-0", "a30", False),
        ("app-0", "a27", False),
    ]


def test_a_rewritten_branch_rebuilds_the_index(
    store: Store, repo: GitopsRepository, gitops_remote: Path
) -> None:
    gitops.fast_import_releases(gitops_remote, [("prod", "web", f"w{i}") for i in range(3)])
    sync_index(store, repo, repo.fetch())
    gitops.git(gitops_remote, "update-ref", "refs/heads/main", "main~2")  # a force push
    gitops.fast_import_releases(gitops_remote, [("prod", "web", "w-new")])
    sync_index(store, repo, repo.fetch())
    assert history(store, repo, "prod") == [("web", "w-new", False), ("web", "w0", False)]


def test_an_empty_repository_has_a_complete_empty_index(
    store: Store, repo: GitopsRepository
) -> None:
    assert store.index_head(repo.url) is None
    sync_index(store, repo, repo.fetch())
    assert store.index_head(repo.url) is not None
    assert history(store, repo, "prod") == []


def change(env: str, app: str, release: bytes | None, *, changed: bool = True,
           env_release: bytes | None = None, removed: bool = False) -> AppDirChange:  # fmt: skip
    return AppDirChange(env, app, removed, release, changed, env_release)


COMMIT = CommitInfo(sha="c" * 40, message="[Gimlet] prod/web automated deploy", time=1, parent=None)


def test_index_entries_read_what_each_commit_did() -> None:
    release = go_release("prod", "web", "w1").encode()
    [entry] = index_entries(COMMIT, [change("prod", "web", release)], position=7)
    assert (entry.kind, entry.release.artifact_id, entry.position) == (WriteKind.RELEASE, "w1", 7)
    # Directories that are not env/app names, and unchanged release records, are not releases.
    assert index_entries(COMMIT, [change(".github", "workflows", release)], 1) == []
    assert index_entries(COMMIT, [change("prod", "web", release, changed=False)], 1) == []
    # Malformed records still count as a release of that app, with the fields left empty.
    [broken] = index_entries(COMMIT, [change("prod", "web", b"{not json")], 1)
    assert (broken.release.app, broken.release.artifact_id) == ("web", "")
    # Only the environment-level file: used when it is about this app.
    [from_env] = index_entries(COMMIT, [change("prod", "web", None, env_release=release)], 1)
    assert from_env.release.artifact_id == "w1"
    other = go_release("prod", "api", "a1").encode()
    assert index_entries(COMMIT, [change("prod", "web", None, env_release=other)], 1) == []


def test_a_gimletd_rollback_names_who_did_it_from_its_trailers() -> None:
    message = (
        "[GimletD rollback] prod/web to aaaaaaaaaaaa by bob\n\n"
        f"This reverts commit {'b' * 40}.\nThis reverts commit {'d' * 40}.\n\n"
        "Gimlet-Event: e1\nGimlet-Artifact: w1\nGimlet-Triggered-By: bob\n"
        "Gimlet-Env: prod\nGimlet-App: web\n"
    )
    commit = CommitInfo(sha="e" * 40, message=message, time=int(time.time()), parent=None)
    restored = go_release("prod", "web", "w1", triggered_by="alice").encode()
    [entry] = index_entries(commit, [change("prod", "web", restored)], 3)
    assert entry.kind is WriteKind.ROLLBACK
    assert entry.reverts == ("b" * 40, "d" * 40)
    assert (entry.release.triggered_by, entry.release.event_id) == ("bob", "e1")
    assert entry.release.artifact_id == "w1"
