"""Where a chart comes from, and the one place that fetches it.

An environment config's `chart` names its source in one of these forms:

- a Helm chart repository: `repository: https://charts.example.com`, `name: onechart`,
  `version: 0.10.0`;
- an OCI registry: `name: oci://registry.example.com/charts/onechart` (or
  `repository: oci://registry.example.com/charts`, `name: onechart`) and `version`;
- a git repository, in the Go original's form, in `name`:
  `https://github.com/org/charts.git?branch=main&path=/charts/onechart/` (also
  `file:///srv/charts.git?…`, `ssh://git@host/org/charts.git?…` and
  `git@host:org/charts.git?…`); `branch`, `tag` or `sha` picks the commit, none
  means the remote's default branch; `path` is the chart's folder, default the root;
- a local directory: `name: /abs/path`, `./path` or `../path`, or any `name`
  containing `/` when `repository` is empty (relative to the worker's working directory).

`parse_chart_source` decides which, without I/O, so rendering (Flux sources) and
tests can use it. `CachingChartLoader` is the I/O edge: it downloads each chart
once into a cache directory and hands out the unpacked chart's directory.

Cache rules, so releases are fast and reproducible:

- A pinned chart (repository or OCI with a `version`; git `tag` or `sha`) is
  immutable: fetched once, then reused from disk by every process.
- A moving ref (git `branch` or the default branch; a repository chart without
  `version`, meaning the newest) is re-resolved at most every `refresh_seconds`
  (default 300) per process; a resolved git commit or chart version is again
  immutable on disk.
- Several processes may share one cache directory: each download goes to a
  temporary directory that is renamed into place, under an `fcntl` lock per key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

from gimletd import yamlsafe
from gimletd.errors import ChartSourceError, RenderError
from gimletd.models import Chart

if TYPE_CHECKING:
    import pygit2

__all__ = [
    "DEFAULT_REFRESH_SECONDS",
    "CachingChartLoader",
    "ChartLoader",
    "ChartSource",
    "GitRefKind",
    "GitSource",
    "HelmRepositorySource",
    "LocalSource",
    "OCISource",
    "parse_chart_source",
    "redact_url",
]

#: How long a moving ref (git branch, unpinned chart version) is trusted before re-fetching.
DEFAULT_REFRESH_SECONDS = 300.0

ACCEPTED_FORMS = (
    "use a Helm repository (chart.repository: https://charts.example.com, chart.name: onechart, "
    "chart.version: 0.10.0), an OCI reference (chart.name: oci://registry.example.com/charts/"
    "onechart), a git URL (chart.name: https://github.com/org/charts.git?branch=main&path="
    "/charts/onechart/) or a local directory (chart.name: ./charts/onechart)"
)

_GIT_SCHEMES = ("http", "https", "ssh", "git", "file")
_GIT_QUERY_KEYS = frozenset({"branch", "tag", "sha", "path"})
_SCP_FORM = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?!//)(?P<path>.+)$")
_CHART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REF_NAME = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]*$")
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9.-]+")


class ChartLoader(Protocol):
    """Gives rendering a local directory holding an unpacked chart."""

    def fetch(self, chart: Chart) -> Path:
        """The directory of `chart`.

        :raise ChartSourceError: the source could not be reached or has no such chart.
        :raise RenderError: `chart` does not name a source in an accepted form.
        """
        ...


# --- Sources: pure ---------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class _RedactedRepr:
    """A dataclass repr with passwords in URLs hidden, as sources end up in logs."""

    def __repr__(self) -> str:
        parts = []
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if field.name in ("url", "reference"):
                value = redact_url(value)
            parts.append(f"{field.name}={value!r}")
        shown = ", ".join(parts)
        return f"{type(self).__name__}({shown})"


class _PackagedChart(_RedactedRepr):
    """The wording shared by sources that hold named, versioned chart packages."""

    if TYPE_CHECKING:
        version: str

        @property
        def name(self) -> str: ...

        @property
        def location(self) -> str: ...

    @property
    def label(self) -> str:
        return f"chart {self.name} {self.version or '(newest version)'}"

    def describe(self) -> str:
        return f"{self.label} from {self.location}"


@dataclass(frozen=True, repr=False)
class HelmRepositorySource(_PackagedChart):
    """A chart `name` in the Helm chart repository at `url`; empty `version` means newest."""

    url: str
    name: str
    version: str

    @property
    def location(self) -> str:
        return f"the Helm repository {redact_url(self.url)}"


@dataclass(frozen=True, repr=False)
class OCISource(_PackagedChart):
    """A chart in an OCI registry; `reference` is `oci://host/path/name`."""

    reference: str
    version: str

    @property
    def name(self) -> str:
        """The chart name: the reference's last path segment."""
        return self.reference.rstrip("/").rsplit("/", 1)[-1]

    @property
    def repository(self) -> str:
        """The reference without the chart name, as Flux's `HelmRepository` wants it."""
        return self.reference.rstrip("/").rsplit("/", 1)[0]

    @property
    def location(self) -> str:
        return f"the OCI registry {redact_url(self.reference)}"


