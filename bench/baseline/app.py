"""The naive baseline: one Celery task per SMS, httpx to the carrier, Celery's ``rate_limit``.

What a first implementation typically looks like, kept deliberately plain:

* one queue (``baseline``) for everything: OTPs wait behind marketing;
* one task per message (``send_one``), published with ``.delay()`` from a loop;
* a synchronous ``httpx.Client`` per worker process posting to the simulator's ``/v1/sms``;
* rate limiting with Celery's own ``rate_limit`` (``BASELINE_RATE_LIMIT``, default
  ``1000000/s``), which Celery enforces per worker instance, not across instances;
* no message log (the issue's definition); a failed call raises and is not retried.

Environment: ``REDIS_URL`` (broker), ``BASELINE_CARRIER_URL``, ``BASELINE_RATE_LIMIT``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import httpx
from celery import Celery
from celery.signals import worker_process_init, worker_ready

QUEUE = "baseline"
app = Celery("bench_baseline", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"))
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    result_backend=None,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

CARRIER_URL = os.environ.get("BASELINE_CARRIER_URL", "http://127.0.0.1:9090")
RATE_LIMIT = os.environ.get("BASELINE_RATE_LIMIT", "1000000/s")
_client: httpx.Client | None = None


def client() -> httpx.Client:
    """This worker process's HTTP client (keep-alive to the carrier)."""
    global _client
    if _client is None:
        _client = httpx.Client(base_url=CARRIER_URL, timeout=10)
    return _client


@worker_process_init.connect
def _fresh_client(**_kwargs: Any) -> None:
    global _client
    _client = None


@worker_ready.connect
def _announce(**_kwargs: Any) -> None:
    print("baseline worker ready.", file=sys.stderr, flush=True)


@app.task(name="baseline.send_one", rate_limit=RATE_LIMIT, ignore_result=True)
def send_one(to: str, text: str, ref: str) -> str:
    """Send one SMS; the carrier's id."""
    r = client().post("/v1/sms", json={"to": to, "from": "BENCH", "text": text, "ref": ref})
    r.raise_for_status()
    return str(r.json()["id"])
