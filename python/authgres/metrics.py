"""Prometheus metrics: what the service counts and measures, and GET /metrics, which shows them.

Counted where it happens: requests in the request middleware (observe.py), batch sizes in db.py,
hashing in passwords.py, failed sign-ins and refresh-token replays in routes/token.py. What is a level
rather than a count (connections in use, calls waiting, passwords queued) is read when a scrape comes,
and the outboxes are read from SQL then (auth.outbox_stats(), auth.sms_outbox_stats(): partial-index counts).

Several worker processes (`authgres serve --workers N`) share their metrics through prometheus-client's
multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set before the workers start, each process writes its
counters into files there, and a scrape that reaches any of them answers the sum. Levels are written by
each worker once a second (and by the scraped one at the scrape), and a worker that stops removes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from authgres.errors import AuthError

if TYPE_CHECKING:
    from authgres.db import Database
    from authgres.passwords import Passwords

log = logging.getLogger("authgres")

# Most answers take 1-100 ms; a password sign-in or sign-up adds an argon2 hash (5-50 ms at the default
# cost); the long tail is queueing under overload.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HASH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)  # db.BATCH_LIMIT is 32
LEVEL_SECONDS = 1.0  # how often each worker writes its levels, in multiprocess mode
OUTBOX_TIMEOUT_SECONDS = 2.0  # a scrape waits this long for the outbox's figures, then goes without them


def multiprocess() -> bool:
    """Whether metrics live in files in PROMETHEUS_MULTIPROC_DIR, summed over the worker processes.

    prometheus-client decides when it is first imported: the variable must be set before that."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class _Outbox:
    """The outbox's figures as the last scrape read them from SQL (a collector of its own, not a file
    per process: every worker would read the same table)."""

    def __init__(self) -> None:
        self.figures: dict[str, float] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.figures is None:
            return
        emails = GaugeMetricFamily(
            "authgres_outbox_emails", "Emails in the outbox by status: pending, sending, dead", labels=["status"]
        )
        for status in ("pending", "sending", "dead"):
            emails.add_metric([status], self.figures[status])
        yield emails
        yield GaugeMetricFamily(
            "authgres_outbox_oldest_seconds",
            "Age of the oldest email not yet sent (pending or sending); 0 when none waits",
            value=self.figures["oldest_seconds"],
        )
        if "sms_pending" not in self.figures:
            return
        texts = GaugeMetricFamily(
            "authgres_outbox_texts", "Texts (SMS, WhatsApp) in the SMS outbox by status: pending, sending, dead",
            labels=["status"],
        )  # fmt: skip
        for status in ("pending", "sending", "dead"):
            texts.add_metric([status], self.figures[f"sms_{status}"])
        yield texts
        yield GaugeMetricFamily(
            "authgres_outbox_texts_oldest_seconds",
            "Age of the oldest text not yet sent (pending or sending); 0 when none waits",
            value=self.figures["sms_oldest_seconds"],
        )


