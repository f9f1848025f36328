"""The pygit2 GitOps repository against real remotes.

Every test marked with the `remote` fixture runs three times: on a bare repository on
disk, over the git protocol (`git daemon`), and over smart HTTP that wants a token
(`git http-backend`), the three ways GimletD writes to a GitOps repository.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pygit2
import pytest

from gimletd.errors import GitOpsError, PushRejected
from gimletd.gitops.repository import (
    MAX_SEARCH_DEPTH,
    AppChange,
    Credentials,
    GitopsRepository,
    WriteOutcome,
    init_bare,
)
from tests.support import gitops
from tests.support.gitdaemon import Remote


def change(env: str = "staging", app: str = "frontend", content: bytes = b"a: 1\n") -> AppChange:
    return AppChange(env, app, {"deployment.yaml": content}, {"release.json": b"{}\n"})


def open_repo(
    remote: Remote | str, tmp_path: Path, name: str = "w0", **kwargs: str
) -> GitopsRepository:
    url, token = (remote, None) if isinstance(remote, str) else (remote.url, remote.token)
    return GitopsRepository(
        url,
        cache_dir=tmp_path / "cache",
        clone_name=name,
        credentials=Credentials(token=token),
        **kwargs,
    )


def git(bare: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(bare), *args], capture_output=True, text=True, check=True
    ).stdout


def remote_files(bare: Path, ref: str = "main") -> set[str]:
    return set(git(bare, "ls-tree", "-r", "--name-only", ref).split())


def test_first_write_to_an_empty_remote_creates_the_branch(remote: Remote, tmp_path: Path) -> None:
    repo = open_repo(remote, tmp_path)
    assert repo.branch == "main"
    assert repo.fetch() is None
    result = repo.write(change(), "first", head=None)
    assert result.outcome is WriteOutcome.COMMITTED
    assert remote_files(remote.bare) == {"staging/frontend/deployment.yaml", "staging/release.json"}


def test_a_write_replaces_the_app_directory_and_keeps_everything_else(
    remote: Remote, tmp_path: Path
) -> None:
    repo = open_repo(remote, tmp_path)
    repo.write(AppChange("staging", "frontend", {"old.yaml": b"x\n"}, {}), "one", head=repo.fetch())
    repo.write(change("staging", "backend"), "two", head=repo.fetch())
    repo.write(change("prod", "frontend"), "three", head=repo.fetch())
    repo.write(change("staging", "frontend"), "four", head=repo.fetch())
    assert remote_files(remote.bare) == {
        "staging/frontend/deployment.yaml",
        "staging/backend/deployment.yaml",
        "staging/release.json",
        "prod/frontend/deployment.yaml",
        "prod/release.json",
    }


def test_a_write_that_changes_nothing_makes_no_commit(remote: Remote, tmp_path: Path) -> None:
    repo = open_repo(remote, tmp_path)
    first = repo.write(change(), "one", head=repo.fetch())
    again = repo.write(change(), "two", head=repo.fetch())
    assert again.outcome is WriteOutcome.UNCHANGED
    assert again.commit == first.commit
    assert git(remote.bare, "rev-list", "--count", "main").strip() == "1"


def test_a_push_on_a_stale_head_is_rejected_and_nothing_is_lost(
    remote: Remote, tmp_path: Path
) -> None:
    """Another writer's commit is never overwritten: the stale push fails (I4)."""
    ours, theirs = open_repo(remote, tmp_path, "a"), open_repo(remote, tmp_path, "b")
    ours.write(change(), "base", head=ours.fetch())
    stale = ours.fetch()
    theirs.write(change("prod", "api"), "foreign", head=theirs.fetch())
    with pytest.raises(PushRejected):
        ours.write(change("staging", "web"), "ours", head=stale)
    ours.write(change("staging", "web"), "ours", head=ours.fetch())
    assert {"prod/api/deployment.yaml", "staging/web/deployment.yaml"} <= remote_files(remote.bare)
    fsck = subprocess.run(["git", "--git-dir", str(remote.bare), "fsck"], capture_output=True)
    assert fsck.returncode == 0


