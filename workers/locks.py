"""The Redis lock that serialises GitOps writes per (GitOps repository, environment)."""

from __future__ import annotations

import hashlib

import redis
from redis.lock import Lock

LOCK_PREFIX = "gimletd:gitops-lock"


def env_lock(client: redis.Redis, gitops_repo: str, env: str, *, timeout: float) -> Lock:
    """A lock that expires after `timeout` seconds, so a killed worker cannot block an env."""
    repo_key = hashlib.sha256(gitops_repo.encode()).hexdigest()[:16]
    return client.lock(f"{LOCK_PREFIX}:{repo_key}:{env}", timeout=timeout, blocking=False)
