"""The GitOps repository's conventions, without I/O: paths, release records, commit messages.

Layout (release-flow.md):

    <env>/<app>/<kind>-<name>.yaml   one file per rendered resource
    <env>/<app>/release.json         the release record of what is there
    <env>/release.json               the last release in the environment, for old clients

`<env>/release.json` is rewritten by every release to the environment. That does
not add a hot spot: writes to one environment are serialised anyway, and each
write rebuilds its tree on the fetched head instead of merging, so a concurrent
change to that file by another writer never conflicts; apps in different
environments never touch the same file.

Every commit carries trailers (`Gimlet-Event`, `Gimlet-Artifact`,
`Gimlet-Triggered-By`, `Gimlet-Env`, `Gimlet-App`) so history is auditable
from git alone and a redelivered task can find the commit it already made (I2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gimletd.models import POLICY_TRIGGER, Release, check_dns_label

RELEASE_FILE = "release.json"

TRAILER_EVENT = "Gimlet-Event"
#: `git@github.com:owner/repo.git`, the scp-like form of an ssh remote.
_SCP_LIKE = re.compile(r"^[\w.-]+@(?P<host>[\w.-]+):(?P<path>(?!/)[^\s]+)$")
TRAILER_ARTIFACT = "Gimlet-Artifact"
TRAILER_TRIGGERED_BY = "Gimlet-Triggered-By"
TRAILER_ENV = "Gimlet-Env"
TRAILER_APP = "Gimlet-App"


@dataclass(frozen=True)
class CommitTrailers:
    """The facts a GimletD commit records about itself."""

    event_id: str
    artifact_id: str
    triggered_by: str
    env: str
    app: str

    def as_pairs(self) -> list[tuple[str, str]]:
        return [
            (TRAILER_EVENT, self.event_id),
            (TRAILER_ARTIFACT, self.artifact_id),
            (TRAILER_TRIGGERED_BY, self.triggered_by),
            (TRAILER_ENV, self.env),
            (TRAILER_APP, self.app),
        ]


def public_repo_url(url: str) -> str:
    """A repository URL as release records, the API and `/metrics` show it: without secrets.

    Credentials may be written into an https GITOPS_REPO (`user:token@`); they must
    not end up in a commit or an answer. Other schemes keep their user (`ssh://git@`
    names the login, not a secret) and lose a password written after it.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    if parts.scheme in ("http", "https"):
        return urlunsplit(parts._replace(netloc=host))
    if ":" in userinfo:
        return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}@{host}"))
    return url


def commit_web_url(repo_url: str, sha: str) -> str | None:
    """The page of commit `sha` on the repository's web host; None for a local repository.

    For the remotes hosted SCMs give (`https://host/owner/repo.git`,
    `git@host:owner/repo.git`, `ssh://git@host/owner/repo.git`): GitHub and GitLab
    show a commit at `/commit/<sha>`, Bitbucket at `/commits/<sha>`.
    """
    if not sha:
        return None
    scp = _SCP_LIKE.match(repo_url)
    if scp is not None:
        host, path = scp.group("host"), scp.group("path")
    else:
        parts = urlsplit(public_repo_url(repo_url))
        if parts.scheme not in ("https", "http", "ssh") or not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
    path = path.strip("/").removesuffix(".git")
    if path.count("/") < 1:
        return None
    page = "commits" if host == "bitbucket.org" else "commit"
    return f"https://{host}/{path}/{page}/{sha}"


def app_dir(env: str, app: str) -> str:
    """`<env>/<app>`, refusing anything that is not two DNS-1123 labels."""
    return f"{check_dns_label(env, 'env')}/{check_dns_label(app, 'app')}"


def release_json(release: Release) -> bytes:
    """The bytes of a `release.json`: stable key order, indented, newline at the end."""
    return (json.dumps(release.to_json(), indent=2, sort_keys=True) + "\n").encode()


def app_files(files: Mapping[str, bytes], release: Release) -> dict[str, bytes]:
    """The complete content of `<env>/<app>/`: the rendered files plus `release.json`."""
    for name in files:
        if "/" in name or name in ("", ".", "..") or name == RELEASE_FILE:
            raise ValueError(f"rendered file name {name!r} is not allowed in {release.env}/")
    return {**files, RELEASE_FILE: release_json(release)}


def deploy_message(env: str, app: str, triggered_by: str, trailers: CommitTrailers) -> str:
    """`[Gimlet] <env>/<app> automated deploy` for policy deploys, `release by <login>` else."""
    action = "automated deploy" if triggered_by == POLICY_TRIGGER else f"release by {triggered_by}"
    return with_trailers(f"[Gimlet] {env}/{app} {action}", trailers)


def delete_message(env: str, app: str, deleted_by: str, trailers: CommitTrailers) -> str:
    """`[GimletD delete] <env>/<app> deleted by <who>`, as the Go original wrote it."""
    return with_trailers(f"[GimletD delete] {env}/{app} deleted by {deleted_by}", trailers)


def rollback_message(
    env: str, app: str, target: str, reverted: list[str], rolled_back_by: str,
    trailers: CommitTrailers,
) -> str:  # fmt: skip
    """Names every reverted commit with `This reverts commit <sha>.`, as `git revert` does.

    The Go original's clients find rolled-back releases by that sentence.
    """
    subject = f"[GimletD rollback] {env}/{app} to {target[:12]} by {rolled_back_by}"
    body = "\n".join(f"This reverts commit {sha}." for sha in reverted)
    return with_trailers(f"{subject}\n\n{body}" if body else subject, trailers)


def with_trailers(subject: str, trailers: CommitTrailers) -> str:
    lines = [f"{key}: {_one_line(value)}" for key, value in trailers.as_pairs()]
    return subject + "\n\n" + "\n".join(lines) + "\n"


def parse_trailers(message: str) -> dict[str, str]:
    """The `Key: value` trailers of the last paragraph of a commit message."""
    paragraphs = message.strip().split("\n\n")
    trailers: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and " " not in key:
            trailers[key] = value.strip()
    return trailers


def is_commit_of(message: str, event_id: str, env: str, app: str) -> bool:
    """True when a commit message says it is the write of (event, env, app)."""
    trailers = parse_trailers(message)
    return (
        trailers.get(TRAILER_EVENT) == event_id
        and trailers.get(TRAILER_ENV) == env
        and trailers.get(TRAILER_APP) == app
    )


def _one_line(value: str) -> str:
    return " ".join(value.split())
