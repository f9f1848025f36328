"""The GitOps repository on pygit2: commits built from trees, pushed without force.

Unlike the Go original, nothing is cloned per release and no working tree is
checked out. A write reads the branch head, builds the new tree from the head's
tree with only `<env>/<app>/` replaced, commits, and moves the remote branch
only if it still points at that head. When the remote moved on in between, the
write is rejected and the same change is rebuilt on the new head (I4: foreign
commits survive).

Where the objects are read and written depends on where the remote is:

- A network remote (ssh, https, git): in a persistent bare clone of this
  process, kept under REPO_CACHE_PATH; each write fetches the branch into it and
  pushes; receive-pack on the server does the compare-and-swap of the branch.
- A remote on a local path or `file://` URL: in the remote itself, and the
  branch is moved in a reference transaction that checks the old value under
  git's own ref lock. A clone would only copy every object twice, and libgit2's
  local transport cannot be used to push safely: it checks fast-forward when it
  connects and then force-writes the ref, so two concurrent pushes could both
  "succeed" and one commit would be lost.

This is the only module that uses pygit2 for the GitOps repository, and it
translates pygit2's errors: a refused push is `PushRejected`, anything else
`GitOpsError`, both retryable.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import functools
import hashlib
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pygit2

from gimletd.errors import GitOpsError, PushRejected
from gimletd.gitops.layout import RELEASE_FILE

log = logging.getLogger(__name__)

DEFAULT_BRANCH = "main"
#: How far back a redelivered write looks for its own commit when its base is unknown.
MAX_SEARCH_DEPTH = 500
#: The file in a repository on disk that GimletD's writers lock around git's ref lock.
WRITERS_LOCK = "gimletd-writers.lock"
#: Seconds after which a ref lock file found under WRITERS_LOCK is taken for a dead writer's.
STALE_REF_LOCK = 10.0
#: Seconds after which a clone no live process owns, and none fetched into, is removed.
STALE_CLONE_AGE = 7 * 24 * 3600.0
#: git's defaults for `gc --auto`; a repository's own `gc.auto` and `gc.autoPackLimit` win.
GC_AUTO = 6700
GC_AUTO_PACK_LIMIT = 50
#: How long unreachable objects are kept at the least: git's default. A writer builds a
#: commit from new objects that stay unreachable until its push lands, so a shorter
#: `gc.pruneExpire` (`now`, say) would let another worker's gc delete them.
GC_PRUNE_EXPIRE = "2.weeks.ago"
GC_PRUNE_EXPIRE_SECONDS = 14 * 24 * 3600
#: Seconds a process waits before it looks again whether a repository needs upkeep.
LOOK_PAUSE = 5.0
#: Seconds before the next look after an upkeep that failed (git missing, or in error).
FAILED_UPKEEP_PAUSE = 300.0
#: Seconds before the next look after a gc that could not help: it left the repository
#: as due as before (unreachable loose objects younger than two weeks, a gc.pid of
#: another host, a hook that refuses), or ran past GC_TIMEOUT. git's own automatic gc
#: rests a day then too (`gc.log`).
STILL_DUE_PAUSE = 24 * 3600.0
#: Longest one `git gc` may run. Stopped with everything it started, it leaves a valid
#: repository; a task running several (one per repository) may outlast the broker's
#: visibility timeout (600 s) and be delivered again, which its drains allow.
GC_TIMEOUT = 300.0


class WriteOutcome(enum.Enum):
    COMMITTED = "committed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class WriteResult:
    outcome: WriteOutcome
    commit: str


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to the remote: a deploy key (ssh) or a token (https)."""

    deploy_key_path: Path | None = None
    token: str | None = None


@dataclass(frozen=True)
class AppChange:
    """The new content of `<env>/<app>/` (None removes it), and environment-level files to set."""

    env: str
    app: str
    files: Mapping[str, bytes] | None
    env_files: Mapping[str, bytes]


@dataclass(frozen=True)
class CommitInfo:
    """What the release index needs of a commit."""

    sha: str
    message: str
    time: int
    parent: str | None


