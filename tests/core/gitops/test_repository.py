"""The pygit2 GitOps repository against real bare remotes on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest

from gimletd.errors import GitOpsError, PushRejected
from gimletd.gitops.repository import (
    AppChange,
    GitopsRepository,
    WriteOutcome,
    init_bare,
)


def change(env: str = "staging", app: str = "frontend", content: bytes = b"a: 1\n") -> AppChange:
    return AppChange(env, app, {"deployment.yaml": content}, {"release.json": b"{}\n"})


def clone(remote: Path, tmp_path: Path, name: str = "w0") -> GitopsRepository:
    return GitopsRepository(str(remote), cache_dir=tmp_path / "cache", clone_name=name)


def remote_files(remote: Path, ref: str = "main") -> set[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(remote), "ls-tree", "-r", "--name-only", ref],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(out.stdout.split())


def test_first_write_to_an_empty_remote_creates_the_branch(
    gitops_remote: Path, tmp_path: Path
) -> None:
    repo = clone(gitops_remote, tmp_path)
    assert repo.branch == "main"
    assert repo.fetch() is None
    result = repo.write(change(), "first", head=None)
    assert result.outcome is WriteOutcome.COMMITTED
    assert remote_files(gitops_remote) == {
        "staging/frontend/deployment.yaml",
        "staging/release.json",
    }


def test_a_write_replaces_the_app_directory_and_keeps_everything_else(
    gitops_remote: Path, tmp_path: Path
) -> None:
    repo = clone(gitops_remote, tmp_path)
    repo.write(AppChange("staging", "frontend", {"old.yaml": b"x\n"}, {}), "one", head=repo.fetch())
    repo.write(change("staging", "backend"), "two", head=repo.fetch())
    repo.write(change("prod", "frontend"), "three", head=repo.fetch())
    repo.write(change("staging", "frontend"), "four", head=repo.fetch())
    assert remote_files(gitops_remote) == {
        "staging/frontend/deployment.yaml",
        "staging/backend/deployment.yaml",
        "staging/release.json",
        "prod/frontend/deployment.yaml",
        "prod/release.json",
    }


def test_a_write_that_changes_nothing_makes_no_commit(gitops_remote: Path, tmp_path: Path) -> None:
    repo = clone(gitops_remote, tmp_path)
    first = repo.write(change(), "one", head=repo.fetch())
    again = repo.write(change(), "two", head=repo.fetch())
    assert again.outcome is WriteOutcome.UNCHANGED
    assert again.commit == first.commit


def test_a_push_on_a_stale_head_is_rejected_and_nothing_is_lost(
    gitops_remote: Path, tmp_path: Path
) -> None:
    """Another writer's commit is never overwritten: the stale push fails (I4)."""
    ours, theirs = clone(gitops_remote, tmp_path, "a"), clone(gitops_remote, tmp_path, "b")
    ours.write(change(), "base", head=ours.fetch())
    stale = ours.fetch()
    theirs.write(change("prod", "api"), "foreign", head=theirs.fetch())
    with pytest.raises(PushRejected):
        ours.write(change("staging", "web"), "ours", head=stale)
    ours.write(change("staging", "web"), "ours", head=ours.fetch())
    assert "prod/api/deployment.yaml" in remote_files(gitops_remote)
    assert "staging/web/deployment.yaml" in remote_files(gitops_remote)
    fsck = subprocess.run(["git", "--git-dir", str(gitops_remote), "fsck"], capture_output=True)
    assert fsck.returncode == 0


def test_find_commit_stops_at_the_base(gitops_remote: Path, tmp_path: Path) -> None:
    repo = clone(gitops_remote, tmp_path)
    target = repo.write(change(), "release\n\nGimlet-Event: e1\n", head=repo.fetch()).commit
    base = repo.fetch()
    repo.write(change(content=b"b: 2\n"), "later", head=base)
    head = repo.fetch()
    assert head is not None
    wanted = lambda message: "Gimlet-Event: e1" in message  # noqa: E731
    assert repo.find_commit(head, since=None, matches=wanted) == target
    assert repo.find_commit(head, since=base, matches=wanted) is None


def test_the_clone_persists_between_instances(gitops_remote: Path, tmp_path: Path) -> None:
    first = clone(gitops_remote, tmp_path)
    first.write(change(), "one", head=first.fetch())
    first.close()
    second = clone(gitops_remote, tmp_path)
    assert second.path == first.path
    assert pygit2.Repository(str(second.path)).is_bare


def test_a_clone_in_use_is_not_shared(gitops_remote: Path, tmp_path: Path) -> None:
    """Two owners with the same name (two workers named alike) get clones of their own."""
    first = clone(gitops_remote, tmp_path)
    second = clone(gitops_remote, tmp_path)
    assert second.path != first.path
    second.write(change(), "one", head=second.fetch())
    assert first.fetch() is not None


def test_the_remote_default_branch_is_used(tmp_path: Path) -> None:
    """An empty remote advertises no branch, so the first writer names it; others follow HEAD."""
    remote = tmp_path / "trunk.git"
    init_bare(remote, branch="trunk")
    seed = GitopsRepository(str(remote), cache_dir=tmp_path / "c", clone_name="s", branch="trunk")
    seed.write(change(), "one", head=None)
    assert clone(remote, tmp_path, "other").branch == "trunk"


def test_file_urls_work_like_paths(gitops_remote: Path, tmp_path: Path) -> None:
    repo = GitopsRepository(f"file://{gitops_remote}", cache_dir=tmp_path / "c", clone_name="f")
    repo.write(change(), "one", head=repo.fetch())
    assert "staging/frontend/deployment.yaml" in remote_files(gitops_remote)


def test_an_unreachable_remote_is_a_gitops_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(GitOpsError, match=r"missing\.git"):
        clone(tmp_path / "missing.git", tmp_path)


def _write_many(remote: str, cache: str, name: str, count: int) -> int:
    """Write `count` releases of app `name`, re-applying on the new head when rejected."""
    repo = GitopsRepository(remote, cache_dir=Path(cache), clone_name=name)
    rejected = 0
    for n in range(count):
        while True:
            try:
                repo.write(change("staging", name, f"n: {n}\n".encode()), name, head=repo.fetch())
                break
            except PushRejected:
                rejected += 1
    return rejected


def test_concurrent_writers_never_lose_a_commit(gitops_remote: Path, tmp_path: Path) -> None:
    """Four processes pushing to one branch: every commit lands, none is overwritten (I4)."""
    from concurrent.futures import ProcessPoolExecutor

    writers, count = 4, 10
    with ProcessPoolExecutor(writers) as pool:
        futures = [
            pool.submit(_write_many, str(gitops_remote), str(tmp_path / "c"), f"app{i}", count)
            for i in range(writers)
        ]
        rejected = sum(f.result() for f in futures)
    log = subprocess.run(
        ["git", "--git-dir", str(gitops_remote), "log", "--format=%s", "main"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert sorted(log) == sorted(f"app{i}" for i in range(writers) for _ in range(count))
    assert rejected > 0, "the writers never raced; the test proves nothing"