def test_find_commit_stops_at_the_base(remote: Remote, tmp_path: Path) -> None:
    repo = open_repo(remote, tmp_path)
    target = repo.write(change(), "release\n\nGimlet-Event: e1\n", head=repo.fetch()).commit
    base = repo.fetch()
    repo.write(change(content=b"b: 2\n"), "later", head=base)
    head = repo.fetch()
    assert head is not None
    wanted = lambda message: "Gimlet-Event: e1" in message  # noqa: E731
    assert repo.find_commit(head, since=None, matches=wanted) == target
    assert repo.find_commit(head, since=base, matches=wanted) is None


def test_a_commit_is_found_from_a_known_base_however_many_commits_followed(
    remote: Remote, tmp_path: Path
) -> None:
    """A write's own commit, pushed before a mass release of other environments (I2)."""
    repo = open_repo(remote, tmp_path)
    base = repo.write(change(app="other"), "before", head=None).commit
    target = repo.write(change(), "release\n\nGimlet-Event: e1\n", head=base).commit
    later = [("prod", f"app-{n}", f"artifact-{n}") for n in range(MAX_SEARCH_DEPTH + 20)]
    gitops.fast_import_releases(remote.bare, later)
    head = repo.fetch()
    assert head is not None
    wanted = lambda message: "Gimlet-Event: e1" in message  # noqa: E731
    assert repo.find_commit(head, since=base, matches=wanted) == target
    assert repo.find_commit(head, since=None, matches=wanted) is None, "bounded without a base"


def test_a_clone_left_without_its_remote_is_repaired(git_daemon: Remote, tmp_path: Path) -> None:
    """Its process was killed between creating the clone and adding the remote."""
    first = open_repo(git_daemon, tmp_path)  # owns the clone's place, has not opened it
    path = first.path
    first.close()
    pygit2.init_repository(str(path), bare=True)  # what the killed process left
    (path / "config.lock").write_text("")  # killed while writing the config, even
    assert open_repo(git_daemon, tmp_path).write(change(), "one", head=None).commit


def test_files_are_read_back_at_a_commit(remote: Remote, tmp_path: Path) -> None:
    repo = open_repo(remote, tmp_path)
    commit = repo.write(change(), "one", head=repo.fetch()).commit
    assert repo.read_file(commit, "staging/frontend/deployment.yaml") == b"a: 1\n"
    assert repo.read_file(commit, "staging/missing.yaml") is None
    assert repo.list_dir(commit, "staging/frontend") == {"deployment.yaml": b"a: 1\n"}
    assert repo.list_dir(commit, "prod/frontend") == {}


def test_the_remote_default_branch_is_used(remote: Remote, tmp_path: Path) -> None:
    seed = open_repo(remote, tmp_path, "seed", branch="trunk")
    seed.write(change(), "one", head=None)
    git(remote.bare, "symbolic-ref", "HEAD", "refs/heads/trunk")
    assert open_repo(remote, tmp_path, "other").branch == "trunk"


def test_a_network_clone_persists_between_owners(git_daemon: Remote, tmp_path: Path) -> None:
    first = open_repo(git_daemon.url, tmp_path)
    first.write(change(), "one", head=first.fetch())
    first.close()
    second = open_repo(git_daemon.url, tmp_path)
    assert second.path == first.path
    assert pygit2.Repository(str(second.path)).is_bare
    assert second.fetch() is not None


def test_a_network_clone_in_use_is_not_shared(git_daemon: Remote, tmp_path: Path) -> None:
    """Two owners with the same name (two workers named alike) get clones of their own."""
    first = open_repo(git_daemon.url, tmp_path)
    second = open_repo(git_daemon.url, tmp_path)
    assert second.path != first.path
    second.write(change(), "one", head=second.fetch())
    assert first.fetch() is not None


