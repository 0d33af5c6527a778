"""Settings, read once from the environment (``REDIS_URL``, ``DATABASE_URL``, ``SMSDISPATCH_*``).

Every setting has an embedded default so ``make run`` works with no configuration at all, and a
description: ``docs/configuration.md`` is generated from this class (``smsdispatch config
docs``). Values are parsed strictly (dispatcher/config_env.py): a bad one stops the process with
the variable's name and what it accepts.

Longer than 400 lines on purpose: one class declares every setting with its description and
bounds, so the parser, the checks and the generated docs read a single definition.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dispatcher.config_env import PREFIX, ConfigError, parse, setting, warn_unknown

__all__ = ["PREFIX", "ConfigError", "Settings"]

PORT = {"ge": 0, "le": 65535}
POSITIVE = {"gt": 0}
AT_LEAST_ONE = {"ge": 1}
NOT_NEGATIVE = {"ge": 0}


def _default_db() -> str:
    return "sqlite:///" + os.path.abspath(os.path.join("var", "smsdispatch.db"))


@dataclass(frozen=True)
class Settings:
    """All tunables. The environment variable for ``api_port`` is ``SMSDISPATCH_API_PORT``."""

    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "every Redis client (broker, rate limiter, scheduler lease, sessions, caps, probes); "
        "`redis+sentinel://[:password@]host:port,…/<master>/<db>[?sentinel_password=…]` with "
        "Sentinel ([topology.md](topology.md#redis-with-sentinel))",
        env="REDIS_URL",
        secret=True,
        accepts="a `redis://`, `rediss://`, `unix://` or `redis+sentinel://` URL",
        bounds={"pattern": r"^(redis|rediss|unix|redis\+sentinel)://"},
    )
    database_url: str = setting(
        doc=(
            "message log; `postgresql://…` for production; add `?pooler=pgbouncer` behind"
            " PgBouncer in transaction mode (no startup options, no prepared statements:"
            " [topology.md](topology.md#postgresql-behind-pgbouncer))"
        ),
        env="DATABASE_URL",
        secret=True,
        factory=_default_db,
        shown_default="sqlite:///var/smsdispatch.db",
        accepts="a `sqlite://` or `postgresql://` URL",
        bounds={"pattern": r"^(sqlite|postgres|postgresql)(\+\w+)?://"},
    )
    api_host: str = setting("127.0.0.1", "address the API listens on (`0.0.0.0` in containers)")
    api_port: int = setting(8080, "port the API listens on", bounds=PORT)
    api_workers: int = setting(
        1,
        "API (uvicorn) processes; above 1 each owns a `SO_REUSEPORT` socket so the kernel "
        "spreads connections over them, and the parent restarts one that dies "
        "(`dispatcher/api/serve.py`)",
        bounds=AT_LEAST_ONE,
    )
    # The carrier connection used until connection files exist (issue 5): the simulator.
    carrier_url: str = setting(
        "http://127.0.0.1:9090",
        "the carrier of the `default` connection (the simulator by default)",
        bounds={"pattern": r"^https?://"},
        accepts="an `http://` or `https://` URL",
    )
    carrier_token: str = setting("", "bearer token for the carrier", secret=True)
    carrier_tps: float = setting(
        1000.0, "global limit, SMS parts per second, all workers together", bounds=POSITIVE
    )
    # Default share of each connection's tps left unused, so the carrier's own windows stay
    # under tps despite scheduling jitter (docs/routing.md); a connection's `headroom` overrides.
    rate_headroom: float = setting(
        0.02,
        "share of every connection's limit left unused, so the carrier never counts more than "
        "the limit in a second ([routing.md](routing.md)); a connection's `headroom` overrides",
        bounds={"ge": 0, "lt": 0.5},
    )
    carrier_batch_size: int = setting(
        500, "recipients per batch submit (1 = one request per message)", bounds=AT_LEAST_ONE
    )
    carrier_max_in_flight: int = setting(
        64, "concurrent carrier requests per worker process", bounds=AT_LEAST_ONE
    )
    carrier_timeout_s: float = setting(10.0, "carrier request timeout", bounds=POSITIVE)
    # Carrier connections, routing and breakers (docs/routing.md); empty: the one connection
    # above, named "default", routes everything.
    connections: str = setting(
        "",
        "connections file ([routing.md](routing.md)); empty: one `default` connection on "
        "`SMSDISPATCH_CARRIER_URL`",
    )
    # Number look-ups (POST /v2.1/sms/hlr, docs/lookup.md): how long an answer is reused (0:
    # never), and how long a carrier may take to answer one.
    lookup_cache_s: float = setting(
        3600.0,
        "how long a number lookup's answer is reused (0: never; [lookup.md](lookup.md))",
        bounds=NOT_NEGATIVE,
    )
    lookup_timeout_s: float = setting(
        5.0, "how long a carrier may take to answer a number lookup", bounds=POSITIVE
    )
    chunk_size: int = setting(500, "messages per bulk task", bounds=AT_LEAST_ONE)
    # Fair bulk lane (docs/campaigns.md): bulk batches wait in the log and the scheduler admits
    # them into the bulk queue by deficit round robin over accounts.
    bulk_fairness: bool = setting(
        True,
        "fair bulk lane: bulk batches wait in the log and the scheduler admits them by weighted "
        "round robin over accounts ([campaigns.md](campaigns.md#fairness-between-accounts)); "
        "false: one FIFO queue, batches published at accept",
    )
    fair_queue_s: float = setting(
        1.0,
        "the bulk queue is kept this many seconds of work deep, at the rate the workers drain it",
        bounds=POSITIVE,
    )
    fair_min_tasks: int = setting(
        2, "the bulk queue is never kept shallower than this many tasks", bounds=AT_LEAST_ONE
    )
    fair_interval_s: float = setting(
        0.1,
        "how often the admitter looks at the bulk queue while work waits (when none did at "
        "the last look: at the scheduler's interval)",
        bounds=POSITIVE,
    )
    fair_metrics_top: int = setting(
        10,
        "the exporter's per-account waiting gauges cover the N accounts with most waiting; the "
        'rest are summed as `account="other"`',
        bounds={"ge": 0},
    )
    fair_metrics_accounts: str = setting(
        "",
        "account ids (comma-separated) the per-account waiting gauges always report",
        bounds={"pattern": r"^[0-9, ]*$"},
        accepts="account ids separated by commas",
    )
    max_attempts: int = setting(6, "attempts before `failed`", bounds=AT_LEAST_ONE)
    retry_base_s: float = setting(
        1.0, "bulk backoff base (priority: 0.5 s, capped at 30 s)", bounds=NOT_NEGATIVE
    )
    retry_max_s: float = setting(300.0, "bulk backoff cap", bounds=NOT_NEGATIVE)
    rate_wait_max_s: float = setting(
        20.0,
        "longest wait for rate-limit tokens inside a task; longer waits park the rest of a "
        "chunk instead of holding it",
        bounds=NOT_NEGATIVE,
    )
    default_validity_min: int = setting(
        4320, "validity (minutes) when the request gives none", bounds=AT_LEAST_ONE
    )
    max_parts: int = setting(10, "parts per message", bounds=AT_LEAST_ONE)
    max_recipients: int = setting(10_000, "`phoneNumbers` per request", bounds=AT_LEAST_ONE)
    max_body_bytes: int = setting(1_048_576, "request body limit (bytes)", bounds=AT_LEAST_ONE)
    bulk_threshold: int = setting(
        10, "more recipients than this always go to the bulk lane", bounds=NOT_NEGATIVE
    )
    default_region: str = setting(
        "",
        "e.g. `PL` to accept national numbers without a country code",
        upper=True,
        accepts="empty or a two-letter region code",
        bounds={"pattern": r"^([A-Z]{2})?$"},
    )
    send_window_zones: str = setting(
        "",
        "quiet hours: the zone of a country's numbers where phonenumbers gives several, e.g. "
        "`RU=Europe/Moscow,US=America/Chicago` ([campaigns.md](campaigns.md))",
    )
    writer_max_rows: int = setting(5000, "rows per group commit", bounds=AT_LEAST_ONE)
    scheduler_interval_s: float = setting(0.25, "scheduler tick", bounds=POSITIVE)
    outbox_stale_s: float = setting(
        30.0,
        "a batch not marked enqueued after this is re-enqueued by the scheduler",
        bounds=NOT_NEGATIVE,
    )
    sending_stale_s: float = setting(
        120.0,
        "a claim older than this is reconciled with the carrier (must exceed the carrier "
        "timeout by more than 1.2 s)",
        bounds=NOT_NEGATIVE,
    )
    orphan_stale_s: float = setting(
        120.0, "queued, lane queue empty, older than this: re-enqueued", bounds=NOT_NEGATIVE
    )
    visibility_timeout_s: int = setting(
        3600,
        "Redis visibility timeout of Celery's tasks (every wait in a task stays far below it; "
        "read by `celeryconfig.py`)",
        bounds=AT_LEAST_ONE,
    )
    # A dlr or webhooks task unacknowledged this long (its worker was killed) is put back on its
    # queue by the scheduler instead of waiting for the visibility timeout; 0 turns that off.
    # 300: a task's hard time limit (celeryconfig), so the worker holding it is gone or stuck.
    unacked_restore_s: float = setting(
        300.0,
        "a dlr/webhooks task left unacknowledged this long (its worker was killed) is put back "
        "on its queue by the scheduler; `0` leaves it to the visibility timeout",
        bounds=NOT_NEGATIVE,
    )
    # Callbacks from carriers (delivery reports, inbound): the bearer token the default
    # connection must present. Empty refuses every callback (nothing is open by default).
    carrier_callback_token: str = setting(
        "",
        "bearer token carriers present on report/inbound callbacks (empty: refused)",
        secret=True,
    )
    report_grace_h: float = setting(
        72.0,
        "no final report this long after validity → `expired` (`report_timeout`)",
        bounds=NOT_NEGATIVE,
    )
    report_retry_s: float = setting(
        600.0, "how long a report for an unknown message is retried", bounds=NOT_NEGATIVE
    )
    callback_lease_s: float = setting(
        30.0,
        "a stored carrier callback (report, inbound) whose task was lost is published again "
        "after this",
        bounds=NOT_NEGATIVE,
    )
    callback_max_failures: int = setting(
        5,
        "a stored callback (or an item of one) failing to apply this many times is set aside as "
        "a dead letter (`smsdispatch callbacks`), so it never holds up the others",
        bounds=AT_LEAST_ONE,
    )
    # Customer webhooks.
    webhook_allow_private: bool = setting(
        False, "allow webhook targets on loopback/private networks (`make run` sets it)"
    )
    webhook_timeout_s: float = setting(5.0, "webhook connect/read timeout", bounds=POSITIVE)
    webhook_retry_window_h: float = setting(
        26.0,
        "a failing webhook is retried with backoff for at least this long",
        bounds=NOT_NEGATIVE,
    )
    webhook_suspend_after_h: float = setting(
        24.0, "an endpoint failing continuously this long is suspended", bounds=NOT_NEGATIVE
    )
    webhook_max_failures: int = setting(
        5,
        "a delivery whose claims end this many times without a recorded result (its worker "
        "died) is set aside as `dead` with its last error",
        bounds=AT_LEAST_ONE,
    )
    webhook_on_sent_check_s: float = setting(
        10.0,
        "how soon workers notice an account that turned on webhooks for `sent` (they cache the "
        "answer so the hot path skips the look-up while no account uses it)",
        bounds=NOT_NEGATIVE,
    )
    webhook_max_endpoints: int = setting(
        1000,
        "distinct webhook URLs per account; a per-message `webhookUrl` beyond it is refused "
        "(`webhook_endpoint_limit`); 0 = no cap",
        bounds=NOT_NEGATIVE,
    )
    # Per-account API limits (docs/security.md); an account's own values override these.
    api_rate_per_s: float = setting(
        0.0, "default requests per second per account (0 = unlimited)", bounds=NOT_NEGATIVE
    )
    api_rate_burst: int = setting(
        0, "default requests allowed at once (0 = one second's worth)", bounds=NOT_NEGATIVE
    )
    daily_cap: int = setting(
        0, "default messages per account per UTC day (0 = unlimited)", bounds=NOT_NEGATIVE
    )
    billing: bool = setting(
        False,
        "prices, balances and the ledger: price every message and charge its account's balance "
        "at accept ([prices.md](prices.md)); off, messages cost 0",
    )
    prices_reload_s: float = setting(
        5.0, "a price list change reaches every process within this", bounds=NOT_NEGATIVE
    )
    auth_cache_ttl_s: float = setting(
        30.0,
        "how long a key lookup is cached (rotations, limit and sender-policy changes reach the "
        "API within it)",
        bounds=NOT_NEGATIVE,
    )
    optout_keywords: str = setting(
        "STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,NIE,REZYGNUJE",
        "comma-separated opt-out keywords ([two-way.md](two-way.md))",
    )
    optin_keywords: str = setting("START,UNSTOP,TAK", "comma-separated opt-in keywords")
    # Short links (shortLink, docs/short-links.md).
    short_link_base: str = setting(
        "",
        "public address of the short-link service, e.g. `https://s.example.com`; empty: "
        "`shortLink` is refused (`make run` sets its local one; [short-links.md](short-links.md))",
    )
    short_link_code_length: int = setting(
        8, "characters per code (62**8 ≈ 2.2e14 codes)", bounds={"ge": 6, "le": 16}
    )
    short_link_lifetime_s: float = setting(
        30 * 86400.0,
        "how long links redirect unless the account has its own (`smsdispatch accounts links`)",
        bounds=POSITIVE,
    )
    links_host: str = setting("127.0.0.1", "address `smsdispatch links` listens on")
    links_port: int = setting(8081, "port `smsdispatch links` listens on", bounds=PORT)
    link_ip_salt: str = setting(
        "",
        "key of the clicks' client-address hash; empty: nothing of the address is kept",
        secret=True,
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = setting(
        "INFO", "structlog level (any case)", upper=True
    )
    log_format: Literal["json", "console"] = setting(
        "json", "structlog output (`console` for humans)"
    )
    # Support panel (docs/panel.md).
    panel_session_ttl_s: float = setting(
        8 * 3600.0, "idle panel sessions end after this", bounds=POSITIVE
    )
    panel_login_attempts: int = setting(
        5, "failed panel logins allowed per username per window", bounds=AT_LEAST_ONE
    )
    panel_login_ip_attempts: int = setting(
        20, "failed panel logins allowed per client address per window", bounds=AT_LEAST_ONE
    )
    panel_login_window_s: float = setting(900.0, "the failed-login window", bounds=POSITIVE)
    # Behind a TLS proxy: honour X-Forwarded-Proto; needs trusted_proxies (the proxies whose
    # forwarded headers count: X-Forwarded-For and -Proto from anyone else are ignored).
    panel_trust_forwarded_proto: bool = setting(
        False,
        "behind a TLS proxy: honour `X-Forwarded-Proto` for Secure cookies (needs "
        "`SMSDISPATCH_TRUSTED_PROXIES`)",
    )
    trusted_proxies: str = setting(
        "",
        "addresses or networks (comma-separated) of the proxies whose `X-Forwarded-For` and "
        "`-Proto` count; empty: none",
    )
    panel_mask_keywords: str = setting(
        r"code|kod|otp|pin|passcode|password|hasło|haslo|verif|weryfik|token|2fa",
        "messages matching this (case-insensitive regex) have their 4-8 digit runs masked for "
        "the support role; empty masks nothing",
        shown_default="code|kod|otp|pin…",
    )
    # Process listeners and files, read where each process starts (docs/running.md).
    exporter_host: str = setting("127.0.0.1", "address `smsdispatch exporter` listens on")
    exporter_port: int = setting(9105, "port `smsdispatch exporter` listens on", bounds=PORT)
    worker_metrics_host: str = setting(
        "127.0.0.1", "address each worker pool's `/metrics`, `/healthz`, `/readyz` listen on"
    )
    worker_metrics_port: int | None = setting(
        None,
        "port of a worker pool's server (0: none)",
        shown_default="per lane: 9101 priority, 9102 bulk, 9103 dlr, 9104 webhooks",
        bounds=PORT,
    )
    smpp_metrics_host: str = setting("127.0.0.1", "address `smsdispatch smpp` serves metrics on")
    smpp_metrics_port: int = setting(
        9106, "port `smsdispatch smpp` serves metrics on (0: none)", bounds=PORT
    )
    smpp_lease_s: float = setting(
        10.0,
        "SMPP bind lease: a holder that dies loses its binds to another after this",
        bounds=POSITIVE,
    )
    smpp_receipt_settle_s: float = setting(
        1.0,
        "`smsdispatch smpp` wakes the dlr lane for stored receipts this long after storing "
        "them: an SMSC reports within milliseconds, before the send lane recorded the submit",
        bounds=NOT_NEGATIVE,
    )
    metrics_dir: str = setting(
        "",
        "root of the per-process metric files of multi-process servers",
        shown_default="<temporary directory>/smsdispatch-metrics",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` win.

        Raises :class:`ConfigError` (a ``ValueError``) naming every bad variable.
        """
        if env is None:
            env = os.environ
            warn_unknown(cls, env)
        values = parse(cls, env)
        values.update(overrides)
        settings = cls(**values)
        problems = settings.inconsistencies()
        if problems:
            raise ConfigError(problems)
        return settings

    def inconsistencies(self) -> list[str]:
        """Rules between settings (each setting's own type and bounds are checked earlier)."""
        problems = []
        if self.sending_stale_s < self.carrier_timeout_s + 1.2:
            problems.append(
                "SMSDISPATCH_SENDING_STALE_S must exceed SMSDISPATCH_CARRIER_TIMEOUT_S by more "
                "than 1.2 s: the reconciler must not ask the carrier about a request still in "
                "flight"
            )
        if self.panel_trust_forwarded_proto and not self.trusted_proxies:
            problems.append(
                "SMSDISPATCH_PANEL_TRUST_FORWARDED_PROTO needs SMSDISPATCH_TRUSTED_PROXIES: the "
                "addresses of the proxies whose X-Forwarded-Proto counts (from anyone else it "
                "is ignored)"
            )
        if not 6 <= self.short_link_code_length <= 16:
            problems.append("SMSDISPATCH_SHORT_LINK_CODE_LENGTH must be from 6 to 16")
        if self.short_link_base and not _is_base(self.short_link_base):
            problems.append(
                "SMSDISPATCH_SHORT_LINK_BASE must be an http(s) URL with a host and no query, "
                "e.g. https://s.example.com"
            )
        if self.send_window_zones:
            from dispatcher.sms.quiet_hours import InvalidWindow, parse_zones

            try:
                parse_zones(self.send_window_zones)
            except InvalidWindow as exc:
                problems.append(f"SMSDISPATCH_SEND_WINDOW_ZONES: {exc.message}")
        if not 0 <= self.rate_headroom < 0.5:
            problems.append("SMSDISPATCH_RATE_HEADROOM must be a fraction from 0 to 0.5")
        return problems


def _is_base(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
        and url.isascii()
        and not any(c.isspace() for c in url)
    )
