"""Command line: ``python -m simulator --host 127.0.0.1 --port 9090 [options]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

import structlog

from simulator.config import ConfigError, SimConfig
from simulator.server import SimulatorServer, new_event_loop


def _mix(value: str) -> dict[str, float]:
    """Parse ``DELIVRD=95,UNDELIV=3,EXPIRED=2``."""
    out: dict[str, float] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        stat, _, weight = item.partition("=")
        try:
            out[stat.strip().upper()] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad dlr-mix item {item!r}") from None
    return out


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (flags mirror :class:`SimConfig` fields)."""
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Carrier (mobile operator) SMS HTTP API simulator.",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9090, help="listen port, 0 picks a free one")
    p.add_argument("--workers", type=int, default=1, help="worker processes (SO_REUSEPORT)")
    # Tokens may come from the environment instead: a command line is visible to every user.
    p.add_argument(
        "--token",
        default=os.environ.get("SIMULATOR_TOKEN", d.token),
        help="required bearer token on /v1 endpoints (or SIMULATOR_TOKEN)",
    )
    p.add_argument("--latency-ms", type=float, default=d.latency_ms)
    p.add_argument("--latency-jitter-ms", type=float, default=d.latency_jitter_ms)
    p.add_argument("--error-rate", type=float, default=d.error_rate)
    p.add_argument("--timeout-rate", type=float, default=d.timeout_rate)
    p.add_argument("--timeout-s", type=float, default=d.timeout_s)
    p.add_argument(
        "--timeout-accepts",
        action="store_true",
        help="record timed-out submits as accepted (answer lost, not request lost)",
    )
    p.add_argument("--throttle-rate", type=float, default=d.throttle_rate)
    p.add_argument("--throttle-retry-after-s", type=float, default=d.throttle_retry_after_s)
    p.add_argument("--throttle-burst-every-s", type=float, default=d.throttle_burst_every_s)
    p.add_argument("--throttle-burst-len-s", type=float, default=d.throttle_burst_len_s)
    p.add_argument("--tps-cap", type=float, default=d.tps_cap, help="messages/s, 0 = no cap")
    p.add_argument("--tps-burst", type=float, default=d.tps_burst, help="0 = tps_cap/10")
    p.add_argument(
        "--reject-prefix",
        action="append",
        default=[],
        dest="reject_prefixes",
        metavar="PREFIX",
        help="permanently reject destinations starting with PREFIX (repeatable)",
    )
    p.add_argument("--max-batch", type=int, default=d.max_batch)
    p.add_argument("--keep-text", action="store_true", help="store message texts in records")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--dlr-url", default=d.dlr_url)
    p.add_argument(
        "--dlr-token",
        default=os.environ.get("SIMULATOR_DLR_TOKEN", d.dlr_token),
        help="bearer token for delivery reports (or SIMULATOR_DLR_TOKEN)",
    )
    p.add_argument("--dlr-delay-ms", type=float, default=d.dlr_delay_ms)
    p.add_argument("--dlr-jitter-ms", type=float, default=d.dlr_jitter_ms)
    p.add_argument("--dlr-mix", type=_mix, default=None, help="e.g. DELIVRD=95,UNDELIV=5")
    p.add_argument("--dlr-duplicate-rate", type=float, default=d.dlr_duplicate_rate)
    p.add_argument("--dlr-reorder", action="store_true")
    p.add_argument("--dlr-reorder-window", type=int, default=d.dlr_reorder_window)
    p.add_argument("--dlr-retries", type=int, default=d.dlr_retries)
    p.add_argument("--dlr-concurrency", type=int, default=d.dlr_concurrency)
    p.add_argument("--mo-url", default=d.mo_url)
    p.add_argument(
        "--mo-token",
        default=os.environ.get("SIMULATOR_MO_TOKEN", d.mo_token),
        help="bearer token for inbound messages (or SIMULATOR_MO_TOKEN)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Build and validate a :class:`SimConfig` from parsed arguments."""
    config = SimConfig()
    updates: dict[str, Any] = {}
    for name in config.to_dict():
        if hasattr(args, name):
            value = getattr(args, name)
            if name == "dlr_mix" and value is None:
                continue
            updates[name] = value
    config.apply(updates)
    return config


def _stdout_logger() -> Any:
    """A structlog logger writing JSON lines to stdout, independent of global configuration."""
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stdout),
        processors=[structlog.processors.JSONRenderer()],
    )


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.workers > 1:
        from simulator.cluster import run_cluster

        return run_cluster(config, args.host, args.port, args.workers, _stdout_logger())
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_serve(config, args.host, args.port))
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()


async def _serve(config: SimConfig, host: str, port: int) -> int:
    """Serve in the current loop until a termination signal arrives."""
    logger = _stdout_logger()
    server = SimulatorServer(config, host, port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    logger.info("simulator.listening", host=host, port=server.port, workers=1)
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    logger.info("simulator.stopped", port=server.port)
    sys.stdout.flush()
    return 0
