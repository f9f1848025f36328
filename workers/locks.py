"""The Redis lock that serialises GitOps writes per (GitOps repository, environment)."""

from __future__ import annotations

import hashlib
import os
import socket
import uuid

import redis
from redis.lock import Lock

LOCK_PREFIX = "gimletd:gitops-lock"


def env_lock(client: redis.Redis, gitops_repo: str, env: str, *, timeout: float) -> Lock:
    """A lock that expires after `timeout` seconds, so a killed worker cannot block an env."""
    repo_key = hashlib.sha256(gitops_repo.encode()).hexdigest()[:16]
    return client.lock(f"{LOCK_PREFIX}:{repo_key}:{env}", timeout=timeout, blocking=False)


def holder_token() -> str:
    """A lock token naming its holder, `<host>:<pid>:<random>`, so an operator (or a test)
    reading the lock key sees which worker process holds an environment."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


def holder_pid(token: bytes | str) -> int | None:
    """The process id a `holder_token` names; None for a token of another form."""
    text = token.decode(errors="replace") if isinstance(token, bytes) else token
    parts = text.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
