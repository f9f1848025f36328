"""Settings: the original's variable names, embedded defaults, and secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gimletd.rendering import RenderEngine
from gimletd.settings import DEFAULT_REDIS_URL, Settings


def test_defaults_live_in_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'gimletd.sqlite'}"
    assert settings.resolved_gitops_repo == str(tmp_path / "gitops.git")
    assert settings.resolved_repo_cache_path == tmp_path / "repo-cache"
    assert settings.resolved_chart_cache_path == tmp_path / "charts"
    assert settings.resolved_redis_url == DEFAULT_REDIS_URL
    assert settings.renderer is RenderEngine.HELM
    assert settings.chart_allow_local is False


def test_environment_variables_use_the_originals_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPS_REPO", "/srv/gitops.git")
    monkeypatch.setenv("REPO_CACHE_PATH", "/var/cache/gimletd")
    monkeypatch.setenv("RENDERER", "flux")
    monkeypatch.setenv("PRINT_ADMIN_TOKEN", "true")
    settings = Settings()
    assert settings.resolved_gitops_repo == "/srv/gitops.git"
    assert settings.resolved_repo_cache_path == Path("/var/cache/gimletd")
    assert settings.renderer is RenderEngine.FLUX
    assert settings.print_admin_token is True


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/g", "postgresql+psycopg://u:p@db:5432/g"),
        ("postgresql://u@db/g", "postgresql+psycopg://u@db/g"),
        ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
    ],
)
def test_database_url_takes_the_urls_people_write(url: str, expected: str) -> None:
    assert Settings(database_url=url).resolved_database_url == expected


def test_the_originals_driver_and_config_pair(tmp_path: Path) -> None:
    postgres = Settings(database_driver="postgres", database_config="postgres://u@db/g")
    assert postgres.resolved_database_url == "postgresql+psycopg://u@db/g"
    sqlite = Settings(database_driver="sqlite3", database_config=str(tmp_path / "g.db"))
    assert sqlite.resolved_database_url == f"sqlite:///{tmp_path / 'g.db'}"
    with pytest.raises(ValueError, match="DATABASE_DRIVER 'mysql'"):
        _ = Settings(database_driver="mysql").resolved_database_url
    with pytest.raises(ValueError, match="postgres:// URL"):
        _ = Settings(database_driver="postgres", database_config="host=db").resolved_database_url


def test_owner_repo_is_the_originals_github_shorthand(tmp_path: Path) -> None:
    assert (
        Settings(gitops_repo="acme/gitops").resolved_gitops_repo
        == "https://github.com/acme/gitops.git"
    )
    with_key = Settings(gitops_repo="acme/gitops", gitops_repo_deploy_key_path=tmp_path / "key")
    assert with_key.resolved_gitops_repo == "git@github.com:acme/gitops.git"
    assert Settings(gitops_repo="ssh://git@h/r.git").resolved_gitops_repo == "ssh://git@h/r.git"


def test_secrets_never_show_in_a_repr() -> None:
    settings = Settings(
        admin_token="admin-secret",
        database_url="postgres://u:db-secret@db/g",
        gitops_repo_token="git-secret",
    )
    shown = repr(settings) + str(settings)
    for secret in ("admin-secret", "db-secret", "git-secret"):
        assert secret not in shown


def test_environment_round_trips_for_child_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `gimletd up`, the tests and the benchmark hand to the processes they start."""
    settings = Settings(
        data_dir=tmp_path, admin_token="secret", renderer="flux", sweep_interval=2.5, port=9999
    )
    variables = settings.environment()
    assert variables["GIMLETD_ADMIN_TOKEN"] == "secret"
    assert variables["RENDERER"] == "flux"
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    assert Settings() == settings
    inherited = settings.environment(inherit={"PATH": "/bin", "REDIS_URL": "redis://stale"})
    assert inherited["PATH"] == "/bin"
    assert "REDIS_URL" not in inherited, "a setting of the parent never leaks into the child"


def test_repository_mappings_are_read_and_checked(tmp_path: Path) -> None:
    settings = Settings(
        GITOPS_REPOS="production = acme/prod, staging=/srv/staging.git",
        APP_REPOS="acme/frontend=https://git.example.com/fe.git,acme/api=/srv/api",
        GIMLETD_DATA_DIR=str(tmp_path),
    )
    assert settings.gitops_repos_by_env == {
        "production": "https://github.com/acme/prod.git",
        "staging": "/srv/staging.git",
    }
    assert settings.app_repo_urls == {
        "acme/frontend": "https://git.example.com/fe.git",
        "acme/api": "/srv/api",
    }


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"GITOPS_REPOS": "production"}, "is not environment=repository"),
        ({"GITOPS_REPOS": "a=x,a=y"}, "names environment 'a' twice"),
        ({"GITOPS_REPOS": "Prod=x"}, "DNS-1123"),
        ({"APP_REPOS": "acme/fe="}, "is not repository=url"),
        ({"APP_REPOS": "a/b=x, a/b=y"}, "names repository 'a/b' twice"),
    ],
)
def test_malformed_repository_mappings_stop_the_start(
    variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**variables)


def test_an_empty_secret_is_no_secret() -> None:
    settings = Settings(GITHUB_WEBHOOK_SECRET="", APP_REPOS_TOKEN="")
    assert settings.github_webhook_secret is None
    assert settings.app_repos_token is None


def test_the_app_repos_token_goes_to_github_and_the_hosts_app_repos_names() -> None:
    settings = Settings(APP_REPOS="a/b=https://git.example.com/b.git,c/d=/srv/d")
    assert settings.app_repo_token_hosts == {"github.com", "git.example.com"}


@pytest.mark.parametrize(("value", "seconds"), [("300", 300.0), ("2.5", 2.5), ("5m", 300.0)])
def test_the_cleanup_poll_interval_takes_seconds_or_a_duration(value: str, seconds: float) -> None:
    assert Settings(CLEANUP_POLL_INTERVAL=value).cleanup_poll_interval == seconds
