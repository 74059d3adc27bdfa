"""Micro-benchmark: the Python CPU the request middleware (observe.py) adds to every request: its id, the
histogram sample, and the log line. Prints microseconds per request; asserts nothing.

    .venv/bin/python bench/observe.py

A GET /user request (resolved by the real router, with a 36-byte body like a user's first bytes) goes
through the middleware to a handler that only builds its answer; the same handler called directly is
the baseline. The log line is written by the service's own handler and formatters to a pipe that
another process drains, as journald or a container runtime would. The last row runs in a subprocess
with PROMETHEUS_MULTIPROC_DIR set (counts written to memory-mapped files).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

ROUNDS = 100_000
BODY = b'{"id": "0f3c1b8e-5e1c-4a0e-9e1c-2f4b9c1d2e3f", "aud": "authenticated", "role": "authenticated"}'


async def handler(request: web.Request) -> web.StreamResponse:
    return web.Response(body=BODY, content_type="application/json")


async def per_request(call: Any, request: web.Request) -> float:
    for _ in range(1000):  # warm up: the label caches fill
        await call(request)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(ROUNDS // 5):
            await call(request)
        best = min(best, (time.perf_counter() - started) / (ROUNDS // 5))
    return best * 1e6


async def measure() -> dict[str, float]:
    from authgres.logs import configure
    from authgres.metrics import Metrics
    from authgres.observe import request_middleware
    from authgres.routes import add_routes

    app = web.Application()
    add_routes(app)
    client_id = make_mocked_request("GET", "/user", headers={"X-Request-Id": "0f3c1b8e-5e1c-4a0e-9e1c-2f4b9c1d2e3f"})
    drawn_id = make_mocked_request("GET", "/user")
    for request in (client_id, drawn_id):
        request._match_info = await app.router.resolve(request)  # what aiohttp does before the middlewares

    middleware = request_middleware(Metrics())

    async def observed(request: web.Request) -> web.StreamResponse:
        return await middleware(request, handler)

    def log(level: str, form: str, *, another_handler: bool = False) -> None:
        root = logging.getLogger()
        root.handlers.clear()
        configure(level, form)
        if another_handler:  # the line goes through logging
            root.addHandler(logging.NullHandler())

    rows = [
        ("no log line (WARNING), client's id", ("WARNING", "json"), {}, client_id),
        ("no log line (WARNING), id drawn", ("WARNING", "json"), {}, drawn_id),
        ("JSON log line, client's id", ("INFO", "json"), {}, client_id),
        ("JSON log line, id drawn", ("INFO", "json"), {}, drawn_id),
        ("JSON log line through logging, client's id", ("INFO", "json"), {"another_handler": True}, client_id),
        ("text log line, client's id", ("INFO", "text"), {}, client_id),
    ]
    figures: dict[str, float] = {}
    for _ in range(3):  # each row against a baseline measured just before it; the least of three
        for name, (level, form), options, request in rows:
            log(level, form, **options)
            base = await per_request(handler, request)
            added = await per_request(observed, request) - base
            figures["baseline (the handler alone)"] = min(figures.get("baseline (the handler alone)", base), base)
            figures[name] = min(figures.get(name, added), added)
    logging.shutdown()
    return figures


def measured() -> dict[str, float]:
    """measure(), with standard error a pipe that another process drains."""
    import uvloop

    reader, writer = os.pipe()
    drain = subprocess.Popen(["cat"], stdin=reader, stdout=subprocess.DEVNULL)
    os.close(reader)
    saved = os.dup(2)
    os.dup2(writer, 2)
    os.close(writer)
    try:
        return uvloop.run(measure())
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer goes: the drain ends
        os.close(saved)
        drain.wait()


def main() -> None:
    if len(sys.argv) > 1:  # the subprocess: one figure, printed for the parent
        print(measured()[sys.argv[1]])
        return
    figures = measured()
    with tempfile.TemporaryDirectory() as folder:
        row = "JSON log line, client's id"
        out = subprocess.run(
            [sys.executable, __file__, row],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        figures[f"{row}, multiprocess mode"] = float(out)
    print(f"request middleware, µs per request added to the handler (best of 5 x {ROUNDS // 5:,}, least of 3 rounds):")
    for name, micros in figures.items():
        print(f"  {name:48} {micros:6.2f}")


if __name__ == "__main__":
    main()
