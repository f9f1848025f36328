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


def messages(remote: Path, branch: str = "main") -> list[Commit]:
    """Every commit on `branch`, newest first, without its files: one git process for all."""
    if not has_branch(remote, branch):
        return []
    log = git(remote, "log", "--format=%H%x00%B%x1e", branch)
    found = []
    for record in log.split("\x1e"):
        if record.strip():
            sha, message = record.strip("\n").split("\x00", 1)
            found.append(Commit(sha, message, []))
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


def commit_by_hand(
    remote: Path, work: Path, files: dict[str, str | None], message: str, *, rm: str = ""
) -> str:
    """Commit to `remote` as a person would, with git in a clone: set `files` (None deletes
    one), remove directory `rm`; returns the new commit's sha."""
    if not work.exists():
        run_git("clone", "-q", str(remote), str(work))
        run_git("-C", str(work), "checkout", "-q", "-B", "main")
    if has_branch(remote):
        run_git("-C", str(work), "pull", "-q", "--rebase", "origin", "main")
    for path, content in files.items():
        target = work / path
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    if rm:
        run_git("-C", str(work), "rm", "-r", "-q", rm)
    run_git("-C", str(work), "add", "-A")
    run_git(
        "-C", str(work), "-c", "user.name=Gimlet CLI", "-c", "user.email=cli@gimlet.io",
        "commit", "-q", "-m", message,
    )  # fmt: skip
    run_git("-C", str(work), "push", "-q", "origin", "HEAD:main")
    return run_git("-C", str(work), "rev-parse", "HEAD").strip()


def go_release(env: str, app: str, artifact_id: str, triggered_by: str = "policy") -> str:
    """A `release.json` as the Go original wrote it."""
    return json.dumps(
        {
            "app": app,
            "env": env,
            "artifactId": artifact_id,
            "triggeredBy": triggered_by,
            "version": {"repositoryName": f"acme/{app}", "sha": "0" * 40, "branch": "main"},
        }
    )


def fast_import_releases(remote: Path, releases: list[tuple[str, str, str]]) -> None:
    """Append one commit per (env, app, artifact id) in the Go original's layout, fast.

    Uses `git fast-import`, so thousands of commits take about a second and do not
    depend on the code under test.
    """
    chunks = []
    start = 1_700_000_000
    parent = git(remote, "rev-parse", "main").strip() if has_branch(remote) else ""
    for i, (env, app, artifact_id) in enumerate(releases):
        message = f"[Gimlet] {env}/{app} automated deploy"
        release = go_release(env, app, artifact_id)
        deployment = f"kind: Deployment\nmetadata:\n  name: {app}\nimage: {artifact_id}\n"
        chunks.append(
            f"commit refs/heads/main\n"
            f"committer Gimlet CLI <cli@gimlet.io> {start + i} +0000\n"
            f"{_data(message)}"
            f"{f'from {parent}' + chr(10) if parent and i == 0 else ''}"
            f"M 644 inline {env}/{app}/deployment.yaml\n{_data(deployment)}"
            f"M 644 inline {env}/{app}/release.json\n{_data(release)}"
            f"M 644 inline {env}/release.json\n{_data(release)}\n"
        )
    subprocess.run(
        ["git", "--git-dir", str(remote), "fast-import", "--quiet"],
        input="".join(chunks).encode(),
        check=True,
    )


def _data(text: str) -> str:
    return f"data {len(text.encode())}\n{text}\n"
