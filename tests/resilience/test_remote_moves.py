"""The remote moves: a second writer pushes unrelated commits in a loop during a load run (I4)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gimletd.settings import Settings
from tests.resilience.harness import Install, Outcome, check, releases
from tests.support import gitops

ARTIFACTS = 200
ENVIRONMENTS = 10
ROUNDS = 4  # the load is posted in rounds; the second writer lands a commit in each
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "someone", "GIT_AUTHOR_EMAIL": "someone@example.com",
    "GIT_COMMITTER_NAME": "someone", "GIT_COMMITTER_EMAIL": "someone@example.com",
}  # fmt: skip


class ForeignWriter(threading.Thread):
    """Commits `infra/note-<n>.txt` and pushes it, again and again, as a person or a bot would.

    A rejected push is rebased on the new head and pushed again; every commit
    that made it to the remote is remembered.
    """

    def __init__(self, remote: Path, work: Path) -> None:
        super().__init__()
        self.remote, self.work = remote, work
        self.env = {**os.environ, **GIT_IDENTITY}
        self.pushed: list[str] = []
        self.rejected = 0
        self.stopping = threading.Event()

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(self.work), *args], env=self.env,
                              capture_output=True, text=True, check=check)  # fmt: skip

    def run(self) -> None:
        subprocess.run(["git", "clone", "-q", str(self.remote), str(self.work)], check=True,
                       env=self.env, capture_output=True)  # fmt: skip
        n = 0
        while not self.stopping.is_set():
            n += 1
            note = self.work / "infra" / f"note-{n}.txt"
            note.parent.mkdir(exist_ok=True)
            note.write_text(f"note {n}\n")
            self.git("add", "infra")
            self.git("commit", "-q", "-m", f"infra: note {n}")
            while self.git("push", "-q", "origin", "HEAD:main", check=False).returncode != 0:
                self.rejected += 1
                self.git("pull", "-q", "--rebase", "origin", "main")
            self.pushed.append(f"infra: note {n}")

    def wait_for_push(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` commits have landed; GimletD may win the race for a while."""
        deadline = time.monotonic() + timeout
        while len(self.pushed) < count:
            if time.monotonic() > deadline or not self.is_alive():
                raise AssertionError(f"the second writer pushed {len(self.pushed)} of {count}")
            time.sleep(0.05)


@pytest.mark.slow
def test_unrelated_commits_pushed_during_a_load_run_all_survive(
    tmp_path: Path,
    artifact: dict[str, Any],
    install_settings: Settings,
    start_install: Callable[..., Install],
    report: Callable[[Outcome], None],
) -> None:
    install = start_install(install_settings, workers=3)
    # The remote needs a main branch to clone: the first release makes it.
    first = install.post(releases(artifact, [0], ENVIRONMENTS))
    install.wait_until_settled(first.accepted.values())
    writer = ForeignWriter(install.remote, tmp_path / "someone")
    writer.start()
    # GimletD pushes far faster than a person with the git CLI, so left to the race
    # the second writer may land only a commit or two. After each round the test waits
    # until the writer has landed one commit per round so far, so GimletD's releases
    # of the next round are written on top of at least one more foreign commit.
    # (Pushes rebuilt after a rejection are GimletD's own races here; the core test
    # of a push on a stale head covers a foreign commit landing mid-write.)
    posted = first
    size = -(-(ARTIFACTS - 1) // ROUNDS)
    for round_ in range(ROUNDS):
        numbers = range(1 + round_ * size, min(ARTIFACTS, 1 + (round_ + 1) * size))
        posted = install.post(releases(artifact, numbers, ENVIRONMENTS), clients=8, posted=posted)
        writer.wait_for_push(round_ + 1)
    install.wait_until_settled(posted.accepted.values())
    writer.stopping.set()
    writer.join(timeout=60)
    assert not writer.is_alive(), "the second writer did not stop"

    outcome = check("remote moves", install, posted)
    history = [c.message.splitlines()[0] for c in reversed(gitops.messages(install.remote))]
    lost = [subject for subject in writer.pushed if subject not in history]
    outcome.breaches.extend(f"foreign commit lost: {subject} (I4)" for subject in lost)
    tree = set(gitops.git(install.remote, "ls-tree", "--name-only", "main", "infra/").split())
    missing = [n for n in range(1, len(writer.pushed) + 1) if f"infra/note-{n}.txt" not in tree]
    outcome.breaches.extend(f"infra/note-{n}.txt gone from main (I4)" for n in missing)
    built_on = _foreign_commits_built_on(history)
    outcome.extra.update(
        foreign_commits=len(writer.pushed), foreign_rejected=writer.rejected,
        foreign_commits_gimletd_wrote_on=built_on,
    )  # fmt: skip
    report(outcome)
    assert built_on >= ROUNDS - 1, "GimletD hardly wrote on top of the second writer's commits"
    assert sum(outcome.events.values()) == ARTIFACTS


def _foreign_commits_built_on(history: list[str]) -> int:
    """How many of the second writer's commits a later GimletD release commit stands on.

    `history` is main's subjects, oldest first; main is linear, so a release commit
    after a foreign one was written on top of it and had to keep its files.
    """
    last_release = max((i for i, s in enumerate(history) if not s.startswith("infra:")), default=-1)
    return sum(1 for s in history[:last_release] if s.startswith("infra:"))
