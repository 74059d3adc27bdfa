"""The aiohttp application: state, middlewares and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from psycopg.types.json import Jsonb

from authgres.captcha import Captcha
from authgres.db import Database
from authgres.errors import Handler, error_middleware
from authgres.events import UserEvents
from authgres.mailer import Mailer
from authgres.metrics import Metrics
from authgres.observe import request_middleware
from authgres.passwords import Passwords
from authgres.providers import Providers
from authgres.routes import add_routes
from authgres.settings import Settings
from authgres.sms import SmsSender
from authgres.state import CAPTCHA, DB, DRAINING, EVENTS, MAILER, METRICS, PASSWORDS, PROVIDERS, SETTINGS, SMS

log = logging.getLogger("authgres")

_CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "authorization, apikey, content-type, x-client-info, x-supabase-api-version, "
    "x-api-key, last-event-id",
    "Access-Control-Expose-Headers": "x-supabase-api-version, x-total-count, link, x-sb-error-code, x-request-id",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Max-Age": "86400",
}


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers={"Access-Control-Allow-Origin": origin, **_CORS_HEADERS})
    return await handler(request)


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    # As the headers go out, so that a stream (GET /sessions/events), sent before its handler returns, has them too.
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = _CORS_HEADERS["Access-Control-Expose-Headers"]
        response.headers["Vary"] = "Origin"


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    database = Database(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        prepared_statements=settings.db_prepared_statements,
        metrics=app[METRICS],
        listen_url=settings.db_listen_url,
    )
    await database.open()
    if database.behind_pooler:
        log.info("database: behind a pooler (prepared statements %s)", settings.db_prepared_statements)
    await database.call("configure", settings=Jsonb(settings.sql_settings()), jwt_secret=settings.jwt_secret)
    app[DB] = database
    yield
    await database.close()


async def _events(app: web.Application) -> AsyncIterator[None]:
    app[EVENTS] = UserEvents(app[DB], app[SETTINGS].events_heartbeat_seconds)
    async with app[EVENTS].running():
        yield


async def _end_streams(app: web.Application) -> None:
    # Before the wait for requests in flight: an event stream would otherwise run until that wait times out.
    if EVENTS in app:
        app[EVENTS].close()


async def _mailer(app: web.Application) -> AsyncIterator[None]:
    app[MAILER] = Mailer(app[SETTINGS], app[DB])
    async with app[MAILER].running():
        yield


def _sms(background: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    # Every process texts codes a request waits for; the one that runs the mailer also drains the SMS outbox.
    async def sender(app: web.Application) -> AsyncIterator[None]:
        app[SMS] = SmsSender(app[SETTINGS], app[DB])
        async with app[SMS].open(background):
            yield

    return sender


async def _prune_until(stop: asyncio.Event, database: Database, interval: float) -> None:
    """Deletes what has outlived its use (old audit entries, sent emails, expired tokens), in batches."""
    while not stop.is_set():
        try:
            while await database.call("prune", batch=1000) and not stop.is_set():
                pass
        except Exception:
            log.exception("pruning failed; trying again later")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def _pruner(app: web.Application) -> AsyncIterator[None]:
    # Stopped, not cancelled: a batch in flight finishes instead of leaving a cancelled query behind.
    stop = asyncio.Event()
    task = asyncio.create_task(_prune_until(stop, app[DB], app[SETTINGS].prune_interval_seconds))
    yield
    stop.set()
    await task


async def _passwords(app: web.Application) -> AsyncIterator[None]:
    app[PASSWORDS] = Passwords(app[SETTINGS], app[METRICS])
    app[PASSWORDS].log_build()
    yield
    app[PASSWORDS].close()


async def _captcha(app: web.Application) -> AsyncIterator[None]:
    # One HTTP session to the captcha provider for the app's lifetime (none while captcha is disabled).
    app[CAPTCHA] = Captcha(app[SETTINGS])
    async with app[CAPTCHA].running():
        yield


async def _providers(app: web.Application) -> AsyncIterator[None]:
    # One HTTP session to the identity providers for the app's lifetime, and their keys' cache.
    app[PROVIDERS] = Providers(app[SETTINGS])
    async with app[PROVIDERS].running():
        yield


async def _metrics(app: web.Application) -> AsyncIterator[None]:
    app[METRICS].watch(app[DB], app[PASSWORDS])
    async with app[METRICS].serving(app[SETTINGS].metrics_host, app[SETTINGS].metrics_port):
        yield


async def _draining(app: web.Application) -> None:
    app[DRAINING].set()


def create_app(settings: Settings, *, background: bool = True) -> web.Application:
    """The service. background: this process also runs the mailer and the pruner (with several
    worker processes, one of them does)."""
    metrics = Metrics()
    middlewares = [request_middleware(metrics), cors_middleware, error_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=1 << 20)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[DRAINING] = asyncio.Event()
    app.on_shutdown.append(_draining)
    app.on_shutdown.append(_end_streams)
    app.on_response_prepare.append(_cors_headers)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_passwords)
    app.cleanup_ctx.append(_captcha)
    app.cleanup_ctx.append(_providers)
    app.cleanup_ctx.append(_metrics)
    app.cleanup_ctx.append(_events)
    app.cleanup_ctx.append(_sms(background))
    if background:
        app.cleanup_ctx.append(_mailer)
        app.cleanup_ctx.append(_pruner)
    add_routes(app)
    if settings.metrics_token:  # at the root only: it is no part of the Auth API
        app.router.add_get("/metrics", metrics.guarded(settings.metrics_token))
    return app
