"""The release index: the GitOps repository's history, read from git once into the database.

The Go original answered every history request by walking all of git history
and opening `release.json` in each commit. Here the history is read once:
`sync_index` reads only the commits made since the last reading (the first
time, all of them) and records one index row per `<env>/<app>/` each commit
changed, so `GET /api/releases` and `GET /api/status` are database queries
whose cost does not grow with the length of history.

What a commit did is read from the repository itself, not from our database,
so commits made by the Go original, by hand or by another GimletD count too:

- `<env>/<app>/release.json` added or changed: a release (a rollback when the
  message says `This reverts commit <sha>`; those commits are then marked
  rolled back);
- `<env>/<app>/` removed: a delete.

A commit that changed the files of an app but not its `release.json` (a hand
edit) is not a release and is not indexed.
"""

from __future__ import annotations

import json
import logging
import re

from pydantic import ValidationError

from gimletd.gitops import layout
from gimletd.gitops.repository import AppDirChange, CommitInfo, GitopsRepository
from gimletd.models import DNS_LABEL, Release, WriteKind
from gimletd.store import IndexEntry, IndexHead, Store

log = logging.getLogger(__name__)

REVERTS = re.compile(r"This reverts commit ([0-9a-f]{40}(?:[0-9a-f]{24})?)\b")
#: A `release.json` larger than this is not parsed (it is not one GimletD wrote).
MAX_RELEASE_FILE = 1024 * 1024
#: Commits recorded per transaction when indexing a long history.
CHUNK = 2000
#: The index head of a repository without commits.
EMPTY = IndexHead(commit="", position=0)


def sync_index(store: Store, repo: GitopsRepository, head: str | None) -> int:
    """Bring the release index of `repo` up to `head`; returns how many entries were added.

    Reads only the commits after the last indexed one. When that commit is no
    longer in the branch's history (a force push), the index is rebuilt.
    """
    indexed = store.index_head(repo.url)
    if head is None:
        if indexed is None:  # an empty repository: its index is complete, and empty
            store.record_index(repo.url, base=None, head=EMPTY, entries=[])
        return 0
    if indexed is not None and indexed.commit == head:
        return 0
    commits = repo.commits_since(head, indexed.commit if indexed else None)
    if commits is None:
        log.warning(
            "the GitOps branch of %s was rewritten: %s is gone; rebuilding its release index",
            repo.url,
            indexed.commit if indexed else None,
        )
        indexed = None
        commits = repo.commits_since(head, None) or []
    base = indexed
    position = base.position if base else 0
    added = 0
    for start in range(0, len(commits), CHUNK):
        chunk = commits[start : start + CHUNK]
        entries = []
        for commit in chunk:
            position += 1
            entries.extend(index_entries(commit, repo.app_dir_changes(commit), position))
        chunk_head = IndexHead(chunk[-1].sha, position)
        if not store.record_index(repo.url, base=base, head=chunk_head, entries=entries):
            return added  # another reader moved the index meanwhile; it carries on
        base = chunk_head
        added += len(entries)
    return added


def reverted_commits(message: str) -> tuple[str, ...]:
    """The commits a rollback's message names as reverted, each once, in its order. Pure."""
    return tuple(dict.fromkeys(REVERTS.findall(message)))


def index_entries(
    commit: CommitInfo, changes: list[AppDirChange], position: int
) -> list[IndexEntry]:
    """The index entries of one commit, from the app directories it changed. Pure."""
    trailers = layout.parse_trailers(commit.message)
    reverts = reverted_commits(commit.message)
    entries = []
    for change in changes:
        if not (DNS_LABEL.match(change.env) and DNS_LABEL.match(change.app)):
            continue  # not an environment or app directory (say `.github/`)
        if change.removed:
            kind = WriteKind.DELETE
            release = Release(app=change.app, env=change.env, artifact_id="", triggered_by="")
        else:
            if change.release is not None:
                if not change.release_changed:
                    continue
                release = parse_release(change.release, change.env, change.app)
            else:
                # Some commits wrote only `<env>/release.json`: use it when it is about this app.
                if change.env_release is None or _names_app(change.env_release) != change.app:
                    continue
                release = parse_release(change.env_release, change.env, change.app)
            kind = WriteKind.ROLLBACK if reverts else WriteKind.RELEASE
        if kind is not WriteKind.RELEASE:
            # Who did it and in which event: the commit's trailers, not the restored record.
            release = release.model_copy(
                update={
                    "triggered_by": trailers.get(layout.TRAILER_TRIGGERED_BY, ""),
                    "event_id": trailers.get(layout.TRAILER_EVENT, ""),
                }
            )
        entries.append(
            IndexEntry(
                env=change.env,
                app=change.app,
                commit=commit.sha,
                position=position,
                kind=kind,
                release=release,
                created=commit.time,
                reverts=reverts if kind is WriteKind.ROLLBACK else (),
            )
        )
    return entries


def parse_release(raw: bytes, env: str, app: str) -> Release:
    """A `release.json` of env/app as written by GimletD, the Go original or a person.

    Fields that are missing or malformed are left empty rather than dropping
    the release, as the original listed such commits too.
    """
    minimal = Release(app=app, env=env, artifact_id="", triggered_by="")
    data = _json_object(raw)
    if data is None:
        return minimal
    try:
        return Release.model_validate({"artifactId": "", "triggeredBy": "", **data, "app": app,
                                       "env": env})  # fmt: skip
    except ValidationError:
        return minimal


def _json_object(raw: bytes) -> dict[str, object] | None:
    if len(raw) > MAX_RELEASE_FILE:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _names_app(raw: bytes) -> object:
    """The `app` an environment-level `release.json` is about."""
    data = _json_object(raw)
    return None if data is None else data.get("app")
