"""The routing configuration as plain data: carrier connections and breaker settings.

Built by :mod:`dispatcher.routing.loader` from a TOML file, or implicitly (one ``default``
simulator connection) when no file is configured. Secrets are resolved at load time from the
environment or files named in the configuration; they never appear in ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONNECTION_TYPES = ("simulator", "http_json", "messageflow", "smpp")
DEFAULT_CONNECTION = "default"


@dataclass(frozen=True)
class Credentials:
    """Secrets of one connection, resolved from ``*_env`` / ``*_file`` references."""

    api_key: str = field(default="", repr=False)  # bearer token (simulator, http_json)
    application_key: str = field(default="", repr=False)  # messageflow
    authorization: str = field(default="", repr=False)  # messageflow
    callback_token: str = field(default="", repr=False)  # bearer token on our callbacks
    webhook_secret: str = field(default="", repr=False)  # messageflow: signed webhooks to us


@dataclass(frozen=True)
class SmppConfig:
    """The SMPP 3.4 side of a ``type = "smpp"`` connection (docs/smpp.md): where and how to
    bind, how many binds the operator allows, and the encoding rules. Plain data: the workers
    turn it into sessions and :class:`~workers.smpp.coding.EncodingRules`."""

    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    tls: bool = False
    system_type: str = ""
    bind_mode: str = "transceiver"  # or "transmitter_receiver": one receiver, the rest transmit
    binds: int = 1  # open binds the operator allows for the account, over every host
    window: int = 10  # outstanding submit_sm per bind
    priority_window: int = 2  # of each bind's window, kept for the priority lane
    enquire_link_s: float = 30.0
    query_sm: bool = True  # the SMSC answers query_sm
    default_alphabet: str = "gsm7"  # or "latin1": the SMSC reads data_coding 0 as Latin-1
    concat: str = "udh8"  # udh8 | udh16 | sar | payload
    registered_delivery: int = 1
    source_ton_npi: tuple[tuple[str, int, int], ...] = ()  # (sender kind, ton, npi) overrides
    dest_ton_npi: tuple[int, int] = (1, 1)
    service_type: str = ""
    send_validity: bool = True  # the message's validity as validity_period

    @property
    def address(self) -> str:
        """``smpp://host:port`` (``smpps`` with TLS), as listings show it."""
        return f"{'smpps' if self.tls else 'smpp'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class ConnectionConfig:
    """One carrier connection and the destinations it serves."""

    name: str
    type: str
    url: str
    tps: float
    # Share of ``tps`` left unused: the limiter grants on schedule, but a sender stalled between
    # the grant and the HTTP write delivers late and bunched, so the carrier's own 1-s windows
    # can exceed what was granted in any 1-s window (benchmark D, docs/benchmarks.md).
    headroom: float = 0.0
    # Concurrent requests over all worker processes; ``None`` (implicit default connection
    # only) keeps the per-process limit ``SMSDISPATCH_CARRIER_MAX_IN_FLIGHT``.
    max_in_flight: int | None = None
    batch_size: int = 500
    timeout_s: float = 10.0
    destinations: tuple[str, ...] = ()  # "+4850" prefixes or "PL" country codes
    weight: int = 1
    preference: int = 1  # lower first; higher numbers are backups
    lanes: tuple[str, ...] = ()  # empty: every lane
    accounts: tuple[str, ...] = ()  # empty: every account
    fallback: bool = False  # serves destinations no connection matches
    credentials: Credentials = field(default_factory=Credentials)
    # Answers number look-ups (POST /v2.1/sms/hlr; docs/lookup.md): the simulator does, a
    # generic carrier or an upstream only when configured to.
    lookups: bool = False
    smpp: SmppConfig | None = None  # type "smpp" only
    # What the carrier charges us per part (minor units of ``cost_currency``, ISO numeric):
    # the usage report's carrier cost and margin (docs/prices.md); None: not configured.
    cost_per_part: int | None = None
    cost_currency: int = 0

    @property
    def send_rate(self) -> float:
        """The rate the limiter enforces: ``tps`` less the headroom."""
        return self.tps * (1.0 - self.headroom)

    def serves(self, lane: str, account: str | None) -> bool:
        """Whether the lane and account filters let this connection carry a message."""
        if self.lanes and lane not in self.lanes:
            return False
        return not self.accounts or account in self.accounts


@dataclass(frozen=True)
class BreakerConfig:
    """Circuit-breaker thresholds, shared by every connection."""

    failure_threshold: int = 5  # consecutive failed calls that open the breaker
    error_ratio: float = 0.5  # or this share of failed calls in the window …
    window_s: int = 30  # … over this many seconds …
    min_calls: int = 20  # … once the window holds at least this many calls
    cooldown_s: float = 10.0  # open this long before half-open probes
    probes: int = 2  # successful probes that close it again
    wait_s: float = 2.0  # a message whose every route is down waits this long, then retries


@dataclass(frozen=True)
class RoutingConfig:
    """Everything the connections file says (or the implicit default)."""

    connections: tuple[ConnectionConfig, ...]
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    source: str = ""  # the file it came from; "" for the implicit default

    @property
    def implicit(self) -> bool:
        """True when no file is configured (one ``default`` connection routes everything)."""
        return not self.source

    def connection(self, name: str) -> ConnectionConfig | None:
        """The connection called ``name``, if configured."""
        for c in self.connections:
            if c.name == name:
                return c
        return None
