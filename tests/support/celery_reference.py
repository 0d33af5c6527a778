"""Celery configured as the workers are, to publish reference messages in tests (the producer
writes Celery's messages itself and keeps no Celery app)."""

from __future__ import annotations

from celery import Celery


def reference_app(redis_url: str) -> Celery:
    """A Celery app on ``redis_url`` with the project's configuration (``celeryconfig``)."""
    app = Celery("reference-producer", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = redis_url
    return app
