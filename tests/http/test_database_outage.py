"""A database restart costs at most the in-flight requests, answered as retryable errors."""

import asyncio
import contextlib
import logging
from dataclasses import replace

from psycopg.conninfo import make_conninfo

from authgres.app import create_app
from authgres.notifications import APPLICATION_NAME
from tests.conftest import CLUSTER, THROUGH_POOLER, free_port
from tests.http.helpers import API_2024, bearer, sign_up


async def test_service_recovers_after_its_connections_are_killed(make_client, admin, settings):
    # Nothing but the request may meet the killed connections first (whatever does, the pool replaces them
    # before the request): the outboxes do not sweep meanwhile, and the listener's connection lives (a new
    # one tells every outbox to catch up, which takes a pool connection).
    client = await make_client(mailer_sweep_seconds=3600)
    session = await sign_up(client)
    admin.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where usename = 'authgres_service' and application_name <> %s",
        (APPLICATION_NAME,),
    )

    statuses = []
    for _ in range(settings.db_pool_max + 2):
        response = await client.get("/user", headers={**API_2024, **bearer(session)})
        statuses.append(response.status)
        if response.status == 200:
            break
        assert response.status == 503  # retryable for both official clients, never a 500
        assert response.headers["X-Supabase-Api-Version"] == "2024-01-01"
    if not THROUGH_POOLER:  # a pooler replaces its killed server connections before the service notices
        assert statuses[0] == 503, statuses  # the outage was real
    assert statuses[-1] == 200, statuses


async def test_the_service_starts_while_the_database_is_not_reachable_yet(settings, dsn, aiohttp_client):
    """Started before its database can be reached (a deploy racing a database restart, or a pooler that
    answers "try again later"), the service waits for it instead of failing to start."""
    waited = asyncio.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "database not reachable yet" in record.getMessage():
                waited.set()

    port = free_port()
    socket_path = str(CLUSTER.socket_dir / f".s.PGSQL.{CLUSTER.port}")

    async def forward(client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_unix_connection(socket_path)

        async def pipe(reader, writer):
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    async def database_comes_up():
        await waited.wait()  # the service tried, failed and said so: now the database appears
        return await asyncio.start_server(forward, "127.0.0.1", port)

    handler = Seen()
    logging.getLogger("authgres").addHandler(handler)
    try:
        url = make_conninfo(dsn("authgres_service"), host="127.0.0.1", port=port)
        arrival = asyncio.create_task(database_comes_up())
        client = await aiohttp_client(create_app(replace(settings, database_url=url)))
        async with await arrival:
            assert (await client.get("/health")).status == 200
            assert (await sign_up(client, "patient@example.com"))["user"]["email"] == "patient@example.com"
    finally:
        logging.getLogger("authgres").removeHandler(handler)
    assert waited.is_set()
