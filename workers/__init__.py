"""GimletD's Celery workers: `celery -A workers worker` finds `workers.celery.app`."""

from workers.celery import app

__all__ = ["app"]
