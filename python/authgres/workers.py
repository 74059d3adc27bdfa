"""`authgres serve --workers N`: N processes on one port, each with its own event loop and pool.

The kernel spreads connections over the workers (SO_REUSEPORT). A supervising parent starts them,
starts again one that dies, and on SIGTERM or SIGINT passes the signal on and waits: each worker then
stops accepting, finishes its requests in flight (and worker 0 its email in flight), and exits.
Everything the workers share (throttles, the outbox, keys, sessions) is in PostgreSQL already.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import replace
from types import FrameType

from authgres import logs, metrics_dir
from authgres.settings import Settings

log = logging.getLogger("authgres")

# A worker that dies sooner than this after its start waits that long before its next start, so that
# a worker that cannot start (a port taken, a database refusing) does not spin.
RESTART_BACKOFF_SECONDS = 1.0


def worker_share(settings: Settings, workers: int) -> Settings:
    """One worker's part: AUTHGRES_DB_POOL_MAX and the hashing threads are totals over the workers."""
    pool_max = max(1, settings.db_pool_max // workers)
    return replace(
        settings,
        db_pool_max=pool_max,
        db_pool_min=min(settings.db_pool_min, pool_max),
        hash_workers=max(1, math.ceil(settings.hash_workers / workers)),
    )


def run_worker(settings: Settings, *, background: bool, reuse_port: bool) -> None:
    # Imported here: the parent forks before any event loop or connection exists.
    import asyncio

    import uvloop
    from aiohttp import web

    from authgres.app import create_app

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        create_app(settings, background=background),
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port,
        access_log=None,
        print=None,
    )


def supervise(settings: Settings, workers: int) -> None:
    share = worker_share(settings, workers)
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started at)
    stopping = False

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            status = 1
            try:
                # Worker 0 also runs the mailer and the pruner: one listener, one pruning loop.
                run_worker(share, background=index == 0, reuse_port=True)
                status = 0
            except BaseException:
                log.exception("authgres: worker %d failed", index)  # os._exit would swallow the traceback
            finally:
                logs.flush()  # os._exit skips the buffered last lines otherwise
                os._exit(status)
        children[pid] = (index, time.monotonic())

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Metrics summed over the workers (prometheus-client's multiprocess mode): set up before any fork.
    remove_metrics_dir = metrics_dir.prepare()
    for index in range(workers):
        start(index)
    log.info("authgres: %d workers on %s:%d", workers, settings.host, settings.port)
    while children:
        pid, status = os.wait()
        metrics_dir.worker_ended(pid)
        index, started = children.pop(pid, (-1, 0.0))
        if stopping or index < 0:
            continue
        log.error("authgres: worker %d (pid %d) ended with status %d; starting it again", index, pid, status)
        if time.monotonic() - started < RESTART_BACKOFF_SECONDS:
            time.sleep(RESTART_BACKOFF_SECONDS)
        if not stopping:
            start(index)
    remove_metrics_dir()