class Metrics:
    """Every metric of one process, in a registry of its own (one per application)."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess()
        self.registry = registry = CollectorRegistry()
        self.requests = Histogram(
            "authgres_http_request_duration_seconds",
            "Requests by route (the path template, without the /auth/v1 prefix; 'unmatched' for any other "
            "path), method and status, and how long each took to answer",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "authgres_db_batch_size",
            "Requests answered by one batched database call, by function (get_users: GET /user; "
            "refresh_sessions: the refresh grant)",
            ["function"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.hash_seconds = Histogram(
            "authgres_password_hash_seconds",
            "Time a hashing thread spends on one password: hash (a new password) or verify (a sign-in, "
            "including the upgrade of an outdated hash)",
            ["operation"],
            buckets=HASH_BUCKETS,
            registry=registry,
        )
        self.login_failures = Counter(
            "authgres_login_failures",
            "Password sign-ins refused for a wrong password or an unknown address",
            registry=registry,
        )
        self.refresh_token_replays = Counter(
            "authgres_refresh_token_replays",
            "Spent refresh tokens presented again after the reuse interval: the session was ended",
            registry=registry,
        )
        self.db_connections = Gauge(
            "authgres_db_pool_connections",
            "The pool's open connections by state: in_use or idle",
            ["state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_waiting = Gauge(
            "authgres_db_waiting",
            "Database calls waiting for a connection (a batch counts once)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_batch_queued = Gauge(
            "authgres_db_batch_queued",
            "Requests queued for the next batched call",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.hash_queue = Gauge(
            "authgres_password_hash_queue",
            "Passwords waiting for a hashing thread",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.outbox = _Outbox()
        if not self.multiprocess:  # prometheus-client's process metrics are per process only
            ProcessCollector(registry=registry)
            registry.register(self.outbox)
        self._database: Database | None = None
        self._passwords: Passwords | None = None

    def watch(self, database: Database, passwords: Passwords) -> None:
        """Where the levels are read from."""
        self._database, self._passwords = database, passwords

    def read_levels(self) -> None:
        if self._database is not None:
            in_use, idle, waiting, queued = self._database.load()
            self.db_connections.labels("in_use").set(in_use)
            self.db_connections.labels("idle").set(idle)
            self.db_waiting.set(waiting)
            self.db_batch_queued.set(queued)
        if self._passwords is not None:
            self.hash_queue.set(self._passwords.queue_length())

    async def _read_outbox(self) -> None:
        if self._database is None:
            return
        try:
            async with asyncio.timeout(OUTBOX_TIMEOUT_SECONDS):
                row = await self._database.call_row("outbox_stats")
                texts = await self._database.call_row("sms_outbox_stats")
        except Exception as error:  # the other metrics matter most when the database is in trouble
            log.warning("metrics: could not read the outbox: %r", error)
            self.outbox.figures = None
            return
        assert row is not None
        self.outbox.figures = {name: float(value) for name, value in row.items()}
        self.outbox.figures.update({f"sms_{name}": float(value) for name, value in (texts or {}).items()})

    async def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric (of every worker, in multiprocess mode) and its content type: Prometheus' text
        format, or OpenMetrics when the Accept header asks for it."""
        await self._read_outbox()
        self.read_levels()
        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self.outbox)
        encode, content_type = choose_encoder(accept)
        return encode(registry), content_type

    async def handle(self, request: web.Request) -> web.Response:
        body, content_type = await self.exposition(request.headers.get("Accept", ""))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    def guarded(self, token: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """GET /metrics on the API's port: only with `Authorization: Bearer <token>`."""
        expected = token.encode()

        async def metrics(request: web.Request) -> web.Response:
            scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                raise AuthError(401, "no_authorization", "This endpoint requires a valid Bearer token")
            if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected):
                raise AuthError(403, "not_admin", "Invalid metrics token")
            return await self.handle(request)

        return metrics

    @contextlib.asynccontextmanager
    async def serving(self, host: str, port: int | None) -> AsyncIterator[None]:
        """While open: the separate metrics port when there is one (no token: it listens where only
        operators reach), and in multiprocess mode this worker's levels written once a second."""
        runner = None
        if port:
            side = web.Application()
            side.router.add_get("/metrics", self.handle)
            runner = web.AppRunner(side, access_log=None)
            await runner.setup()
            # Workers in multiprocess mode all listen on it, as on the API's port: any of them answers for all.
            try:
                await web.TCPSite(runner, host, port, reuse_port=self.multiprocess or None).start()
            except OSError as error:  # the Auth API matters more than its metrics
                log.error("metrics: cannot listen on %s:%d (%s); serving the API without that port", host, port, error)
            else:
                log.info("metrics on http://%s:%d/metrics", host, port)
        writer = asyncio.create_task(self._write_levels()) if self.multiprocess else None
        try:
            yield
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            if runner is not None:
                await runner.cleanup()
            if self.multiprocess:
                # This worker's levels leave the sums; its counts stay.
                mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    async def _write_levels(self) -> None:
        while True:
            try:
                self.read_levels()
            except Exception:
                log.exception("metrics: could not read the levels")
            await asyncio.sleep(LEVEL_SECONDS)
