"""Upkeep of the object stores GimletD writes to: `git gc --auto` where git would run it.

A network remote's clone gains a pack with every fetch that brings objects, and a
remote on disk gains loose objects with every release; both are packed by git's own
rule (`gc.auto`, `gc.autoPackLimit`), which the tests set low to reach it quickly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pygit2
import pytest

from gimletd.errors import GitOpsError
from gimletd.gitops import repository
from gimletd.gitops.repository import GitopsRepository
from tests.core.gitops.test_repository import change, git, open_repo
from tests.support.gitdaemon import Remote


@pytest.fixture(autouse=True)
def look_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pause between looks, so each test sees every look's answer."""
    monkeypatch.setattr(repository, "LOOK_PAUSE", 0.0)
    monkeypatch.setattr(repository, "FAILED_UPKEEP_PAUSE", 0.0)


def packs(repo: Path) -> int:
    return len(list((repo / "objects" / "pack").glob("*.pack")))


def loose_in_17(repo: Path) -> int:
    """The loose objects in the fan-out directory git counts from."""
    return len(list((repo / "objects" / "17").glob("*")))


def release(repo: GitopsRepository, content: bytes, app: str = "frontend") -> str:
    result = repo.write(change(app=app, content=content), f"release {content!r}", head=repo.fetch())
    return result.commit


def contents_whose_blob_is_in_17(count: int) -> list[bytes]:
    """File contents whose blob ids start with 17, so their objects land in objects/17."""
    found = []
    for n in itertools.count():
        content = f"image: app:{n}\n".encode()
        if str(pygit2.hash(content)).startswith("17"):
            found.append(content)
            if len(found) == count:
                return found
    raise AssertionError("unreachable")