class GitRefKind(enum.StrEnum):
    """How a git chart URL picks its commit."""

    DEFAULT = "default"  # the remote's default branch (its HEAD)
    BRANCH = "branch"
    TAG = "tag"
    SHA = "sha"

    @property
    def moving(self) -> bool:
        """Whether the commit behind this kind of ref can change."""
        return self in (GitRefKind.DEFAULT, GitRefKind.BRANCH)


@dataclass(frozen=True, repr=False)
class GitSource(_RedactedRepr):
    """A chart in folder `path` (relative, no leading `/`; empty = root) of a git repository."""

    url: str
    ref_kind: GitRefKind
    ref: str
    path: str

    def describe(self) -> str:
        ref = "default branch" if self.ref_kind is GitRefKind.DEFAULT else self.ref_label
        return f"chart at /{self.path} of git {redact_url(self.url)} ({ref})"

    @property
    def ref_label(self) -> str:
        return f"{self.ref_kind.value} {self.ref}"

    @property
    def local(self) -> bool:
        """Whether the repository is on this machine (a `file://` URL)."""
        return self.url.startswith("file://")


@dataclass(frozen=True)
class LocalSource:
    """A chart directory on the worker's disk, used in place."""

    path: str

    def describe(self) -> str:
        return f"local chart directory {self.path}"


ChartSource = HelmRepositorySource | OCISource | GitSource | LocalSource


def parse_chart_source(chart: Chart) -> ChartSource:
    """Decide where `chart` comes from, without I/O.

    :raise RenderError: the fields match no accepted form; the message lists them.
    """
    name, repository, version = chart.name.strip(), chart.repository.strip(), chart.version.strip()
    if not name:
        raise RenderError(f"chart.name is empty: {ACCEPTED_FORMS}")
    if name.startswith("oci://"):
        return OCISource(reference=name, version=version)
    git = _parse_git_url(name)
    if git is not None:
        return git
    if name.startswith(("/", "./", "../")):
        return LocalSource(path=name)
    if repository.startswith("oci://"):
        _check_chart_name(name, repository)
        return OCISource(reference=f"{repository.rstrip('/')}/{name}", version=version)
    if repository.startswith(("https://", "http://")):
        _check_chart_name(name, repository)
        return HelmRepositorySource(url=repository, name=name, version=version)
    if not repository and "/" in name and "://" not in name:
        return LocalSource(path=name)
    if repository:
        raise RenderError(
            f"chart.repository {redact_url(repository)!r} is not an http(s):// or oci:// "
            f"chart repository: {ACCEPTED_FORMS}"
        )
    raise RenderError(
        f"chart {name!r} has no source: chart.repository is empty and {name!r} is neither a "
        f"git URL nor a path; {ACCEPTED_FORMS}"
    )


def _check_chart_name(name: str, repository: str) -> None:
    if not _CHART_NAME.match(name):
        raise RenderError(
            f"chart.name {name!r} is not a chart name in repository {redact_url(repository)}: "
            "give the plain chart name, such as onechart"
        )


def _parse_git_url(name: str) -> GitSource | None:
    """A `GitSource` if `name` is a git URL in the Go original's form, else None."""
    base, _, query = name.partition("?")
    scheme = base.split("://", 1)[0].lower() if "://" in base else ""
    if scheme in _GIT_SCHEMES:
        if not (base.rstrip("/").endswith(".git") or query):
            return None
    elif not _SCP_FORM.match(base):
        return None

    params = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(params) - _GIT_QUERY_KEYS)
    if unknown:
        raise RenderError(
            f"git chart URL {redact_url(name)!r} has unknown parameters {unknown}: "
            "use branch=, tag= or sha= and path="
        )
    repeated = sorted(key for key, values in params.items() if len(values) > 1)
    if repeated:
        raise RenderError(f"git chart URL {redact_url(name)!r} repeats {repeated}")
    given = {key: values[0] for key, values in params.items()}
    refs = [key for key in ("branch", "tag", "sha") if given.get(key)]
    if len(refs) > 1:
        raise RenderError(
            f"git chart URL {redact_url(name)!r} gives {' and '.join(refs)}: give one of them"
        )
    ref_kind = GitRefKind(refs[0]) if refs else GitRefKind.DEFAULT
    ref = given[refs[0]] if refs else ""
    if ref_kind is GitRefKind.SHA and not _SHA.match(ref):
        raise RenderError(
            f"git chart URL {redact_url(name)!r}: sha {ref!r} is not a hexadecimal commit id"
        )
    if ref_kind in (GitRefKind.BRANCH, GitRefKind.TAG) and (
        not _REF_NAME.match(ref) or ".." in ref or ref.endswith((".lock", "/"))
    ):
        raise RenderError(
            f"git chart URL {redact_url(name)!r}: {ref_kind.value} {ref!r} is not a valid git ref"
        )
    segments = [segment for segment in given.get("path", "").split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise RenderError(
            f"git chart URL {redact_url(name)!r}: path must not contain '.' or '..' segments"
        )
    return GitSource(url=base, ref_kind=ref_kind, ref=ref, path="/".join(segments))


# --- Fetching: the I/O edge ------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:20]


def _slug(text: str) -> str:
    return _SLUG_UNSAFE.sub("-", text.lower()).strip(".-")[:40] or "chart"


def _chart_key(location: str, name: str, version: str) -> str:
    """The cache directory name of one version of a repository chart."""
    return f"{_slug(f'{name}-{version}')}-{_digest(location, name, version)}"


class CachingChartLoader:
    """Fetches charts into `cache_dir` once and reuses them (see the module docstring).

    Layout: `charts/<slug>-<digest>/` unpacked charts, `git/<digest>.git` bare
    mirrors of chart repositories, `locks/` and `tmp/`.

    `allow_local=False` refuses local directories and `file://` git URLs, for
    servers where whoever pushes artifacts must not read the worker's disk.
    `ssh_key_path` is the private key for `ssh://` and `git@host:` chart URLs;
    without it the ssh agent is asked.

    Keep one loader per worker process: the refresh clock of moving refs lives
    in the instance, so a new loader re-fetches a branch on its first use.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        allow_local: bool = True,
        ssh_key_path: Path | None = None,
        plain_http_registries: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.plain_http_registries = plain_http_registries
        self.refresh_seconds = refresh_seconds
        self.allow_local = allow_local
        self.ssh_key_path = ssh_key_path
        self._clock = clock
        self._charts = self.cache_dir / "charts"
        self._mirrors = self.cache_dir / "git"
        self._locks = self.cache_dir / "locks"
        self._tmp = self.cache_dir / "tmp"
        for directory in (self._charts, self._mirrors, self._locks, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._memo: dict[ChartSource, tuple[Path, float]] = {}
        self._memo_lock = threading.Lock()

    def fetch(self, chart: Chart) -> Path:
        """The unpacked chart's directory, downloading it if the cache does not hold it.

        :raise ChartSourceError: the source could not be reached or has no such chart.
        :raise RenderError: `chart` names no accepted source, or a local one when not allowed.
        """
        source = parse_chart_source(chart)
        if isinstance(source, LocalSource):
            return self._local(source)
        if isinstance(source, GitSource) and source.local and not self.allow_local:
            raise RenderError(
                f"{source.describe()}: file:// chart URLs are not allowed on this GimletD; "
                "use a remote git URL or a Helm repository"
            )
        cached = self._remembered(source)
        if cached is not None:
            return cached
        path = self._git(source) if isinstance(source, GitSource) else self._helm(source)
        with self._memo_lock:
            self._memo[source] = (path, self._clock())
        return path

    def _remembered(self, source: ChartSource) -> Path | None:
        with self._memo_lock:
            entry = self._memo.get(source)
        if entry is None:
            return None
        path, fetched_at = entry
        if _moving(source) and self._clock() - fetched_at >= self.refresh_seconds:
            return None
        return path if path.is_dir() else None

    # -- local directories

    def _local(self, source: LocalSource) -> Path:
        if not self.allow_local:
            raise RenderError(
                f"{source.describe()}: local chart paths are not allowed on this GimletD; "
                "use a Helm repository, OCI reference or git URL"
            )
        path = Path(source.path).resolve()
        if not (path / "Chart.yaml").is_file():
            raise ChartSourceError(
                f"{source.describe()}: there is no Chart.yaml in {path} "
                f"(relative paths are resolved from {Path.cwd()}); check chart.name, or set "
                "chart.repository if you meant a chart from a Helm repository"
            )
        return path

    # -- Helm and OCI repositories

    def _pull(self, source: HelmRepositorySource | OCISource, scratch: Path) -> Path:
        """`_pull`, over plain HTTP for OCI registries listed in CHART_PLAIN_HTTP_REGISTRIES."""
        plain_http = (
            isinstance(source, OCISource)
            and urlsplit(source.reference).netloc in self.plain_http_registries
        )
        return _pull(source, scratch, plain_http=plain_http)

    def _helm(self, source: HelmRepositorySource | OCISource) -> Path:
        location = source.url if isinstance(source, HelmRepositorySource) else source.reference
        if source.version:
            key = _chart_key(location, source.name, source.version)
            final = self._charts / key
            if final.is_dir():
                return final
            with self._locked(key):
                if not final.is_dir():
                    with self._scratch() as scratch:
                        self._install(self._pull(source, scratch), final)
            return final
        with self._locked(f"newest-{_digest(location, source.name)}"), self._scratch() as scratch:
            unpacked = self._pull(source, scratch)
            version = _chart_version(unpacked, source.describe())
            key = _chart_key(location, source.name, version)
            final = self._charts / key
            if not final.is_dir():
                self._install(unpacked, final)
            return final

    # -- git repositories

    def _git(self, source: GitSource) -> Path:
        commit = self._resolve_commit(source)
        key = f"git-{_slug(f'{_repo_name(source.url)}-{source.path}')}-"
        key += _digest(source.url, commit, source.path)
        final = self._charts / key
        if final.is_dir():
            return final
        with self._locked(key):
            if not final.is_dir():
                with self._scratch() as scratch:
                    unpacked = scratch / "chart"
                    _extract(self._mirror_path(source), commit, source, unpacked)
                    if not (unpacked / "Chart.yaml").is_file():
                        raise ChartSourceError(
                            f"{source.describe()}: there is no Chart.yaml at /{source.path} of "
                            f"commit {commit}; check the path= parameter of the chart URL"
                        )
                    self._install(unpacked, final)
        return final

    def _mirror_path(self, source: GitSource) -> Path:
        return self._mirrors / f"{_digest(source.url)}.git"

    def _resolve_commit(self, source: GitSource) -> str:
        """The commit `source` names now, fetching into the bare mirror when needed."""
        import pygit2

        mirror = self._mirror_path(source)
        with self._locked(f"mirror-{mirror.stem}"):
            if not mirror.is_dir():
                with self._scratch() as scratch:
                    fresh = pygit2.init_repository(str(scratch / "mirror.git"), bare=True)
                    fresh.remotes.create("origin", source.url)
                    fresh.free()
                    os.rename(scratch / "mirror.git", mirror)
            repo = pygit2.Repository(str(mirror))
            try:
                commit = None if source.ref_kind.moving else _lookup_commit(repo, source)
                if commit is None:
                    self._git_fetch(repo, source)
                    commit = _lookup_commit(repo, source)
                if commit is None:
                    raise ChartSourceError(
                        f"{source.describe()}: the {source.ref_label} does not exist in "
                        f"{redact_url(source.url)}; check the chart URL's branch=, tag= or sha="
                    )
                return commit
            finally:
                repo.free()

    def _git_fetch(self, repo: pygit2.Repository, source: GitSource) -> None:
        import pygit2

        try:
            repo.remotes.set_url("origin", source.url)
            repo.remotes["origin"].fetch(
                _refspecs(source), callbacks=_remote_callbacks(source.url, self.ssh_key_path)
            )
        except (pygit2.GitError, KeyError, ValueError) as exc:
            raise ChartSourceError(
                f"{source.describe()}: could not fetch from {redact_url(source.url)}: {exc}. "
                "Check that the URL is reachable from the GimletD worker and its credentials"
            ) from exc

    # -- shared helpers

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on `key`, across threads and processes."""
        with open(self._locks / f"{key}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        """A temporary directory on the cache's file system, so `os.rename` is atomic."""
        path = Path(tempfile.mkdtemp(dir=self._tmp))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _install(unpacked: Path, final: Path) -> None:
        os.rename(unpacked, final)


def _moving(source: ChartSource) -> bool:
    if isinstance(source, GitSource):
        return source.ref_kind.moving
    if isinstance(source, HelmRepositorySource | OCISource):
        return not source.version
    return False


def _repo_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")


def _pull(
    source: HelmRepositorySource | OCISource, scratch: Path, *, plain_http: bool = False
) -> Path:
    """Download and unpack `source` under `scratch`; returns the chart's directory."""
    try:
        import helm_python as helm
    except Exception as exc:  # ImportError, or the native library failing to load
        raise ChartSourceError(
            f"{source.describe()}: helm-python-sdk is not usable on this worker ({exc}); "
            "install it, or render with the Flux engine"
        ) from exc
    untar_dir = scratch / "unpacked"
    try:
        if isinstance(source, HelmRepositorySource):
            helm.pull(
                source.name,
                repo_url=source.url,
                version=source.version or None,
                destination=scratch,
                untar=True,
                untar_dir=untar_dir,
            )
        else:
            helm.pull(
                source.reference,
                version=source.version or None,
                destination=scratch,
                untar=True,
                untar_dir=untar_dir,
                plain_http=plain_http,
            )
    except helm.HelmError as exc:
        raise ChartSourceError(
            f"{source.label} could not be fetched from {source.location}: {exc}. "
            "Check that the repository is reachable from the GimletD worker and holds "
            "this chart version"
        ) from exc
    charts = sorted(path.parent for path in untar_dir.glob("*/Chart.yaml"))
    if len(charts) != 1:
        raise ChartSourceError(
            f"{source.describe()}: the downloaded archive holds {len(charts)} charts, expected one"
        )
    return charts[0]


def _chart_version(chart_dir: Path, what: str) -> str:
    metadata = yamlsafe.load(
        (chart_dir / "Chart.yaml").read_text(encoding="utf-8"), what=f"Chart.yaml of {what}"
    )
    return str(metadata.get("version", ""))


def _refspecs(source: GitSource) -> list[str]:
    """Fetch only what the ref needs; a sha may be on any branch or tag."""
    if source.ref_kind is GitRefKind.DEFAULT:
        return ["+HEAD:refs/remotes/origin/HEAD"]
    if source.ref_kind is GitRefKind.BRANCH:
        return [f"+refs/heads/{source.ref}:refs/remotes/origin/{source.ref}"]
    if source.ref_kind is GitRefKind.TAG:
        return [f"+refs/tags/{source.ref}:refs/tags/{source.ref}"]
    return ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]


def _lookup_commit(repo: pygit2.Repository, source: GitSource) -> str | None:
    """The commit id `source` names in the mirror, or None if the mirror lacks it."""
    import pygit2

    spec = {
        GitRefKind.DEFAULT: "refs/remotes/origin/HEAD",
        GitRefKind.BRANCH: f"refs/remotes/origin/{source.ref}",
        GitRefKind.TAG: f"refs/tags/{source.ref}",
        GitRefKind.SHA: source.ref,
    }[source.ref_kind]
    try:
        commit = repo.revparse_single(spec).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        return None
    return str(commit.id)


def _extract(mirror: Path, commit_id: str, source: GitSource, destination: Path) -> None:
    """Write the tree at `source.path` of `commit_id` to `destination`, plain files only."""
    import pygit2

    repo = pygit2.Repository(str(mirror))
    try:
        tree = repo[commit_id].peel(pygit2.Tree)
        if source.path:
            try:
                entry = tree[source.path]
            except KeyError:
                raise ChartSourceError(
                    f"{source.describe()}: commit {commit_id} has no /{source.path}; "
                    "check the path= parameter of the chart URL"
                ) from None
            if entry.type_str != "tree":
                raise ChartSourceError(
                    f"{source.describe()}: /{source.path} is not a directory in commit {commit_id}"
                )
            tree = repo[entry.id].peel(pygit2.Tree)
        _write_tree(repo, tree, destination, source)
    finally:
        repo.free()


def _write_tree(repo: Any, tree: Any, destination: Path, source: GitSource) -> None:
    import pygit2

    destination.mkdir()
    for entry in tree:
        name = entry.name or ""
        if name in ("", ".", "..", ".git") or "/" in name or "\0" in name:
            raise ChartSourceError(f"{source.describe()}: refusing the tree entry {name!r}")
        target = destination / name
        if entry.filemode == pygit2.enums.FileMode.TREE:
            _write_tree(repo, repo[entry.id], target, source)
        elif entry.filemode in (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE):
            target.write_bytes(repo[entry.id].data)
        else:
            raise ChartSourceError(
                f"{source.describe()}: {name!r} is a symlink or submodule; a chart fetched from "
                "git may hold only plain files and folders"
            )


def _remote_callbacks(url: str, key_path: Path | None) -> Any:
    """Credentials for ssh URLs (a key file, else the ssh agent); None for other transports."""
    import pygit2

    scp = _SCP_FORM.match(url)
    if scp is not None:
        user = scp.group("user")
    elif url.lower().startswith("ssh://"):
        user = urlsplit(url).username or "git"
    else:
        return None
    if key_path is None:
        credentials: Any = pygit2.KeypairFromAgent(user)
    else:
        credentials = pygit2.Keypair(user, None, str(key_path), "")
    return pygit2.RemoteCallbacks(credentials=credentials)