def test_clones_no_process_owns_and_unused_for_a_week_are_removed(
    git_daemon: Remote, tmp_path: Path
) -> None:
    """A container's workers get new clone names with every deploy: old clones must go."""
    names = ("gone", "idle", "recent")
    gone, idle, recent = (open_repo(git_daemon.url, tmp_path, name) for name in names)
    for repo in (gone, idle, recent):
        repo.write(change(content=repo.path.name.encode()), "one", head=repo.fetch())
    gone.close()  # its process ended; idle's is alive, only idle
    recent.close()
    eight_days_ago = time.time() - 8 * 24 * 3600
    for repo in (gone, idle):
        for path in (repo.path, repo.path / "FETCH_HEAD", repo.path.with_suffix(".owner")):
            os.utime(path, (eight_days_ago, eight_days_ago))

    leftover = gone.path.parent / ".dead.git.deleting-0"  # a sweep that died mid-delete
    (leftover / "objects").mkdir(parents=True)

    newcomer = open_repo(git_daemon.url, tmp_path, "newcomer")

    assert not gone.path.exists()
    assert idle.path.is_dir() and recent.path.is_dir()
    assert gone.path.with_suffix(".owner").exists()  # claimed again later, it locks this file
    claimed_again = open_repo(git_daemon.url, tmp_path, "gone")
    assert claimed_again.path == gone.path
    assert claimed_again.fetch() is not None
    assert claimed_again.fetch() == newcomer.fetch()
    assert [p.name for p in gone.path.parent.iterdir() if ".deleting-" in p.name] == []


def test_a_remote_on_disk_is_written_in_place(gitops_remote: Path, tmp_path: Path) -> None:
    """No clone of a remote on disk: its objects are written once, into the remote."""
    repo = open_repo(f"file://{gitops_remote}", tmp_path)
    repo.write(change(), "one", head=repo.fetch())
    assert repo.path == gitops_remote
    assert not (tmp_path / "cache").exists()
    assert "staging/frontend/deployment.yaml" in remote_files(gitops_remote)


def test_a_blob_the_base_tree_holds_is_reused_and_any_other_written_to_refresh_it(
    gitops_remote: Path, tmp_path: Path
) -> None:
    """An unchanged file costs no write; a stored but unreachable blob is written again, so
    libgit2 refreshes its time and a `git gc` cannot prune it as a new tree starts to use it."""
    repo = open_repo(f"file://{gitops_remote}", tmp_path)
    files = {"service.yaml": b"kind: Service\n", "deployment.yaml": b"image: one\n"}
    first = repo.write(AppChange("staging", "web", files, {}), "one", head=repo.fetch())
    orphan = b"image: two\n"  # stored already, reachable from no commit
    repo._repo.create_blob(orphan)

    def loose(content: bytes) -> Path:
        blob = str(pygit2.hash(content))
        return gitops_remote / "objects" / blob[:2] / blob[2:]

    for content in (files["service.yaml"], orphan):
        os.utime(loose(content), (1_000_000_000, 1_000_000_000))
    second = {**files, "deployment.yaml": orphan}
    repo.write(AppChange("staging", "web", second, {}), "two", head=first.commit)
    assert loose(files["service.yaml"]).stat().st_mtime == 1_000_000_000, "reused as it was"
    assert loose(orphan).stat().st_mtime > 1_000_000_000, "written again: refreshed"
    assert git(gitops_remote, "show", "main:staging/web/deployment.yaml") == "image: two\n"


def test_a_ref_lock_left_by_a_writer_that_died_is_removed_and_a_live_one_respected(
    gitops_remote: Path, tmp_path: Path
) -> None:
    """Found by the resilience suite: a worker killed inside the ref transaction left
    `refs/heads/main.lock`, and every later push was refused until writes were given up."""
    from gimletd.gitops import repository

    repo = open_repo(f"file://{gitops_remote}", tmp_path)
    first = repo.write(change(content=b"a: 1\n"), "one", head=repo.fetch())
    lock = gitops_remote / "refs" / "heads" / "main.lock"
    lock.write_text(first.commit + "\n")  # a writer busy with the branch right now
    with pytest.raises(PushRejected, match="being updated"):
        repo.write(change(content=b"a: 2\n"), "two", head=first.commit)
    assert lock.exists(), "a fresh lock is another writer's: left alone"
    dead = time.time() - repository.STALE_REF_LOCK - 1
    os.utime(lock, (dead, dead))
    second = repo.write(change(content=b"a: 2\n"), "two", head=first.commit)
    assert not lock.exists()
    assert git(gitops_remote, "rev-parse", "main").strip() == second.commit
    git(gitops_remote, "fsck", "--strict")


