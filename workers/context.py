"""Per-process resources of a worker: the store, the Redis client and the GitOps clone.

Created on first use inside the worker process (never before the fork) and kept
for the process's lifetime, so each write reuses the persistent clone.
"""

from __future__ import annotations

import functools
import logging
import os

import billiard
import pygit2
import redis

from gimletd.charts import CachingChartLoader
from gimletd.gitops.repository import Credentials, GitopsRepository, init_bare
from gimletd.release import Renderer
from gimletd.rendering import RenderEngine, helm_available, render
from gimletd.settings import Settings
from gimletd.store import Store

log = logging.getLogger(__name__)

node_name = "worker"


def settings() -> Settings:
    from workers.celery import settings as configured

    return configured


@functools.cache
def store() -> Store:
    return Store(settings().resolved_database_url)


@functools.cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings().resolved_redis_url, socket_timeout=10, socket_connect_timeout=5
    )


@functools.cache
def charts() -> CachingChartLoader:
    config = settings()
    return CachingChartLoader(
        config.resolved_chart_cache_path,
        refresh_seconds=config.chart_refresh_seconds,
        allow_local=config.chart_allow_local,
        ssh_key_path=config.chart_ssh_key_path,
        plain_http_registries=config.plain_http_registries,
    )


@functools.cache
def gitops_repo(url: str) -> GitopsRepository:
    """This process's clone of a GitOps repository, named after the worker node and process.

    :raise ValueError: when `url` is not one of the repositories the settings name.
    """
    config = settings()
    if url not in config.all_gitops_repos:
        raise ValueError(f"{url} is not a GitOps repository of this GimletD")
    if url == str(config.default_gitops_repo_path):
        init_bare(config.default_gitops_repo_path)
    token = config.gitops_repo_token.get_secret_value() if config.gitops_repo_token else None
    # A hung connection must not outlive the environment lock: bound libgit2's waits.
    pygit2.settings.server_connect_timeout = int(config.git_timeout * 1000)
    pygit2.settings.server_timeout = int(config.git_timeout * 1000)
    # Only prefork children have an index; the solo and threads pools run in one process.
    index = getattr(billiard.process.current_process(), "index", None) or 0
    return GitopsRepository(
        url,
        cache_dir=config.resolved_repo_cache_path,
        clone_name=f"{node_name}-{index}-{os.uname().nodename}",
        branch=config.gitops_branch,
        credentials=Credentials(config.gitops_repo_deploy_key_path, token),
        author_name=config.git_author_name,
        author_email=config.git_author_email,
    )


def reset() -> None:
    """Forget every resource, so the next use opens its own in this process."""
    for cached in (store, redis_client, charts, gitops_repo, render_engine):
        cached.cache_clear()


@functools.cache
def render_engine() -> RenderEngine:
    """The engine the settings ask for, or Flux where the Helm engine is not installed."""
    requested = settings().renderer
    if requested is RenderEngine.HELM and not helm_available():
        log.warning(
            "the Helm engine (helm-python-sdk) is not installed on this platform: rendering "
            "Flux HelmReleases instead, so Flux renders the charts in the cluster"
        )
        return RenderEngine.FLUX
    return requested


def renderer() -> Renderer:
    """The render function the release use cases are given."""
    engine, loader = render_engine(), charts()
    return lambda manifest: render(manifest, engine=engine, charts=loader)
