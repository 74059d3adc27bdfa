"""What every request leaves behind: an X-Request-Id on its answer, a sample in the metrics, a line in the log.

The middleware is the outermost one, so it sees every answer, errors included, and it runs on every hot
path: per request it does a regular-expression match of the client's id (or draws one), two clock
reads, two dictionary look-ups and one histogram observation, and the log line when INFO is enabled
(README: Metrics and logs gives what that costs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from time import perf_counter
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from authgres.errors import Handler
from authgres.logs import REQUEST_ID, access_log, log_request
from authgres.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-Id"
# A client's id is kept when it is 1-128 of these (a UUID, a trace id, base64); anything else is replaced.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PREFIX = "/auth/v1"
UNMATCHED = "unmatched"
# Routes whose success answers with the caller's user, or a session holding it. SQL builds those as
# jsonb, which orders keys by length: the user's "id" comes first, and a session's "user" does.
_ANSWERS_WITH_CALLER = frozenset({"/user", "/token", "/signup", "/verify", "/factors/{factor_id}/verify"})
_CALLER_ID = re.compile(rb'\{(?:"user": ?\{)?"id": ?"([0-9a-f-]{36})"')


def request_id(request: web.Request) -> str:
    """The client's X-Request-Id when it is short and plain, else a new random one (32 hex digits)."""
    given = request.headers.get(REQUEST_ID_HEADER)
    if given is not None and _CLIENT_ID.fullmatch(given) is not None:
        return given
    return os.urandom(16).hex()


def route_of(resource: web.AbstractResource | None) -> str:
    """The metrics' and the log's name for a route: its path template, without the /auth/v1 prefix."""
    if resource is None:
        return UNMATCHED
    path = resource.canonical
    return path[len(_PREFIX) :] if path.startswith(_PREFIX + "/") else path


def caller_id(response: web.StreamResponse | None) -> str | None:
    """The user id a success answer of a route in _ANSWERS_WITH_CALLER begins with."""
    body = getattr(response, "body", None)
    if not isinstance(body, bytes):
        return None
    match = _CALLER_ID.match(body, 0, 80)
    return match.group(1).decode() if match else None


def request_middleware(metrics: Metrics) -> Middleware:
    routes: dict[web.AbstractResource | None, str] = {}
    samples: dict[tuple[str, str, int], Any] = {}  # the histogram's children, by their labels

    def record(
        request: web.Request, started: float, status: int, response: web.StreamResponse | None, rid: str
    ) -> None:
        elapsed = perf_counter() - started
        resource = request.match_info.route.resource
        route = routes.get(resource)
        if route is None:
            route = routes[resource] = route_of(resource)
        method = request.method if request.method in _METHODS else "other"
        sample = samples.get((route, method, status))
        if sample is None:
            sample = samples[route, method, status] = metrics.requests.labels(route, method, str(status))
        sample.observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            milliseconds = round(elapsed * 1000, 3)
            fields: dict[str, Any] = {
                "request_id": rid,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": milliseconds,
            }
            if status < 300 and route in _ANSWERS_WITH_CALLER and (user_id := caller_id(response)):
                fields["user_id"] = user_id
            log_request(f"{method} {route} {status} {milliseconds:.1f} ms", fields)

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = perf_counter()
        rid = request_id(request)
        token = REQUEST_ID.set(rid)
        try:
            response = await handler(request)
        except web.HTTPException as redirect:  # the error middleware answers the others; it lets these through
            redirect.headers[REQUEST_ID_HEADER] = rid
            record(request, started, redirect.status, None, rid)
            raise
        except asyncio.CancelledError:  # the client went away
            record(request, started, 499, None, rid)
            raise
        except BaseException:
            record(request, started, 500, None, rid)
            raise
        finally:
            REQUEST_ID.reset(token)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = rid
        record(request, started, response.status, response, rid)
        return response

    return observe