def deleted_files_held(repo: Path) -> list[str]:
    """Files under `repo` this process still holds open although they were removed."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(repo)) and target.endswith(" (deleted)"):
                held.append(target)
    return held


def packed_at_two_loose_objects(remote: Path, tmp_path: Path) -> GitopsRepository:
    """A writer of `remote`, after one release, with gc.auto 1: git packs at two loose
    objects in objects/17 (see `contents_whose_blob_is_in_17`)."""
    ours = open_repo(str(remote), tmp_path)
    release(ours, b"a: 0\n")
    git(remote, "config", "gc.auto", "1")
    return ours


def fsck(repo: Path) -> None:
    done = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_packs_fetches_leave_in_a_network_clone_are_packed_into_one(
    git_daemon: Remote, tmp_path: Path
) -> None:
    ours, theirs = open_repo(git_daemon, tmp_path, "w0"), open_repo(git_daemon, tmp_path, "w1")
    release(ours, b"a: 0\n")
    git(ours.path, "config", "gc.autoPackLimit", "4")
    for n in range(1, 6):  # each fetch brings the other worker's commit: a pack each
        release(theirs, f"a: {n}\n".encode())
        ours.fetch()
    assert packs(ours.path) >= 5
    assert ours.upkeep_due()

    ours.upkeep()

    assert packs(ours.path) == 1
    assert deleted_files_held(ours.path) == []  # the packs gc removed are let go
    assert not ours.upkeep_due()
    last = release(ours, b"a: 6\n")  # the reopened repository writes on the fetched head
    assert git(git_daemon.bare, "rev-parse", "main").strip() == last
    assert git(git_daemon.bare, "rev-list", "--count", "main").strip() == "7"
    fsck(ours.path)


def test_loose_objects_on_a_remote_on_disk_are_packed_and_another_writer_goes_on(
    gitops_remote: Path, tmp_path: Path
) -> None:
    ours, other = open_repo(str(gitops_remote), tmp_path), open_repo(str(gitops_remote), tmp_path)
    release(ours, b"a: 0\n")
    release(other, b"b: 0\n", app="backend")  # another process, with the repository open
    git(gitops_remote, "config", "gc.auto", "1")  # over 1 loose object in objects/17: pack
    assert not ours.upkeep_due()
    for content in contents_whose_blob_is_in_17(2):
        release(ours, content)
    assert loose_in_17(gitops_remote) >= 2
    assert ours.upkeep_due()

    ours.upkeep()

    assert loose_in_17(gitops_remote) == 0  # reachable, so packed
    assert packs(gitops_remote) == 1
    release(other, b"b: 1\n", app="backend")  # its old handles read what gc packed
    assert set(git(gitops_remote, "ls-tree", "--name-only", "main", "staging/").split()) == {
        "staging/backend",
        "staging/frontend",
        "staging/release.json",
    }
    assert git(gitops_remote, "rev-list", "--count", "main").strip() == "5"
    fsck(gitops_remote)


def test_a_gc_that_leaves_the_repository_as_due_as_before_rests_a_day(
    gitops_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = packed_at_two_loose_objects(gitops_remote, tmp_path)
    raw = pygit2.Repository(str(gitops_remote))
    for content in contents_whose_blob_is_in_17(2):
        raw.create_blob(content)  # as a push that lost its race leaves them: unreachable
    assert ours.upkeep_due()

    ours.upkeep()

    # Younger than git's two weeks, so gc keeps them loose: looking again would run
    # gc after every drain for nothing.
    assert loose_in_17(gitops_remote) == 2
    assert not ours.upkeep_due()
    a_day_later = time.monotonic() + repository.STILL_DUE_PAUSE + 1
    monkeypatch.setattr(repository, "time", SimpleNamespace(monotonic=lambda: a_day_later))
    assert ours.upkeep_due()


def test_gc_keeps_fresh_unreachable_objects_whatever_gc_prune_expire_says(
    gitops_remote: Path, tmp_path: Path
) -> None:
    ours = packed_at_two_loose_objects(gitops_remote, tmp_path)
    git(gitops_remote, "config", "gc.pruneExpire", "now")
    raw = pygit2.Repository(str(gitops_remote))
    # Objects of a commit another worker is building: unreachable until its push lands.
    in_flight = [raw.create_blob(content) for content in contents_whose_blob_is_in_17(2)]

    ours.upkeep()

    assert all(blob in raw for blob in in_flight)


def test_another_process_lets_go_of_the_packs_gc_removed_at_its_next_look(
    gitops_remote: Path, tmp_path: Path
) -> None:
    ours, other = open_repo(str(gitops_remote), tmp_path), open_repo(str(gitops_remote), tmp_path)
    for n in range(3):  # three packs, each with one release's objects
        release(ours, f"a: {n}\n".encode(), app=f"app-{n}")
        git(gitops_remote, "repack", "-d", "-q")
    release(other, b"b: 0\n", app="backend")  # reads the head's tree: opens the packs
    assert other.upkeep_due() is False  # its first look: it has seen the three packs
    git(gitops_remote, "config", "gc.autoPackLimit", "2")
    assert ours.upkeep_due()
    ours.upkeep()
    assert packs(gitops_remote) == 1
    assert deleted_files_held(gitops_remote) != []  # `other` still holds the removed packs

    other.upkeep_due()

    assert deleted_files_held(gitops_remote) == []
    release(other, b"b: 1\n", app="backend")
    fsck(gitops_remote)


def test_a_gc_past_its_timeout_is_stopped_with_everything_it_started(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    command = ["sh", "-c", f"sleep 60 & echo $! > {child_pid}; wait"]
    with pytest.raises(subprocess.TimeoutExpired):
        repository._run_in_own_process_group(command, "a sleeping gc", timeout=3.0)
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)


def test_a_gc_that_found_another_gc_running_here_looks_again_soon(
    gitops_remote: Path, tmp_path: Path
) -> None:
    ours = packed_at_two_loose_objects(gitops_remote, tmp_path)
    for content in contents_whose_blob_is_in_17(2):
        release(ours, content)
    # Another worker's gc holds git's lock: a live process on this host.
    (gitops_remote / "gc.pid").write_text(f"{os.getpid()} {socket.gethostname()}")
    assert ours.upkeep_due()

    ours.upkeep()  # git's gc --auto sees the lock and does nothing

    assert loose_in_17(gitops_remote) == 2
    assert ours.upkeep_due()  # no day's rest: it looks again, and packs once the lock is gone
    (gitops_remote / "gc.pid").unlink()
    ours.upkeep()
    assert loose_in_17(gitops_remote) == 0


def test_a_prune_expiry_longer_than_two_weeks_is_kept(gitops_remote: Path, tmp_path: Path) -> None:
    ours = packed_at_two_loose_objects(gitops_remote, tmp_path)
    git(gitops_remote, "config", "gc.pruneExpire", "1.month.ago")
    raw = pygit2.Repository(str(gitops_remote))
    three_weeks_ago = time.time() - 21 * 24 * 3600
    unreachable = []
    for content in contents_whose_blob_is_in_17(2):
        blob = raw.create_blob(content)
        loose = gitops_remote / "objects" / str(blob)[:2] / str(blob)[2:]
        os.utime(loose, (three_weeks_ago, three_weeks_ago))
        unreachable.append(blob)

    ours.upkeep()

    assert all(blob in raw for blob in unreachable)  # younger than the month asked for


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_gc_auto_0_turns_upkeep_off_as_it_does_for_git(git_daemon: Remote, tmp_path: Path) -> None:
    ours, theirs = open_repo(git_daemon, tmp_path, "w0"), open_repo(git_daemon, tmp_path, "w1")
    release(ours, b"a: 0\n")
    git(ours.path, "config", "gc.autoPackLimit", "1")
    git(ours.path, "config", "gc.auto", "0")
    for n in range(1, 4):
        release(theirs, f"a: {n}\n".encode())
        ours.fetch()
    assert packs(ours.path) >= 3
    assert not ours.upkeep_due()


def test_a_look_is_not_repeated_within_the_pause(
    git_daemon: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repository, "LOOK_PAUSE", 3600.0)
    ours, theirs = open_repo(git_daemon, tmp_path, "w0"), open_repo(git_daemon, tmp_path, "w1")
    release(ours, b"a: 0\n")
    git(ours.path, "config", "gc.autoPackLimit", "1")
    assert not ours.upkeep_due()  # one pack: nothing to do, and no look for an hour
    for n in range(1, 4):
        release(theirs, f"a: {n}\n".encode())
        ours.fetch()
    assert not ours.upkeep_due()
    an_hour_later = time.monotonic() + 3601
    monkeypatch.setattr(repository, "time", SimpleNamespace(monotonic=lambda: an_hour_later))
    assert ours.upkeep_due()


def test_without_git_upkeep_is_an_error_that_says_so(
    gitops_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = open_repo(str(gitops_remote), tmp_path)
    release(ours, b"a: 0\n")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(GitOpsError, match="git is not installed"):
        ours.upkeep()
