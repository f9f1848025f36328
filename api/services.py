"""What a request handler may use: settings, the store and the enqueuer of this app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from api.enqueue import Enqueuer
from api.intake import ArtifactIntake
from gimletd.settings import Settings
from gimletd.store import Store


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: Store
    enqueuer: Enqueuer
    #: Stores artifact pushes, several in one transaction under load (see `api.intake`).
    intake: ArtifactIntake

    def close(self) -> None:
        """Answer the pushes in flight, then close the database connections."""
        self.intake.close()
        self.store.close()


def services() -> Services:
    """The services of the app handling the current request."""
    found: Services = current_app.extensions["gimletd"]
    return found
