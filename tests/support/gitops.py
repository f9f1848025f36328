"""Reading a bare GitOps remote with the git command line, independently of the code under test."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str
    files: list[str]

    @property
    def trailers(self) -> dict[str, str]:
        last = self.message.strip().split("\n\n")[-1]
        return dict(line.split(": ", 1) for line in last.splitlines() if ": " in line)


def git(remote: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote), *args], capture_output=True, text=True, check=True
    ).stdout


def has_branch(remote: Path, branch: str = "main") -> bool:
    return bool(git(remote, "branch", "--list", branch).strip())


def commits(remote: Path, branch: str = "main") -> list[Commit]:
    """Every commit on `branch`, newest first, with the files it changed."""
    if not has_branch(remote, branch):
        return []
    found = []
    for sha in git(remote, "rev-list", branch).split():
        message = git(remote, "show", "-s", "--format=%B", sha)
        files = git(remote, "show", "--name-only", "--format=", sha).split()
        found.append(Commit(sha, message, files))
    return found


def read(remote: Path, path: str, ref: str = "main") -> str:
    return git(remote, "show", f"{ref}:{path}")


def read_json(remote: Path, path: str, ref: str = "main") -> Any:
    return json.loads(read(remote, path, ref))


def fsck(remote: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "--git-dir", str(remote), "fsck", "--strict"], capture_output=True, text=True
    )


def run_git(*args: str) -> str:
    """Run git as another user of the repository would."""
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout
