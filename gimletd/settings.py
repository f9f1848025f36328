"""GimletD's settings, read once at each edge (API, worker, CLI) and passed down.

Environment variables keep the Go original's names where one existed
(`GITOPS_REPO`, `REPO_CACHE_PATH`, `DATABASE_DRIVER`/`DATABASE_CONFIG`, ...).
Every default is embedded, so an unconfigured install runs on SQLite and a
local bare GitOps repository inside the data directory. Core functions never
read the environment themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gimletd.durations import parse_duration
from gimletd.models import check_dns_label
from gimletd.notifications import discord, github, slack
from gimletd.rendering import RenderEngine

DEFAULT_DATA_DIR = Path(".gimletd")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PORT = 8888
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
GITHUB_SHORTHAND = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class Settings(BaseSettings):
    """Every knob of GimletD, with the environment variable that sets it."""

    model_config = SettingsConfigDict(
        env_file=None,
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
        # A refused setting must not print the others (tokens) in its error.
        hide_input_in_errors=True,
    )

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, validation_alias="GIMLETD_DATA_DIR")
    development: bool = Field(default=False, validation_alias="GIMLETD_DEV")

    # The API
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int = Field(default=DEFAULT_PORT, validation_alias="PORT")
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, validation_alias="MAX_BODY_BYTES")
    admin_token: SecretStr | None = Field(default=None, validation_alias="GIMLETD_ADMIN_TOKEN")
    print_admin_token: bool = Field(default=False, validation_alias="PRINT_ADMIN_TOKEN")
    #: Reverse proxies in front of the API whose X-Forwarded-For is believed (for the audit).
    trusted_proxies: int = Field(default=0, ge=0, le=5, validation_alias="TRUSTED_PROXIES")

    # The store
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    database_driver: str | None = Field(default=None, validation_alias="DATABASE_DRIVER")
    database_config: SecretStr | None = Field(default=None, validation_alias="DATABASE_CONFIG")

    # The queue
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")

    # The GitOps repository
    gitops_repo: str | None = Field(default=None, validation_alias="GITOPS_REPO")
    gitops_repos: str = Field(default="", validation_alias="GITOPS_REPOS")
    gitops_branch: str | None = Field(default=None, validation_alias="GITOPS_BRANCH")
    gitops_repo_deploy_key_path: Path | None = Field(
        default=None, validation_alias="GITOPS_REPO_DEPLOY_KEY_PATH"
    )
    gitops_repo_token: SecretStr | None = Field(default=None, validation_alias="GITOPS_REPO_TOKEN")
    repo_cache_path: Path | None = Field(default=None, validation_alias="REPO_CACHE_PATH")
    git_author_name: str = Field(default="GimletD", validation_alias="GIT_AUTHOR_NAME")
    git_author_email: str = Field(default="gimletd@gimlet.io", validation_alias="GIT_AUTHOR_EMAIL")
    push_attempts: int = Field(default=5, ge=1, validation_alias="GITOPS_PUSH_ATTEMPTS")
    git_timeout: float = Field(default=30.0, gt=0, validation_alias="GIT_TIMEOUT")
    lock_timeout: float = Field(default=120.0, gt=0, validation_alias="GITOPS_LOCK_TIMEOUT")

    # Rendering
    renderer: RenderEngine = Field(default=RenderEngine.HELM, validation_alias="RENDERER")
    chart_cache_path: Path | None = Field(default=None, validation_alias="CHART_CACHE_PATH")
    chart_refresh_seconds: float = Field(
        default=300.0, ge=0, validation_alias="CHART_REFRESH_SECONDS"
    )
    chart_allow_local: bool = Field(default=False, validation_alias="CHART_ALLOW_LOCAL")
    chart_ssh_key_path: Path | None = Field(default=None, validation_alias="CHART_SSH_KEY_PATH")
    chart_plain_http_registries: str = Field(
        default="", validation_alias="CHART_PLAIN_HTTP_REGISTRIES"
    )

    @property
    def plain_http_registries(self) -> frozenset[str]:
        """OCI registries (`host:port`) reached over plain HTTP, as Helm's --plain-http."""
        return frozenset(
            h.strip() for h in self.chart_plain_http_registries.split(",") if h.strip()
        )

    # Preview cleanup
    github_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="GITHUB_WEBHOOK_SECRET"
    )
    app_repos: str = Field(default="", validation_alias="APP_REPOS")
    app_repos_token: SecretStr | None = Field(default=None, validation_alias="APP_REPOS_TOKEN")
    cleanup_poll_interval: float = Field(
        default=300.0, gt=0, validation_alias="CLEANUP_POLL_INTERVAL"
    )

    @field_validator(
        "github_webhook_secret",
        "app_repos_token",
        "notifications_token",
        "discord_webhook_url",
        "discord_token",
        "github_token",
        "webhook_urls",
        "webhook_secret",
        "flux_webhook_secret",
    )
    @classmethod
    def _empty_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """`GITHUB_WEBHOOK_SECRET=` sets nothing: an empty HMAC key would let anyone sign.

        Surrounding whitespace is dropped: a token read from a file often ends in a
        newline, which no HTTP header may carry.
        """
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _mappings_are_well_formed(self) -> Settings:
        """A malformed GITOPS_REPOS, APP_REPOS or notification setting stops the start."""
        _ = self.gitops_repos_by_env, self.app_repo_urls, self.slack_channels
        _ = self.notification_providers
        return self

    @field_validator("cleanup_poll_interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> object:
        """Seconds (`300`, `2.5`), or a duration such as `5m`."""
        if not isinstance(value, str):
            return value
        try:
            return float(value)
        except ValueError:
            return parse_duration(value)

    @property
    def app_repo_urls(self) -> dict[str, str]:
        """APP_REPOS, `owner/repo=url,owner/repo=url`: where to poll a repository's branches.

        :raise ValueError: for an entry that is not `repository=url`, or one named twice.
        """
        return _mapping(self.app_repos, "APP_REPOS", "repository", "url")

    def app_repo_url(self, repository: str, derived: str) -> str:
        """Where `repository`'s branches are polled: its APP_REPOS entry, else `derived`."""
        return self.app_repo_urls.get(repository, derived)

    @property
    def app_repo_token_hosts(self) -> frozenset[str]:
        """Hosts APP_REPOS_TOKEN is offered to: GitHub's and those APP_REPOS names, no others.

        Artifacts name the URL polled, so a token given to any host that asks
        would go wherever an artifact points.
        """
        hosts = {urlsplit(url).hostname for url in self.app_repo_urls.values()}
        return frozenset({"github.com"} | {host for host in hosts if host})

    # Notifications
    notifications_provider: str = Field(default="", validation_alias="NOTIFICATIONS_PROVIDER")
    notifications_token: SecretStr | None = Field(
        default=None, validation_alias="NOTIFICATIONS_TOKEN"
    )
    notifications_default_channel: str = Field(
        default="", validation_alias="NOTIFICATIONS_DEFAULT_CHANNEL"
    )
    notifications_channel_mapping: str = Field(
        default="", validation_alias="NOTIFICATIONS_CHANNEL_MAPPING"
    )
    slack_api_url: str = Field(default=slack.DEFAULT_API_URL, validation_alias="SLACK_API_URL")
    discord_webhook_url: SecretStr | None = Field(
        default=None, validation_alias="DISCORD_WEBHOOK_URL"
    )
    discord_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_TOKEN")
    discord_channel: str = Field(default="", validation_alias="DISCORD_CHANNEL")
    discord_api_url: str = Field(
        default=discord.DEFAULT_API_URL, validation_alias="DISCORD_API_URL"
    )
    github_token: SecretStr | None = Field(default=None, validation_alias="GITHUB_TOKEN")
    github_api_url: str = Field(default=github.DEFAULT_API_URL, validation_alias="GITHUB_API_URL")
    webhook_urls: SecretStr | None = Field(default=None, validation_alias="WEBHOOK_URLS")
    webhook_secret: SecretStr | None = Field(default=None, validation_alias="WEBHOOK_SECRET")
    flux_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="FLUX_WEBHOOK_SECRET"
    )
    notifications_max_attempts: int = Field(
        default=8, ge=1, validation_alias="NOTIFICATIONS_MAX_ATTEMPTS"
    )
    notifications_retry_base: float = Field(
        default=2.0, gt=0, validation_alias="NOTIFICATIONS_RETRY_BASE"
    )
    notifications_timeout: float = Field(
        default=10.0, gt=0, validation_alias="NOTIFICATIONS_TIMEOUT"
    )

    @property
    def notification_providers(self) -> list[str]:
        """NOTIFICATIONS_PROVIDER, `slack,discord,github,webhook`: where notices go.

        :raise ValueError: for an unknown provider, or one whose settings are missing.
        """
        names = [n.strip().lower() for n in self.notifications_provider.split(",") if n.strip()]
        for name in names:
            if name not in PROVIDER_SETTINGS:
                raise ValueError(
                    f"NOTIFICATIONS_PROVIDER names {name!r}: use slack, discord, github or webhook"
                )
            missing = PROVIDER_SETTINGS[name](self)
            if missing:
                raise ValueError(f"NOTIFICATIONS_PROVIDER includes {name}, but {missing}")
        return list(dict.fromkeys(names))

    @property
    def webhook_url_list(self) -> list[str]:
        """WEBHOOK_URLS, comma-separated; kept secret as URLs often carry a token."""
        raw = self.webhook_urls.get_secret_value() if self.webhook_urls else ""
        return [url.strip() for url in raw.split(",") if url.strip()]

    @property
    def slack_channels(self) -> dict[str, str]:
        """NOTIFICATIONS_CHANNEL_MAPPING, `staging=team-a,production=ops`: a channel per env."""
        return _mapping(
            self.notifications_channel_mapping, "NOTIFICATIONS_CHANNEL_MAPPING", "env", "channel"
        )

    def slack_channel_for(self, env: str) -> str:
        """The env's channel from the mapping, else NOTIFICATIONS_DEFAULT_CHANNEL ("" for none)."""
        return self.slack_channels.get(env, self.notifications_default_channel)

    # Metrics
    prometheus_multiproc_dir: Path | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )

    # Recovery of unfinished work
    sweep_interval: float = Field(default=15.0, gt=0, validation_alias="SWEEP_INTERVAL")
    stale_after: float = Field(default=30.0, gt=0, validation_alias="STALE_AFTER")
    max_attempts: int = Field(default=10, ge=1, validation_alias="EVENT_MAX_ATTEMPTS")
    index_sync_interval: float = Field(default=30.0, gt=0, validation_alias="INDEX_SYNC_INTERVAL")

    def environment(self, *, inherit: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment that gives a child process exactly these settings.

        Variables of `inherit` (say `os.environ`) are kept, less any GimletD setting.
        """
        variables = without_settings(inherit or {})
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None or not isinstance(field.validation_alias, str):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            variables[field.validation_alias] = str(getattr(value, "value", value))
        return variables

    @property
    def resolved_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, else the original's DATABASE_DRIVER/CONFIG, else SQLite in the data dir."""
        if self.database_url is not None:
            return sqlalchemy_url(self.database_url.get_secret_value())
        if self.database_driver:
            config = self.database_config.get_secret_value() if self.database_config else ""
            return _url_from_driver(self.database_driver, config)
        return f"sqlite:///{(self.data_dir / 'gimletd.sqlite').resolve()}"

    @property
    def default_gitops_repo_path(self) -> Path:
        """Where the local bare GitOps repository lives when GITOPS_REPO is unset."""
        return (self.data_dir / "gitops.git").resolve()

    @property
    def resolved_gitops_repo(self) -> str:
        """The GitOps repository's URL: GITOPS_REPO with `owner/repo` expanded, or the local one."""
        if not self.gitops_repo:
            return str(self.default_gitops_repo_path)
        return self._expand_repo(self.gitops_repo)

    @property
    def gitops_repos_by_env(self) -> dict[str, str]:
        """GITOPS_REPOS, `env=repo,env=repo`: environments kept in repositories of their own.

        :raise ValueError: for an entry that is not `env=repo`, or an env named twice.
        """
        mapping = _mapping(self.gitops_repos, "GITOPS_REPOS", "environment", "repository")
        for env in mapping:
            check_dns_label(env, "GITOPS_REPOS environment")
        return {env: self._expand_repo(repo) for env, repo in mapping.items()}

    def gitops_repo_for(self, env: str) -> str:
        """The repository `env` is written to: its GITOPS_REPOS entry, else GITOPS_REPO."""
        return self.gitops_repos_by_env.get(env, self.resolved_gitops_repo)

    @property
    def all_gitops_repos(self) -> list[str]:
        """Every repository this GimletD writes to, the default one first."""
        return list(dict.fromkeys([self.resolved_gitops_repo, *self.gitops_repos_by_env.values()]))

    def _expand_repo(self, repo: str) -> str:
        """`owner/repo` is a GitHub repository, over ssh when a deploy key is set."""
        if GITHUB_SHORTHAND.match(repo) and not Path(repo).exists():
            if self.gitops_repo_deploy_key_path is not None:
                return f"git@github.com:{repo}.git"
            return f"https://github.com/{repo}.git"
        return repo

    @property
    def resolved_repo_cache_path(self) -> Path:
        return (self.repo_cache_path or self.data_dir / "repo-cache").resolve()

    @property
    def resolved_chart_cache_path(self) -> Path:
        return (self.chart_cache_path or self.data_dir / "charts").resolve()

    @property
    def metrics_dir(self) -> Path:
        """Where worker processes keep their Prometheus metrics for the API to read.

        PROMETHEUS_MULTIPROC_DIR when set (prometheus-client's own variable), else
        `metrics/` in the data directory; the API and the workers must share it.
        """
        return (self.prometheus_multiproc_dir or self.data_dir / "metrics").resolve()

    @property
    def helm_home(self) -> Path:
        """Where the Helm engine keeps its own caches, instead of the user's home."""
        return (self.data_dir / "helm").resolve()


def _slack_missing(settings: Settings) -> str:
    if settings.notifications_token is None:
        return "NOTIFICATIONS_TOKEN (the Slack bot token) is not set"
    if not settings.notifications_default_channel and not settings.slack_channels:
        return "neither NOTIFICATIONS_DEFAULT_CHANNEL nor NOTIFICATIONS_CHANNEL_MAPPING is set"
    return ""


def _discord_missing(settings: Settings) -> str:
    if settings.discord_webhook_url is not None:
        return ""
    if settings.discord_token is not None and settings.discord_channel:
        return ""
    return "neither DISCORD_WEBHOOK_URL nor DISCORD_TOKEN with DISCORD_CHANNEL is set"


def _github_missing(settings: Settings) -> str:
    return "" if settings.github_token is not None else "GITHUB_TOKEN is not set"


def _webhook_missing(settings: Settings) -> str:
    return "" if settings.webhook_url_list else "WEBHOOK_URLS is not set"


#: Each provider, and what says which of its settings are missing ("" when none).
PROVIDER_SETTINGS: dict[str, Callable[[Settings], str]] = {
    "slack": _slack_missing,
    "discord": _discord_missing,
    "github": _github_missing,
    "webhook": _webhook_missing,
}


def _mapping(text: str, setting: str, key: str, value: str) -> dict[str, str]:
    """`key=value,key=value`, as GITOPS_REPOS and APP_REPOS are written.

    :raise ValueError: for an entry that is not `key=value`, or a key named twice.
    """
    mapping: dict[str, str] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        name, sep, target = (part.strip() for part in entry.partition("="))
        if not sep or not name or not target:
            raise ValueError(f"{setting} entry {entry.strip()!r} is not {key}={value}")
        if name in mapping:
            raise ValueError(f"{setting} names {key} {name!r} twice")
        mapping[name] = target
    return mapping


def without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` less every variable that sets a GimletD setting."""
    ours = {str(field.validation_alias) for field in Settings.model_fields.values()}
    return {key: value for key, value in environ.items() if key.upper() not in ours}


def sqlalchemy_url(url: str) -> str:
    """Turn the URLs people write (`postgres://`, `postgresql://`) into SQLAlchemy's driver form."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def _url_from_driver(driver: str, config: str) -> str:
    """The Go original's pair: DATABASE_DRIVER=sqlite3|postgres, DATABASE_CONFIG=path or DSN."""
    if driver in ("sqlite", "sqlite3"):
        return f"sqlite:///{Path(config or 'gimletd.sqlite').resolve()}"
    if driver in ("postgres", "postgresql"):
        if not urlsplit(config).scheme:
            raise ValueError(
                "DATABASE_CONFIG must be a postgres:// URL when DATABASE_DRIVER=postgres, "
                "for example postgres://gimletd@localhost:5432/gimletd"
            )
        return sqlalchemy_url(config)
    raise ValueError(f"DATABASE_DRIVER {driver!r} is not supported: use sqlite3 or postgres")
