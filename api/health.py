"""Liveness, readiness and the root page; these need no token, for load balancers and probes."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from api.services import services
from gimletd.errors import StoreUnavailable
from gimletd.metrics import CONTENT_TYPE, scrape

blueprint = Blueprint("health", __name__)


@blueprint.get("/")
def root() -> Response:
    return jsonify({"name": "gimletd", "api": "/api"})


@blueprint.get("/health")
def health() -> Response:
    """The process answers: for liveness probes."""
    return jsonify({"status": "ok"})


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics (no token): counts from the database, measurements of the workers."""
    body = scrape(services().store, services().settings.metrics_dir)
    return Response(body, mimetype=None, content_type=CONTENT_TYPE)


@blueprint.get("/ready")
def ready() -> tuple[Response, int]:
    """The database and Redis answer: for readiness probes."""
    checks = {"database": "ok", "redis": "ok"}
    try:
        services().store.ping()
    except StoreUnavailable as exc:
        checks["database"] = str(exc)
    try:
        client = redis.Redis.from_url(
            services().settings.resolved_redis_url, socket_connect_timeout=1, socket_timeout=1
        )
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as exc:
        checks["redis"] = f"unavailable: {exc}"
    ok = all(value == "ok" for value in checks.values())
    return jsonify({"ready": ok, **checks}), 200 if ok else 503
