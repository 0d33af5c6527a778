"""Where the short-link redirect runs: its own plain ASGI app, or a route of a FastAPI app.

Both serve the same work (:class:`dispatcher.links.redirect.RedirectApp`'s cache, group
look-ups, client classes and batched click writes) from one uvicorn process with the API's
options (uvloop, httptools, one write per response), on the links of a seeded benchmark
database; ``wrk -t1 -c32`` on random codes, as a phone's browser. The machine may be shared, so
the comparison is the server's CPU per redirect (from /proc), not requests per second.

Usage (after ``make bench SCENARIO=L``, whose database and codes it reuses)::

    python -m bench.links_choice --codes bench/results/logs/<run>/L-codes.txt [--seconds 8]

Writes ``bench/results/links_choice.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.scenario_l import wrk
from bench.stack import DATABASE_URL, PY, ROOT, free_port, http_ok, wait_until

VARIANTS = {
    "own process, plain ASGI app": "dispatcher.links.redirect:create_app",
    "FastAPI route": "bench.links_choice:fastapi_app",
}


def fastapi_app() -> Any:
    """The same redirect as one FastAPI route (what adding it to the API would cost)."""
    from dispatcher.links.redirect import create_app

    inner = create_app()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.on_event("startup")
    async def start() -> None:
        inner.recorder.start()

    @app.api_route("/{code}", methods=["GET", "HEAD"])
    async def redirect(code: str, request: Request) -> Response:
        sent: dict[str, Any] = {}

        async def send(message: dict[str, Any]) -> None:
            sent.setdefault(message["type"], message)

        await inner(request.scope, request.receive, send)
        start = sent["http.response.start"]
        headers = {k.decode(): v.decode("latin-1") for k, v in start["headers"]}
        headers.pop("content-length", None)
        return Response(sent["http.response.body"]["body"], start["status"], headers)

    return app


def measure(name: str, factory: str, codes: str, seconds: int) -> dict[str, Any]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "SMSDISPATCH_SHORT_LINK_BASE": f"http://127.0.0.1:{port}",
        "SMSDISPATCH_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    code = (
        "import uvicorn\n"
        "from dispatcher.api.http_protocol import CoalescingHttpToolsProtocol\n"
        f"uvicorn.run({factory!r}, factory=True, host='127.0.0.1', port={port}, loop='uvloop',"
        " http=CoalescingHttpToolsProtocol, access_log=False, log_config=None)\n"
    )
    proc = subprocess.Popen([PY, "-c", code], env=env, cwd=ROOT)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/nope") or _up(port), 60, name)
        wrk(f"http://127.0.0.1:{port}", codes, 2)  # warm-up: caches, prepared statements
        ps = psutil.Process(proc.pid)
        before = ps.cpu_times()
        t0 = time.monotonic()
        res = wrk(f"http://127.0.0.1:{port}", codes, seconds)
        after = ps.cpu_times()
        cpu = (after.user + after.system) - (before.user + before.system)
        return {
            "variant": name,
            "requests": res["requests"],
            "redirects_per_s": res["redirects_per_s"],
            "p50_ms": res["p50_ms"],
            "p99_ms": res["p99_ms"],
            "server_cpu_us_per_redirect": round(1e6 * cpu / max(1, res["requests"]), 1),
            "wall_s": round(time.monotonic() - t0, 1),
            "errors": res["errors"],
        }
    finally:
        proc.terminate()
        proc.wait(20)


def _up(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/x", timeout=1).status_code in (404, 410)
    except httpx.HTTPError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Measure both variants; write the JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.links_choice", description=__doc__)
    p.add_argument("--codes", required=True)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "links_choice.json"))
    args = p.parse_args(argv)
    results = [measure(n, f, args.codes, args.seconds) for n, f in VARIANTS.items()]
    out = {
        "results": results,
        "loadavg_at_end": list(os.getloadavg()),
        "nproc": os.cpu_count(),
        "command": "python -m bench.links_choice "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