def test_an_unreachable_remote_is_a_gitops_error_naming_it_at_first_use(tmp_path: Path) -> None:
    """Opening costs nothing; using it fails, so a write counts the attempt and retries."""
    on_disk = open_repo(str(tmp_path / "missing.git"), tmp_path)
    with pytest.raises(GitOpsError, match=r"missing\.git"):
        on_disk.fetch()
    with pytest.raises(GitOpsError, match=r"127\.0\.0\.1:9"):
        open_repo("git://127.0.0.1:9/missing.git", tmp_path).fetch()


def test_a_remote_on_disk_moved_away_mid_write_is_an_error_and_nothing_appears_in_its_place(
    tmp_path: Path,
) -> None:
    """Its branch must not read as new, nor libgit2 recreate its directories for a ref lock."""
    init_bare(tmp_path / "gitops.git")
    repo = open_repo(str(tmp_path / "gitops.git"), tmp_path)
    head = repo.write(change(), "first", head=None).commit
    commit = repo.commit(change(content=b"a: 2\n"), "second", parent=head)
    assert commit is not None
    (tmp_path / "gitops.git").rename(tmp_path / "away.git")
    with pytest.raises(GitOpsError, match="is not there"):
        repo.fetch()
    with pytest.raises(GitOpsError, match="is not there"):
        repo.push(commit, expected=head)
    assert not (tmp_path / "gitops.git").exists()
    (tmp_path / "away.git").rename(tmp_path / "gitops.git")
    repo.push(commit, expected=head)
    assert repo.fetch() == commit


def test_a_remote_that_comes_back_is_used_again(tmp_path: Path) -> None:
    repo = open_repo(str(tmp_path / "later.git"), tmp_path)
    with pytest.raises(GitOpsError):
        repo.fetch()
    init_bare(tmp_path / "later.git")
    assert repo.fetch() is None  # there now, and empty


def _write_many(url: str, token: str | None, cache: str, name: str, count: int) -> int:
    """Write `count` releases of app `name`, re-applying on the new head when rejected."""
    repo = GitopsRepository(
        url, cache_dir=Path(cache), clone_name=name, credentials=Credentials(token=token)
    )
    rejected = 0
    for n in range(count):
        while True:
            try:
                repo.write(change("staging", name, f"n: {n}\n".encode()), name, head=repo.fetch())
                break
            except PushRejected:
                rejected += 1
    return rejected


def test_concurrent_writers_never_lose_a_commit(remote: Remote, tmp_path: Path) -> None:
    """Four processes pushing to one branch: every commit lands, none is overwritten (I4)."""
    writers, count = 4, 10
    with ProcessPoolExecutor(writers) as pool:
        futures = [
            pool.submit(
                _write_many, remote.url, remote.token, str(tmp_path / "c"), f"app{i}", count
            )
            for i in range(writers)
        ]
        rejected = sum(f.result() for f in futures)
    subjects = git(remote.bare, "log", "--format=%s", "main").split()
    assert sorted(subjects) == sorted(f"app{i}" for i in range(writers) for _ in range(count))
    assert rejected > 0, "the writers never raced; the test proves nothing"


def test_init_bare_is_idempotent(tmp_path: Path) -> None:
    init_bare(tmp_path / "r.git", branch="trunk")
    init_bare(tmp_path / "r.git", branch="main")
    assert git(tmp_path / "r.git", "symbolic-ref", "HEAD").strip() == "refs/heads/trunk"


def test_an_https_remote_without_a_token_says_which_setting_is_missing(
    git_http: Remote, tmp_path: Path
) -> None:
    with pytest.raises(GitOpsError, match="GITOPS_REPO_TOKEN"):
        GitopsRepository(git_http.url, cache_dir=tmp_path / "c", clone_name="h").fetch()
