"""Building connectors from the routing configuration, and the set of a process's connectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dispatcher.routing import ConnectionConfig
from workers.connectors.base import Connector, InboundPart, Report
from workers.connectors.callbacks import parse_simple_inbound, parse_smpp_style_report
from workers.connectors.messageflow import MessageFlowConnector
from workers.connectors.simulator import SimulatorConnector
from workers.connectors.smpp import SmppConnector

# Of an SMPP connection's timeout: the share a request may wait in the holder's queue; the
# rest is the holder's submit_sm_resp timeout. Together they stay within the timeout, which
# the reconciler's stale-claim age allows for.
SMPP_QUEUE_SHARE = 0.3


def build_connector(cfg: ConnectionConfig, max_connections: int, redis: Any = None) -> Connector:
    """The connector for one configured connection (its credentials already resolved), with
    its own pool of at most ``max_connections`` keep-alive connections. An SMPP connection's
    connector talks to the session holder through ``redis`` (the process's client)."""
    if cfg.type == "smpp":
        if redis is None:
            raise ValueError(f"connection {cfg.name}: an smpp connector needs a Redis client")
        return SmppConnector(
            cfg.name,
            redis,
            timeout_s=cfg.timeout_s * (1 - SMPP_QUEUE_SHARE),
            queue_wait_s=cfg.timeout_s * SMPP_QUEUE_SHARE,
        )
    if cfg.type == "messageflow":
        return MessageFlowConnector(
            cfg.name,
            cfg.url,
            cfg.credentials.application_key,
            cfg.credentials.authorization,
            max_batch=cfg.batch_size,
            timeout_s=cfg.timeout_s,
            max_connections=max_connections,
        )
    # "http_json" is the generic carrier protocol of docs/routing.md; the simulator speaks it.
    return SimulatorConnector(
        cfg.name,
        cfg.url,
        token=cfg.credentials.api_key,
        max_batch=cfg.batch_size,
        timeout_s=cfg.timeout_s,
        max_connections=max_connections,
    )


class ConnectorSet:
    """All connections of a worker process, behind the one-connector face the Celery tasks
    use: look-ups by name, and the callback formats every connection shares (the callback
    endpoint hands the dlr lane reports in the generic form whatever the carrier's protocol).
    """

    name = "routed"
    max_batch = 1

    def __init__(self, connectors: Mapping[str, Connector]) -> None:
        self.connectors = dict(connectors)

    def get(self, name: str | None) -> Connector | None:
        """The connector of connection ``name``."""
        return self.connectors.get(name or "")

    def parse_report(self, raw: Mapping[str, Any]) -> Report:
        """A delivery report in the generic form."""
        return parse_smpp_style_report(raw)

    def parse_inbound(self, raw: Mapping[str, Any]) -> InboundPart:
        """An inbound message in the generic form."""
        return parse_simple_inbound(raw)

    async def close(self) -> None:
        """Close every connection's HTTP client."""
        for connector in self.connectors.values():
            await connector.close()
