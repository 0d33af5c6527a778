"""Settings, read once from the environment (``REDIS_URL``, ``DATABASE_URL``, ``SMSDISPATCH_*``).

Every setting has an embedded default so ``make run`` works with no configuration at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

PREFIX = "SMSDISPATCH_"


def _default_db() -> str:
    return "sqlite:///" + os.path.abspath(os.path.join("var", "smsdispatch.db"))


@dataclass(frozen=True)
class Settings:
    """All tunables. The environment variable for ``api_port`` is ``SMSDISPATCH_API_PORT``."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = field(default_factory=_default_db)
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_workers: int = 1
    # The carrier connection used until connection files exist (issue 5): the simulator.
    carrier_url: str = "http://127.0.0.1:9090"
    carrier_token: str = ""
    carrier_tps: float = 1000.0  # per SMS part, global across all workers
    # Default share of each connection's tps left unused, so the carrier's own windows stay
    # under tps despite scheduling jitter (docs/routing.md); a connection's `headroom` overrides.
    rate_headroom: float = 0.02
    carrier_batch_size: int = 500  # recipients per batch submit; 1 = one request per message
    carrier_max_in_flight: int = 64  # concurrent requests per worker process
    carrier_timeout_s: float = 10.0
    # Carrier connections, routing and breakers (docs/routing.md); empty: the one connection
    # above, named "default", routes everything.
    connections: str = ""
    # Number look-ups (POST /v2.1/sms/hlr, docs/lookup.md): how long an answer is reused (0:
    # never), and how long a carrier may take to answer one.
    lookup_cache_s: float = 3600.0
    lookup_timeout_s: float = 5.0
    chunk_size: int = 500  # messages per bulk task
    max_attempts: int = 6
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    rate_wait_max_s: float = 20.0  # longer waits park the rest of a chunk instead of holding it
    default_validity_min: int = 4320
    max_parts: int = 10
    max_recipients: int = 10_000
    max_body_bytes: int = 1_048_576
    bulk_threshold: int = 10  # more recipients than this always go to the bulk lane
    default_region: str = ""  # e.g. "PL" to accept national numbers without a country code
    # Quiet hours (docs/campaigns.md): the zone of a country's numbers, where one is wanted
    # over phonenumbers' (several zones for a prefix), e.g. "RU=Europe/Moscow,US=America/Chicago"
    send_window_zones: str = ""
    writer_max_rows: int = 5000
    scheduler_interval_s: float = 0.25
    outbox_stale_s: float = 30.0  # a batch not marked enqueued after this is re-enqueued
    sending_stale_s: float = 120.0  # a claim older than this is reconciled with the carrier
    orphan_stale_s: float = 120.0  # queued, lane empty, older than this: re-enqueued
    # A dlr or webhooks task unacknowledged this long (its worker was killed) is put back on its
    # queue by the scheduler instead of waiting for the visibility timeout
    # (SMSDISPATCH_VISIBILITY_TIMEOUT_S, read by celeryconfig); 0 turns that off.
    # 300: a task's hard time limit (celeryconfig), so the worker holding it is gone or stuck.
    unacked_restore_s: float = 300.0
    # Callbacks from carriers (delivery reports, inbound): the bearer token the default
    # connection must present. Empty refuses every callback (nothing is open by default).
    carrier_callback_token: str = ""
    report_grace_h: float = 72.0  # no final report this long after validity → expired by us
    report_retry_s: float = 600.0  # how long a report for an unknown message is retried
    # A stored callback whose wake-up task was lost is published again after this.
    callback_lease_s: float = 30.0
    # A stored callback (or the item of one) that fails to apply this many times is set aside
    # as a dead letter (`smsdispatch callbacks`), so it never holds up the others.
    callback_max_failures: int = 5
    # Customer webhooks.
    webhook_allow_private: bool = False  # allow loopback/private targets (tests, make run)
    webhook_timeout_s: float = 5.0
    webhook_retry_window_h: float = 26.0  # retried with backoff for at least this long
    webhook_suspend_after_h: float = 24.0  # an endpoint failing this long is suspended
    # A delivery whose claims end this many times without a recorded result (its worker died,
    # recording failed) is set aside as `dead` with its last error.
    webhook_max_failures: int = 5
    # How soon workers notice an account that turned on webhooks for `sent` (they cache the
    # answer so the hot path skips the look-up while no account uses it).
    webhook_on_sent_check_s: float = 10.0
    # Distinct webhook URLs (endpoints) per account; a per-message webhookUrl beyond it is
    # refused (webhook_endpoint_limit). 0 = no cap.
    webhook_max_endpoints: int = 1000
    # Per-account API limits (docs/security.md); an account's own values override these.
    api_rate_per_s: float = 0.0  # requests per second per account; 0 = unlimited
    api_rate_burst: int = 0  # requests allowed at once; 0 = one second's worth
    daily_cap: int = 0  # messages (recipients) per account per UTC day; 0 = unlimited
    # Prices, balances and the ledger (docs/prices.md): off, messages cost 0 and nothing is
    # charged; on, every message is priced and paid for from its account's balance at accept.
    billing: bool = False
    prices_reload_s: float = 5.0  # price list changes reach every process within this
    auth_cache_ttl_s: float = 30.0  # key rotations and limit changes reach the API within this
    optout_keywords: str = "STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,NIE,REZYGNUJE"
    optin_keywords: str = "START,UNSTOP,TAK"
    # Short links (shortLink, docs/short-links.md): the public base of the redirect service
    # (empty: shortLink is refused), the code length (62**8 ≈ 2.2e14 codes), how long links
    # redirect unless the account says otherwise, the redirect service's address, and the salt
    # of the click's address hash (empty: no address is kept at all).
    short_link_base: str = ""
    short_link_code_length: int = 8
    short_link_lifetime_s: float = 30 * 86400.0
    links_host: str = "127.0.0.1"
    links_port: int = 8081
    link_ip_salt: str = ""
    log_level: str = "INFO"
    log_format: str = "json"  # json | console
    # Support panel (docs/panel.md).
    panel_session_ttl_s: float = 8 * 3600.0  # idle sessions end after this
    panel_login_attempts: int = 5  # failed logins per username per window
    panel_login_ip_attempts: int = 20  # failed logins per client address per window
    panel_login_window_s: float = 900.0
    # Behind a TLS proxy: honour X-Forwarded-Proto; needs trusted_proxies (the proxies whose
    # forwarded headers count: X-Forwarded-For and -Proto from anyone else are ignored).
    panel_trust_forwarded_proto: bool = False
    trusted_proxies: str = ""  # addresses or networks, comma-separated; empty: none
    # Messages matching this (case-insensitive regex) have their 4-8 digit runs masked for the
    # support role; empty masks nothing.
    panel_mask_keywords: str = (
        r"code|kod|otp|pin|passcode|password|hasło|haslo|verif|weryfik|token|2fa"
    )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` win."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "redis_url":
                raw = env.get("REDIS_URL")
            elif f.name == "database_url":
                raw = env.get("DATABASE_URL")
            else:
                raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update(overrides)
        settings = cls(**values)
        if settings.sending_stale_s < settings.carrier_timeout_s + 1.2:
            raise ValueError(
                "SMSDISPATCH_SENDING_STALE_S must exceed SMSDISPATCH_CARRIER_TIMEOUT_S by more "
                "than 1.2 s: the reconciler must not ask the carrier about a request still in "
                "flight"
            )
        if settings.panel_trust_forwarded_proto and not settings.trusted_proxies:
            raise ValueError(
                "SMSDISPATCH_PANEL_TRUST_FORWARDED_PROTO needs SMSDISPATCH_TRUSTED_PROXIES: the "
                "addresses of the proxies whose X-Forwarded-Proto counts (from anyone else it "
                "is ignored)"
            )
        if not 6 <= settings.short_link_code_length <= 16:
            raise ValueError("SMSDISPATCH_SHORT_LINK_CODE_LENGTH must be from 6 to 16")
        if settings.short_link_base and not _is_base(settings.short_link_base):
            raise ValueError(
                "SMSDISPATCH_SHORT_LINK_BASE must be an http(s) URL with a host and no query, "
                "e.g. https://s.example.com"
            )
        if settings.send_window_zones:
            from dispatcher.sms.quiet_hours import InvalidWindow, parse_zones

            try:
                parse_zones(settings.send_window_zones)
            except InvalidWindow as exc:
                raise ValueError(f"SMSDISPATCH_SEND_WINDOW_ZONES: {exc.message}") from None
        if not 0 <= settings.rate_headroom < 0.5:
            raise ValueError("SMSDISPATCH_RATE_HEADROOM must be a fraction from 0 to 0.5")
        return settings


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


def _coerce(name: str, typ: Any, raw: str) -> Any:
    kind = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
    except ValueError as exc:
        env_name = {"redis_url": "REDIS_URL", "database_url": "DATABASE_URL"}.get(
            name, PREFIX + name.upper()
        )
        raise ValueError(f"{env_name}: expected {kind}, got {raw!r}") from exc
    return raw
