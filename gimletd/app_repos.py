"""Application repositories: where CI builds artifacts from, and which branches they still have.

Branch polling is the safety net under the GitHub webhook (GitHub does not
retry a failed delivery), and the only detection for SCMs that send none.
The URL polled is derived from the artifact (`app_repo_url`) unless APP_REPOS
names one; listing uses git's own protocol, so ssh, https, `file://` and
plain paths all work.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pygit2

from gimletd.errors import AppRepoError
from gimletd.gitops.layout import public_repo_url
from gimletd.gitops.repository import init_bare
from gimletd.models import Artifact

__all__ = ["BranchLister", "app_repo_url", "needs_branch_polling"]

_GITHUB_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
#: Where a commit URL's path turns from the repository to the commit, per SCM.
_COMMIT_PATH = re.compile(r"/(?:-/)?commits?/[0-9a-fA-F]{7,64}/?$")
_HEADS = "refs/heads/"


def needs_branch_polling(artifact: Artifact) -> bool:
    """Whether any environment config of `artifact` is cleaned up when a branch or PR goes away."""
    return any(
        manifest.cleanup is not None and manifest.cleanup.event is not None
        for manifest in artifact.environments
    )


def app_repo_url(artifact: Artifact) -> str:
    """The clone URL of the repository `artifact` was built from, "" when it cannot be told.

    From the commit URL CI sent (`https://host/owner/repo/commit/<sha>`, GitLab's
    `/-/commit/`, Bitbucket's `/commits/`), else from a GitHub `owner/repo` name.
    """
    version = artifact.version
    try:
        parts = urlsplit(version.url)
    except ValueError:  # say, `https://[::1/...`: CI sent no usable URL
        parts = urlsplit("")
    if parts.scheme == "https" and parts.netloc and _COMMIT_PATH.search(parts.path):
        path = _COMMIT_PATH.sub("", parts.path).rstrip("/")
        if path.count("/") >= 2:
            return f"https://{parts.netloc}{path}.git"
    if _GITHUB_NAME.match(version.repository_name):
        return f"https://github.com/{version.repository_name}.git"
    return ""


class _Credentials(pygit2.RemoteCallbacks):
    """A token for https remotes: the one in the URL (`https://user:token@host/...`), else ours.

    Ours only goes to `token_hosts`: the URL may come from an artifact.
    """

    def __init__(self, url: str, token: str | None, token_hosts: frozenset[str]) -> None:
        super().__init__()
        parts = urlsplit(url)
        self._userpass: tuple[str, str] | None = None
        if parts.password:
            self._userpass = (unquote(parts.username or "x-access-token"), unquote(parts.password))
        elif token and parts.hostname in token_hosts:
            self._userpass = ("x-access-token", token)

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: int
    ) -> pygit2.UserPass:
        if self._userpass is None:
            raise AppRepoError(
                f"{public_repo_url(url)} asks for credentials: set APP_REPOS_TOKEN (sent to "
                "github.com and the hosts APP_REPOS names), or put a token in its APP_REPOS URL"
            )
        return pygit2.UserPass(*self._userpass)


class BranchLister:
    """Lists the branches of remote repositories without cloning them (`git ls-remote --heads`).

    libgit2 needs a repository to hold a remote, even an anonymous one: a
    scratch bare repository in the cache directory, never written to.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        token: str | None = None,
        token_hosts: frozenset[str] = frozenset({"github.com"}),
    ) -> None:
        self._scratch = cache_dir / "ls-remote.git"
        self._token = token
        self._token_hosts = token_hosts

    def branches(self, url: str) -> set[str]:
        """The branch names of the repository at `url`.

        :raise AppRepoError: it cannot be reached, refuses us, or lists no branch
            at all (an empty listing is more likely a wrong URL or token than a
            repository whose every branch was deleted, and trusting it would
            clean up every preview app at once).
        """
        shown = public_repo_url(url)
        try:
            init_bare(self._scratch)
            repo = pygit2.Repository(str(self._scratch))
            remote = repo.remotes.create_anonymous(url)
            heads = remote.list_heads(callbacks=_Credentials(url, self._token, self._token_hosts))
        except AppRepoError:
            raise
        except (pygit2.GitError, OSError, ValueError) as exc:
            raise AppRepoError(f"cannot list the branches of {shown}: {exc}") from exc
        names = {
            head.name.removeprefix(_HEADS)
            for head in heads
            if head.name is not None and head.name.startswith(_HEADS)
        }
        if not names:
            raise AppRepoError(
                f"{shown} lists no branches: refusing to treat every branch as deleted"
            )
        return names
