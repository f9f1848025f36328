"""A real network git remote for tests: `git daemon` serving bare repositories on a free port.

libgit2 speaks the git protocol to it and the daemon runs receive-pack, so pushes
get the same server-side compare-and-swap as on GitHub or GitLab.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gimletd.gitops.repository import init_bare
from tests.support.ports import free_port, listening


@dataclass(frozen=True)
class Remote:
    """A GitOps remote as GimletD is configured with it, and the bare repository behind it."""

    url: str
    bare: Path
    token: str | None = None


@contextlib.contextmanager
def served_by_git_daemon(base: Path) -> Iterator[str]:
    """Serve the bare repositories in `base` over the git protocol, pushes enabled.

    Yields the URL prefix, `git://127.0.0.1:<port>`; bench/upkeep.py uses it too.

    :raise RuntimeError: the daemon did not start within 10 seconds.
    """
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
         "--informative-errors", f"--base-path={base}", "--listen=127.0.0.1",
         f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not listening(port, daemon, timeout=10):
            raise RuntimeError("git daemon did not start")
        yield f"git://127.0.0.1:{port}"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[Remote]:
    """A bare repository served by `git daemon` with pushes enabled."""
    if shutil.which("git") is None:
        pytest.fail("git is not installed: ./dev test installs it")
    base = tmp_path / "served"
    bare = base / "gitops.git"
    init_bare(bare)
    with served_by_git_daemon(base) as server:
        yield Remote(f"{server}/gitops.git", bare)


@pytest.fixture(params=["path", "git-daemon", "http-token"])
def remote(request: pytest.FixtureRequest, gitops_remote: Path) -> Remote:
    """Each kind of remote GimletD writes to: on disk, git protocol, smart HTTP with a token."""
    if request.param == "path":
        return Remote(str(gitops_remote), gitops_remote)
    served: Remote = request.getfixturevalue(
        "git_daemon" if request.param == "git-daemon" else "git_http"
    )
    return served