@dataclass(frozen=True)
class AppDirChange:
    """`<env>/<app>/` as a commit changed it: its `release.json` after, or removed altogether.

    `env_release` is `<env>/release.json` after the commit, for commits that
    wrote only that file (some of the Go original's, or by hand).
    """

    env: str
    app: str
    removed: bool
    release: bytes | None
    release_changed: bool
    env_release: bytes | None


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials for the remote, and a record of a push the remote refused."""

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials
        self.rejected: str | None = None

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: int
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        if self._credentials.deploy_key_path is not None:
            key = str(self._credentials.deploy_key_path)
            public = f"{key}.pub" if os.path.exists(f"{key}.pub") else None
            return pygit2.Keypair(username_from_url or "git", public, key, "")
        if self._credentials.token is not None:
            return pygit2.UserPass("x-access-token", self._credentials.token)
        raise GitOpsError(
            f"the GitOps repository {url} asks for credentials: set GITOPS_REPO_DEPLOY_KEY_PATH "
            "(ssh) or GITOPS_REPO_TOKEN (https)"
        )

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message is not None:
            self.rejected = f"{refname}: {message}"


def init_bare(path: Path, branch: str = DEFAULT_BRANCH) -> None:
    """Create an empty bare repository at `path` (the default GitOps repo of a local install)."""
    if (path / "HEAD").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    pygit2.init_repository(str(path), bare=True, initial_head=branch)


class GitopsRepository:
    """The GitOps repository as one worker process writes to it.

    `clone_name` tells clones of a network remote apart: every worker process
    owns one, so processes never contend for the same refs or pack files.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_dir: Path,
        clone_name: str = "default",
        branch: str | None = None,
        credentials: Credentials | None = None,
        author_name: str = "GimletD",
        author_email: str = "gimletd@gimlet.io",
    ) -> None:
        self.url = url
        self._credentials = credentials or Credentials()
        self._signature = (author_name, author_email)
        self._local_remote = _local_path(url)
        self._configured_branch = branch
        self._owner_lock: IO[str] | None = None
        self._upkeep_after = 0.0  # time.monotonic() before which upkeep is not looked at
        self._packs_seen: set[str] = set()  # the packs in objects/pack at the last look
        if self._local_remote is not None:
            self.path = self._local_remote
        else:
            slug = hashlib.sha256(url.encode()).hexdigest()[:16]
            with self._git_errors("keep a clone of"):
                self.path, self._owner_lock = _own_clone(cache_dir / slug, _safe(clone_name))
            weakref.finalize(self, self._owner_lock.close)

    # The repository is opened, and its branch looked up, on first use rather than here:
    # a remote that is away then fails one attempt of a write, which is counted and
    # retried with back-off, instead of every task that merely holds the repository.

    @functools.cached_property
    def _repo(self) -> pygit2.Repository:
        if self._local_remote is None:
            return self._open_clone()
        with self._git_errors("open"):
            return pygit2.Repository(str(self._local_remote))

    @functools.cached_property
    def branch(self) -> str:
        """The branch written to: GITOPS_BRANCH, else the remote's default branch."""
        return self._configured_branch or self._remote_default_branch()

    @property
    def _branch_ref(self) -> str:
        return f"refs/heads/{self.branch}"

    @property
    def _tracking_ref(self) -> str:
        return f"refs/gimletd/remote/{self.branch}"

    def close(self) -> None:
        """Give up this process's claim on its clone (it stays on disk for the next owner)."""
        if self._owner_lock is not None:
            self._owner_lock.close()

    # -- reading ---------------------------------------------------------------

    def fetch(self) -> str | None:
        """The remote branch head (fetched into the clone); None when the branch is new."""
        if self._local_remote is not None:
            self._require_local_remote()
            with self._git_errors("read the head of"):
                ref = self._repo.references.get(self._branch_ref)
            return None if ref is None else str(ref.target)
        spec = f"+{self._branch_ref}:{self._tracking_ref}"
        with self._git_errors("fetch"):
            self._remote.fetch([spec], callbacks=_Callbacks(self._credentials))
        tracking = self._repo.references.get(self._tracking_ref)
        return None if tracking is None else str(tracking.target)

    def read_file(self, commit: str, path: str) -> bytes | None:
        """The content of `path` at `commit`, or None when it does not exist."""
        with self._git_errors("read"):
            tree = self._repo[commit].peel(pygit2.Tree)
            try:
                entry = tree[path]
            except KeyError:
                return None
            blob = self._repo[entry.id]
            return blob.data if isinstance(blob, pygit2.Blob) else None

    def list_dir(self, commit: str, path: str) -> dict[str, bytes]:
        """The files directly in directory `path` at `commit` (empty when it is missing)."""
        with self._git_errors("read"):
            tree = self._repo[commit].peel(pygit2.Tree)
            try:
                sub = self._repo[tree[path].id]
            except KeyError:
                return {}
            if not isinstance(sub, pygit2.Tree):
                return {}
            files = {}
            for entry in sub:
                blob = self._repo[entry.id]
                if isinstance(blob, pygit2.Blob) and entry.name is not None:
                    files[entry.name] = blob.data
            return files

    def known_head(self) -> str | None:
        """The branch head as this process last saw it, without asking the remote."""
        ref_name = self._branch_ref if self._local_remote is not None else self._tracking_ref
        with self._git_errors("read the head of"):
            ref = self._repo.references.get(ref_name)
        return None if ref is None else str(ref.target)

    def commits_since(self, head: str, since: str | None) -> list[CommitInfo] | None:
        """The first-parent commits from `since` (exclusive) to `head`, oldest first.

        None when `since` is not an ancestor of `head` (the branch was rewritten):
        the caller must start over from the root.
        """
        with self._git_errors("walk history of"):
            head_oid = pygit2.Oid(hex=head)
            walker = self._repo.walk(head_oid, pygit2.enums.SortMode.TOPOLOGICAL)
            walker.simplify_first_parent()
            if since:
                since_oid = pygit2.Oid(hex=since)
                if since_oid not in self._repo:
                    return None
                if since_oid != head_oid and not self._repo.descendant_of(head_oid, since_oid):
                    return None
                walker.hide(since_oid)
            commits = [_commit_info(commit) for commit in walker]
        commits.reverse()
        return commits

    def commit_info(self, sha: str) -> CommitInfo:
        """One commit's message, time and first parent: what a write found pushed meant."""
        with self._git_errors("read"):
            return _commit_info(self._repo[sha].peel(pygit2.Commit))

    def app_dir_changes(self, commit: CommitInfo) -> list[AppDirChange]:
        """Every `<env>/<app>/` directory `commit` changed, compared with its first parent.

        Only trees that differ are opened, so the cost follows the size of the
        change, not of the repository.
        """
        with self._git_errors("read"):
            tree = self._repo[commit.sha].peel(pygit2.Tree)
            parent = self._repo[commit.parent].peel(pygit2.Tree) if commit.parent else None
            changes = []
            for env, env_tree, old_env_tree in self._changed_subtrees(tree, parent):
                env_release = self._blob(env_tree, RELEASE_FILE)
                for app, app_tree, old_app_tree in self._changed_subtrees(env_tree, old_env_tree):
                    release = self._blob(app_tree, RELEASE_FILE)
                    old_release = self._blob(old_app_tree, RELEASE_FILE)
                    changes.append(
                        AppDirChange(
                            env=env,
                            app=app,
                            removed=app_tree is None,
                            release=release,
                            release_changed=release != old_release,
                            env_release=env_release,
                        )
                    )
            return changes

    def _changed_subtrees(
        self, tree: pygit2.Tree | None, old: pygit2.Tree | None
    ) -> Iterator[tuple[str, pygit2.Tree | None, pygit2.Tree | None]]:
        """(name, new, old) for each subdirectory whose tree differs between `old` and `tree`."""
        new_ids = _tree_entries(tree)
        old_ids = _tree_entries(old)
        for name in sorted(new_ids.keys() | old_ids.keys()):
            if new_ids.get(name) == old_ids.get(name):
                continue
            new_sub = _subtree(self._repo, tree, name) if name in new_ids else None
            old_sub = _subtree(self._repo, old, name) if name in old_ids else None
            if new_sub is not None or old_sub is not None:
                yield name, new_sub, old_sub

    def _blob(self, tree: pygit2.Tree | None, name: str) -> bytes | None:
        if tree is None:
            return None
        try:
            entry = tree[name]
        except KeyError:
            return None
        blob = self._repo[entry.id]
        return blob.data if isinstance(blob, pygit2.Blob) else None

    def includes(self, commit: str, earlier: str) -> bool:
        """Whether `earlier` is `commit` or one of its ancestors; False when either is unknown."""
        with self._git_errors("read history"):
            if commit not in self._repo or earlier not in self._repo:
                return False
            return commit == earlier or bool(
                self._repo.descendant_of(pygit2.Oid(hex=commit), pygit2.Oid(hex=earlier))
            )

    def find_commit(
        self, head: str, *, since: str | None, matches: Callable[[str], bool]
    ) -> str | None:
        """The newest commit after `since` (exclusive) whose message `matches`.

        With `since` in the repository, every commit after it is read, however
        many landed since (a write's own commit is looked for from the base it
        started on: missing it would commit twice, I2); when `since` is not an
        ancestor of `head` (a rewritten branch), that is every commit back to
        where they meet. Without `since`, or with one this clone does not have,
        at most MAX_SEARCH_DEPTH commits are read, so the cost never grows with
        the length of history.
        """
        with self._git_errors("search history"):
            # Unsorted: libgit2 then yields commits as it reads them, newest first on a
            # linear branch; a sorted walk would read the whole history before the first.
            walker = self._repo.walk(pygit2.Oid(hex=head), pygit2.enums.SortMode.NONE)
            bounded = not since or since not in self._repo
            if since and not bounded:
                walker.hide(pygit2.Oid(hex=since))
            for depth, commit in enumerate(walker):
                if bounded and depth >= MAX_SEARCH_DEPTH:
                    break
                if matches(commit.message):
                    return str(commit.id)
        return None

    # -- writing ---------------------------------------------------------------

    def write(self, change: AppChange, message: str, *, head: str | None) -> WriteResult:
        """Commit `change` on `head` and push it; `PushRejected` if the remote moved on.

        No empty commits: when the tree would not change, nothing is pushed and
        the result is UNCHANGED on `head`.
        """
        commit = self.commit(change, message, parent=head)
        if commit is None:
            return WriteResult(WriteOutcome.UNCHANGED, head or "")
        self.push(commit, expected=head)
        return WriteResult(WriteOutcome.COMMITTED, commit)

    def commit(self, change: AppChange, message: str, *, parent: str | None) -> str | None:
        """Create a commit of `change` on `parent`, without pushing; None when nothing changes.

        Several commits can be chained this way and pushed at once with `push`.
        """
        with self._git_errors("write"):
            base_tree = self._repo[parent].peel(pygit2.Tree) if parent else None
            tree_id = self._build_tree(base_tree, change)
            if base_tree is not None and tree_id == base_tree.id:
                return None
            signature = pygit2.Signature(*self._signature)
            parents = [pygit2.Oid(hex=parent)] if parent else []
            commit = self._repo.create_commit(None, signature, signature, message, tree_id, parents)
        return str(commit)

    def push(self, commit: str, *, expected: str | None) -> None:
        """Move the remote branch from `expected` to `commit`; `PushRejected` if it moved on."""
        if self._local_remote is not None:
            self._move_branch(commit, expected=expected)
            return
        self._push(commit)
        with self._git_errors("record the pushed head in the clone of"):
            self._repo.references.create(self._tracking_ref, pygit2.Oid(hex=commit), force=True)

    def _move_branch(self, commit: str, *, expected: str | None) -> None:
        """Compare-and-swap the branch of a remote on disk, under git's ref lock.

        Git's ref lock is a file, `<ref>.lock`, which a writer killed while holding it
        leaves behind, and every later push would be refused. GimletD's writers take
        an OS lock on the repository around the ref lock (released by the kernel
        when its holder dies), so one that finds a ref lock file while holding it
        knows no GimletD writer is using it, and removes it once it is older than
        STALE_REF_LOCK (a git process holds a ref lock for milliseconds).
        """
        ref = self._branch_ref
        self._require_local_remote()
        with (
            self._git_errors("move the branch of"),
            _writers_lock(self.path),
            self._repo.transaction() as transaction,
        ):
            _remove_stale_lock(self.path / f"{ref}.lock")
            try:
                transaction.lock_ref(ref)
            except pygit2.GitError as exc:
                raise PushRejected(f"{ref} of {self.url} is being updated: {exc}") from exc
            current = self._repo.references.get(ref)
            current_sha = None if current is None else str(current.target)
            if current_sha != expected:
                raise PushRejected(f"push to {self.url} was rejected: {ref} moved to {current_sha}")
            transaction.set_target(ref, commit, message="push by GimletD")

    def _require_local_remote(self) -> None:
        """Fail unless the remote on disk is there.

        Moved away or unmounted, its branch would read as new, and libgit2 would
        recreate directories at its path for a ref lock.
        """
        if not (self.path / "HEAD").is_file():
            raise GitOpsError(
                f"the GitOps repository {self.url} is not there (moved or unmounted?)"
            )

    def _push(self, commit: str) -> None:
        temp_ref = f"refs/gimletd/push/{uuid.uuid4().hex}"
        callbacks = _Callbacks(self._credentials)
        try:
            self._repo.references.create(temp_ref, pygit2.Oid(hex=commit))
            self._remote.push([f"{temp_ref}:refs/heads/{self.branch}"], callbacks=callbacks)
        except (pygit2.GitError, OSError) as exc:
            if _is_rejection(str(exc)):
                raise PushRejected(f"push to {self.url} was rejected: {exc}") from exc
            raise GitOpsError(f"cannot push to {self.url}: {exc}") from exc
        finally:
            with contextlib.suppress(KeyError, pygit2.GitError):
                self._repo.references.delete(temp_ref)
        if callbacks.rejected is not None:
            raise PushRejected(f"push to {self.url} was rejected: {callbacks.rejected}")

    def _build_tree(self, base: pygit2.Tree | None, change: AppChange) -> pygit2.Oid:
        """The root tree with `<env>/<app>/` replaced and the env-level files set.

        A blob the base tree holds in `<env>/` or `<env>/<app>/` (a file that did
        not change) is reused without a write. Any other blob is written, even
        when stored already: libgit2 then refreshes the object's time, as git
        does, so a `git gc` cannot prune an old unreachable copy just as a new
        tree starts to use it. A reachable one cannot be pruned, and refreshing
        it costs as much as writing a new object (an inode update each).
        """
        env_tree = _subtree(self._repo, base, change.env)
        env_builder = self._repo.TreeBuilder(env_tree) if env_tree else self._repo.TreeBuilder()
        # Blobs reachable from the base tree, and those written for this tree.
        present = {*_tree_entries(env_tree).values()}
        if change.files is None:
            if env_builder.get(change.app) is not None:
                env_builder.remove(change.app)
        else:
            present.update(_tree_entries(_subtree(self._repo, env_tree, change.app)).values())
            app_builder = self._repo.TreeBuilder()
            for name in sorted(change.files):
                blob = self._blob_id(change.files[name], present)
                app_builder.insert(name, blob, pygit2.GIT_FILEMODE_BLOB)
            env_builder.insert(change.app, app_builder.write(), pygit2.GIT_FILEMODE_TREE)
        for name, content in sorted(change.env_files.items()):
            env_builder.insert(name, self._blob_id(content, present), pygit2.GIT_FILEMODE_BLOB)
        root = self._repo.TreeBuilder(base) if base is not None else self._repo.TreeBuilder()
        if len(env_builder):
            root.insert(change.env, env_builder.write(), pygit2.GIT_FILEMODE_TREE)
        elif root.get(change.env) is not None:
            root.remove(change.env)  # git has no empty directories
        return root.write()

    def _blob_id(self, content: bytes, present: set[pygit2.Oid]) -> pygit2.Oid:
        """The id of a blob of `content`, written unless it is in `present` (then added)."""
        blob = pygit2.hash(content)
        if blob not in present:
            self._repo.create_blob(content)
            present.add(blob)
        return blob

    # -- upkeep ----------------------------------------------------------------

    def upkeep_due(self) -> bool:
        """Whether `git gc --auto` would pack the objects now, by git's own rule.

        Every release adds loose objects, and every fetch into a clone of a
        network remote adds a pack (libgit2 keeps each fetch's pack as it came).
        Left alone both pile up, and every object lookup gets slower with each
        pack (bench/upkeep.py measures a write's cost as the packs pile up).

        A look costs two directory listings, so the next waits LOOK_PAUSE. When
        it finds packs gone that it saw before (another process's gc removed
        them), this process lets go of them, as after its own gc.
        """
        now = time.monotonic()
        if now < self._upkeep_after:
            return False
        self._upkeep_after = now + LOOK_PAUSE
        return _gc_due(self.path / "objects", self._look_at_packs(), self._gc_limits())

    def upkeep(self) -> None:
        """Pack the objects with `git gc --auto`, as git does after every push it receives.

        Safe beside other writers: git takes its own locks (gc.pid), and
        unreachable objects younger than two weeks are kept whatever the
        configuration says, so a commit being built keeps its objects.
        Afterwards this process lets go of the pack files gc removed. When gc
        could not help, the next look waits STILL_DUE_PAUSE; when another
        process's gc on this host holds the lock, only LOOK_PAUSE.

        :raise GitOpsError: git is missing, failed, or ran longer than GC_TIMEOUT.
        """
        self._upkeep_after = time.monotonic() + FAILED_UPKEEP_PAUSE
        git = shutil.which("git")
        if git is None:
            raise GitOpsError(f"cannot pack the objects of {self.path}: git is not installed")
        command = [git, "--git-dir", str(self.path), "-c", "gc.autoDetach=false",
                   *self._prune_expire_option(git), "gc", "--auto", "--quiet"]  # fmt: skip
        what = f"git gc in {self.path}"
        try:
            _run_in_own_process_group(command, what, timeout=GC_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            self._upkeep_after = time.monotonic() + STILL_DUE_PAUSE
            raise GitOpsError(
                f"{what} ran longer than {GC_TIMEOUT:g}s and was stopped: run it by hand, "
                "or set gc.auto=0 in the repository and pack it on a schedule"
            ) from exc
        finally:
            self._repo.free()  # reopened on next use, with the packs there are now
        packs = self._look_at_packs()
        if _gc_running_on_this_host(self.path):
            # Another worker's gc held the lock, and ours did nothing: look again soon,
            # to let go of the packs that gc removes.
            self._upkeep_after = time.monotonic() + LOOK_PAUSE
        elif _gc_due(self.path / "objects", packs, self._gc_limits()):
            log.warning(
                "git gc --auto left %s as due as before (unreachable loose objects younger "
                "than two weeks, another host's gc.pid, or a hook refusing); next look in %gh",
                self.path, STILL_DUE_PAUSE / 3600,
            )  # fmt: skip
            self._upkeep_after = time.monotonic() + STILL_DUE_PAUSE
        else:
            self._upkeep_after = time.monotonic() + LOOK_PAUSE

    def _look_at_packs(self) -> dict[str, bool]:
        """The packs there are now (see `_packs_in`), remembered for the next look.

        When packs seen at the last look are gone (a gc removed them), this
        process lets go of them: libgit2 would hold them open for good.
        """
        packs = _packs_in(self.path / "objects")
        if self._packs_seen - packs.keys():
            self._repo.free()  # reopened on next use, with the packs there are now
        self._packs_seen = set(packs)
        return packs

    def _prune_expire_option(self, git: str) -> list[str]:
        """`-c gc.pruneExpire=2.weeks.ago`, unless git's config keeps unreachable objects longer.

        git itself turns the setting into a date (`never`, `false`, `1.month.ago`, ...).
        """
        done = subprocess.run(
            [git, "--git-dir", str(self.path), "config", "--type=expiry-date", "gc.pruneExpire"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        configured = done.stdout.strip() if done.returncode == 0 else ""
        if configured.isdigit() and int(configured) <= time.time() - GC_PRUNE_EXPIRE_SECONDS:
            return []  # kept at least as long: the configured value stands
        return ["-c", f"gc.pruneExpire={GC_PRUNE_EXPIRE}"]

    def _gc_limits(self) -> _GcLimits:
        with self._git_errors("read the config of"):
            config = self._repo.config
            return _GcLimits(
                loose=_config_int(config, "gc.auto", GC_AUTO),
                packs=_config_int(config, "gc.autoPackLimit", GC_AUTO_PACK_LIMIT),
            )

    # -- plumbing --------------------------------------------------------------

    @property
    def _remote(self) -> pygit2.Remote:
        return self._repo.remotes["origin"]

    def _open_clone(self) -> pygit2.Repository:
        """Open this process's clone, creating it on first use.

        Its remote is set up on every open: a process killed between creating
        the clone and adding the remote leaves a clone without one; one killed
        while libgit2 wrote the clone's config leaves its lock file, which this
        process, the clone's only owner, removes.
        """
        with self._git_errors("open the clone of"):
            (self.path / "config.lock").unlink(missing_ok=True)
            if not (self.path / "HEAD").exists():
                pygit2.init_repository(str(self.path), bare=True)
            repo = pygit2.Repository(str(self.path))
            if "origin" not in repo.remotes.names():
                repo.remotes.create("origin", self.url)
            elif repo.remotes["origin"].url != self.url:
                repo.remotes.set_url("origin", self.url)
            return repo

    def _remote_default_branch(self) -> str:
        """The remote's HEAD branch, or `main` for an empty remote."""
        if self._local_remote is not None:
            self._require_local_remote()
            with self._git_errors("read HEAD of"):
                local_head = self._repo.references.get("HEAD")
            if local_head is not None and local_head.type == pygit2.enums.ReferenceType.SYMBOLIC:
                return str(local_head.target).removeprefix("refs/heads/")
            return DEFAULT_BRANCH
        with self._git_errors("list remote branches"):
            remote_heads = self._remote.list_heads(callbacks=_Callbacks(self._credentials))
        for remote_head in remote_heads:
            if remote_head.name == "HEAD" and remote_head.symref_target:
                return str(remote_head.symref_target).removeprefix("refs/heads/")
        return DEFAULT_BRANCH

    @contextlib.contextmanager
    def _git_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (pygit2.GitError, OSError, KeyError, ValueError) as exc:
            raise GitOpsError(f"cannot {action} GitOps repository {self.url}: {exc}") from exc


def _commit_info(commit: pygit2.Commit) -> CommitInfo:
    """What the release index and a found write need of a commit (its first parent only)."""
    return CommitInfo(
        sha=str(commit.id),
        message=commit.message,
        time=commit.commit_time,
        parent=str(commit.parent_ids[0]) if commit.parent_ids else None,
    )


def _tree_entries(tree: pygit2.Tree | None) -> dict[str, pygit2.Oid]:
    """The names and object ids of a tree's entries (none for a missing tree)."""
    if tree is None:
        return {}
    return {entry.name: entry.id for entry in tree if entry.name is not None}


def _subtree(repo: pygit2.Repository, tree: pygit2.Tree | None, name: str) -> pygit2.Tree | None:
    if tree is None:
        return None
    try:
        entry = tree[name]
    except KeyError:
        return None
    sub = repo[entry.id]
    return sub if isinstance(sub, pygit2.Tree) else None


#: The fan-out directory git counts loose objects in, to estimate them all (x 256).
_SAMPLE_DIR = "17"
#: The rest of a loose object's name in it: a SHA-1 or SHA-256 id without its first byte.
_LOOSE_OBJECT = re.compile(r"[0-9a-f]{38}|[0-9a-f]{62}")


@dataclass(frozen=True)
class _GcLimits:
    """`gc.auto` (loose objects) and `gc.autoPackLimit`: above either, `gc --auto` packs."""

    loose: int
    packs: int


def _packs_in(objects: Path) -> dict[str, bool]:
    """The packs in `objects/pack` by name, each with whether a `.keep` file keeps it."""
    names = set(_names_in(objects / "pack"))
    return {
        name.removesuffix(".pack"): f"{name.removesuffix('.pack')}.keep" in names
        for name in names
        if name.endswith(".pack")
    }


def _gc_due(objects: Path, packs: dict[str, bool], limits: _GcLimits) -> bool:
    """git's `need_to_gc`: too many packs not kept, or too many loose objects."""
    if limits.loose <= 0:  # git's way to turn automatic gc off
        return False
    not_kept = sum(1 for kept in packs.values() if not kept)
    if limits.packs > 0 and not_kept > limits.packs:
        return True
    loose = sum(1 for n in _names_in(objects / _SAMPLE_DIR) if _LOOSE_OBJECT.fullmatch(n))
    return loose > math.ceil(limits.loose / 256)  # git: DIV_ROUND_UP(gc.auto, 256)


def _gc_running_on_this_host(repo_path: Path) -> bool:
    """Whether git's gc lock, `gc.pid` ("<pid> <host>"), is held by a live process here."""
    try:
        pid, host = (repo_path / "gc.pid").read_text().split(maxsplit=1)
    except (FileNotFoundError, ValueError):
        return False
    if host.strip() != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, run by another user
    return True


def _run_in_own_process_group(command: list[str], what: str, *, timeout: float) -> None:
    """Run `command`; past `timeout`, kill it with every process it started.

    git gc runs repack, pack-objects and prune as children: killing gc alone
    would leave them working on the repository with no gc.pid to say so.

    :raise GitOpsError: it failed, naming the last line it wrote to stderr.
    :raise subprocess.TimeoutExpired: it ran past `timeout` and was killed.
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, errors="replace", start_new_session=True)  # fmt: skip
    try:
        _, errors = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    if process.returncode != 0:
        problem = errors.strip().splitlines()[-1:] or [f"exit code {process.returncode}"]
        raise GitOpsError(f"{what} failed: {problem[0]}")


def _config_int(config: pygit2.Config, key: str, default: int) -> int:
    """An integer setting of git's config (`10k` and the like included), else `default`."""
    return config.get_int(key) if key in config else default


def _names_in(directory: Path) -> list[str]:
    """The names in `directory`, none when it does not exist."""
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def _local_path(url: str) -> Path | None:
    """The directory of a remote given as a path or `file://` URL; None for network remotes."""
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    if "://" in url or re.match(r"^[\w.-]+@[\w.-]+:", url):
        return None
    return Path(url)


def _is_rejection(message: str) -> bool:
    lowered = message.lower()
    return any(
        phrase in lowered
        for phrase in (
            "non-fastforward",
            "non-fast-forward",
            "not present locally",
            "fetch first",
            "rejected",
        )
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "default"


@contextlib.contextmanager
def _writers_lock(repo_path: Path) -> Iterator[None]:
    """Hold the OS lock GimletD's writers take on a repository on disk around its ref lock."""
    with open(repo_path / WRITERS_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released on close, or when the process dies
        yield


def _remove_stale_lock(lock: Path) -> None:
    """Remove git's lock file `lock` when it is older than STALE_REF_LOCK: its writer died."""
    modified = _mtime(lock)
    age = time.time() - modified
    if modified and age > STALE_REF_LOCK:
        log.warning("removing %s, left %.0fs ago by a writer that died holding it", lock, age)
        lock.unlink(missing_ok=True)


def _own_clone(directory: Path, name: str) -> tuple[Path, IO[str]]:
    """The clone `<name>.git` in `directory`, held for this process's lifetime.

    A lock file marks the owner; when another live process holds `name` (two
    workers started with the same node name), this process takes a clone of its
    own instead of sharing refs and packs with it. Clones nobody has owned or
    fetched into for STALE_CLONE_AGE are removed first.
    """
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_clones(directory, now=time.time())
    for candidate in (name, f"{name}-pid{os.getpid()}"):
        handle = open(directory / f"{candidate}.owner", "w")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return directory / f"{candidate}.git", handle
    raise GitOpsError(f"cannot own a clone in {directory}: another process holds it")


def _remove_stale_clones(directory: Path, *, now: float) -> None:
    """Remove the clones in `directory` no live process owns, unused for STALE_CLONE_AGE.

    A clone is named after its worker's host, and a container gets a new
    hostname with every deploy: without this, every deploy would leave a full
    clone per worker process behind on the data volume. The owner's lock is
    held while the clone is renamed away, so no process can claim it meanwhile,
    and a clone is either whole or gone even if this process dies deleting it.
    The empty owner file stays, so that a process claiming the name later locks
    the same file. A worker that comes back after that long clones again.
    Housekeeping only: what cannot be removed is logged and left.
    """
    for leftover in directory.glob(".*.deleting-*"):  # renamed away by a sweep that died
        shutil.rmtree(leftover, ignore_errors=True)
    for owner in directory.glob("*.owner"):
        clone = owner.with_suffix(".git")
        if not clone.is_dir() or now - _last_used(clone, owner) < STALE_CLONE_AGE:
            continue
        try:
            with open(owner, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive (or another process is sweeping it)
                unused = now - _last_used(clone, owner)  # again: it may have been used since
                if unused < STALE_CLONE_AGE:
                    continue
                doomed = clone.rename(directory / f".{clone.name}.deleting-{uuid.uuid4().hex}")
            log.info("removing %s: no process owns it, unused for %.0f days", clone, unused / 86400)
            shutil.rmtree(doomed, ignore_errors=True)
        except OSError as exc:
            log.warning("cannot remove the unused clone %s: %s", clone, exc)


def _last_used(clone: Path, owner: Path) -> float:
    """When a clone was last claimed, written or fetched into (FETCH_HEAD: every fetch)."""
    return max(_mtime(owner), _mtime(clone), _mtime(clone / "FETCH_HEAD"))


def _mtime(path: Path) -> float:
    """When `path` last changed; 0 when it does not exist."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


__all__ = [
    "RELEASE_FILE",
    "AppChange",
    "AppDirChange",
    "CommitInfo",
    "Credentials",
    "GitopsRepository",
    "WriteOutcome",
    "WriteResult",
    "init_bare",
]
