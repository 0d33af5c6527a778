"""Celery settings: plain data built from the contract and the environment.

Why these values:
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only after it ran,
  so a killed worker's chunk is redelivered; the claim in the log makes the rerun harmless.
- ``worker_prefetch_multiplier = 1``: a worker holds at most one waiting task per process; the
  priority pool additionally runs with ``--disable-prefetch``.
- ``visibility_timeout``: every wait inside a task (rate limit, carrier calls) is bounded far
  below it; delayed work is parked in the log, never as a Celery ETA/countdown.
"""

from dispatcher.config import Settings
from dispatcher.contract import (
    TASK_APPLY_INBOUND,
    TASK_APPLY_REPORTS,
    TASK_DELIVER_WEBHOOKS,
    TASK_RECONCILE,
    TASK_SEND_CHUNK,
    Lane,
    queue_name,
)
from dispatcher.redis_clients import celery_broker

# Parsed strictly like every process's settings (a bad value stops the worker, naming it).
_settings = Settings.from_env()
# REDIS_URL may name Sentinels (redis+sentinel://…): kombu then gets its sentinel:// list and the
# master name as transport options (dispatcher/redis_clients.py).
broker_url, _sentinel_options = celery_broker(_settings.redis_url)
broker_connection_retry_on_startup = True
broker_transport_options = {
    "visibility_timeout": _settings.visibility_timeout_s,
    "socket_keepalive": True,
    "health_check_interval": 10,
    **_sentinel_options,
}
del _sentinel_options, _settings
broker_pool_limit = 10

task_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None
task_acks_late = True
task_reject_on_worker_lost = True
task_default_queue = queue_name(Lane.BULK)
task_routes = {
    TASK_RECONCILE: {"queue": queue_name(Lane.BULK)},
    TASK_SEND_CHUNK: {"queue": queue_name(Lane.BULK)},
    TASK_APPLY_REPORTS: {"queue": queue_name(Lane.DLR)},
    TASK_APPLY_INBOUND: {"queue": queue_name(Lane.DLR)},
    TASK_DELIVER_WEBHOOKS: {"queue": queue_name(Lane.WEBHOOKS)},
}
# A chunk is bounded by the rate-limit wait budget plus its carrier calls; far below visibility.
task_soft_time_limit = 240
task_time_limit = 300

worker_prefetch_multiplier = 1
worker_hijack_root_logger = False
worker_redirect_stdouts = False
worker_send_task_events = False
task_send_sent_event = False
