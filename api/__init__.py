"""GimletD's HTTP API: a thin Flask app that validates, authenticates, stores and enqueues.

No git work and no rendering happen here; the workers do that.
"""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from api import (
    artifacts,
    cleanup,
    control,
    errors,
    events,
    flux,
    health,
    openapi,
    releases,
    users,
    webhooks,
)
from api.enqueue import Enqueuer
from api.intake import ArtifactIntake
from api.services import Services
from gimletd.logs import configure_logging
from gimletd.settings import Settings
from gimletd.store import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API for `settings` (from the environment when not given)."""
    settings = settings or Settings()
    configure_logging(development=settings.development)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    if settings.trusted_proxies:
        # The audit names the caller's address, not the ingress's.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    store = Store(settings.resolved_database_url)
    store.migrate()
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
    issued = store.ensure_admin(admin_token)
    if issued is not None:
        if settings.print_admin_token:
            print(f"Admin token: {issued}", flush=True)
        else:
            log.warning(
                "created the admin user; its token was not printed: set PRINT_ADMIN_TOKEN=true "
                "or GIMLETD_ADMIN_TOKEN to know it"
            )

    enqueuer = Enqueuer(settings.resolved_redis_url)
    app.extensions["gimletd"] = Services(
        settings=settings,
        store=store,
        enqueuer=enqueuer,
        intake=ArtifactIntake(store, enqueuer.process_events),
    )
    errors.register(app)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(artifacts.blueprint)
    app.register_blueprint(events.blueprint)
    app.register_blueprint(releases.blueprint)
    app.register_blueprint(control.blueprint)
    app.register_blueprint(cleanup.blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(flux.blueprint)
    app.register_blueprint(users.blueprint)
    app.register_blueprint(openapi.blueprint)
    return app
