"""One LISTEN connection per service process, shared by everything in it that SQL's NOTIFY wakes: the email
and SMS outboxes (outbox.py) and the user event streams (events.py) subscribe to their channels here.

The connection goes to Database.listen_conninfo (AUTHGRES_DB_LISTEN_URL, else DATABASE_URL when no pooler
is in between); when there is none, nothing connects and subscribers poll instead. It is open while anyone
subscribes, LISTENs on every subscribed channel, and hands each notification to that channel's subscribers.
What is NOTIFYed while it is away (lost, not yet connected, a channel not yet listened to) is missed: each
time it starts listening on a channel, that channel's subscribers are told so (handed None), and read what
they may have missed from their tables. pg_stat_activity shows it as application_name `authgres: LISTEN`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from authgres.db import Database

log = logging.getLogger("authgres.notifications")

APPLICATION_NAME = "authgres: LISTEN"
RECONNECT_SECONDS = 1.0  # between attempts to make the connection again
ALIVE_SECONDS = 15.0  # a connection quiet this long is asked whether it is still there (a silent network loss)

# Handed a notification's payload, or None: from now on every notification comes, but some may have been missed.
Handler = Callable[[str | None], None]


class Notifications:
    """The process's LISTEN connection (Database.notifications), and who subscribed to which channel on it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._handlers: dict[str, list[Handler]] = {}
        self._changed = asyncio.Event()  # a channel was subscribed: LISTEN on it
        self._task: asyncio.Task[None] | None = None
        self.listening: frozenset[str] = frozenset()  # the channels the connection LISTENs on now

    @contextlib.asynccontextmanager
    async def subscribed(self, channel: str, handler: Handler) -> AsyncIterator[None]:
        """handler is handed what is NOTIFYed on channel while the block runs (nothing without a listen_conninfo),
        or None after notifications may have been missed (when the connection is made, or made again): the
        subscriber reads what it needs after entering the block, and again whenever it is handed None."""
        conninfo = self.db.listen_conninfo
        if conninfo is None:
            yield
            return
        self._handlers.setdefault(channel, []).append(handler)
        self._changed.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(conninfo), name=APPLICATION_NAME)
        try:
            yield
        finally:
            self._handlers[channel].remove(handler)
            if not self._handlers[channel]:
                del self._handlers[channel]
            if not self._handlers and self._task is not None:
                task, self._task = self._task, None
                task.cancel()  # nothing in flight is lost: a notification is only handed on
                await asyncio.gather(task, return_exceptions=True)

    async def _run(self, conninfo: str) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, application_name=APPLICATION_NAME
                ) as connection:
                    await self._listen(connection)
            except Exception as error:
                log.warning("LISTEN: no connection (%s); connecting again in %.1f s", error, RECONNECT_SECONDS)
            finally:
                self.listening = frozenset()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self, connection: psycopg.AsyncConnection[Any]) -> None:
        while True:
            self._changed.clear()
            new = self._handlers.keys() - self.listening
            for channel in new:
                await connection.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
            self.listening |= new
            for channel in new:
                self._hand_on(channel, None)
            # Notifications are handed on until a channel is subscribed, or for ALIVE_SECONDS.
            reading = asyncio.create_task(self._read(connection))
            waits = (reading, asyncio.create_task(self._changed.wait()))
            try:
                done, _ = await asyncio.wait(waits, timeout=ALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
            if reading in done:
                reading.result()  # reading ends only when the connection fails: raises why
            elif not done:  # a quiet connection may be a dead one (a network that lost it silently): ask
                async with asyncio.timeout(ALIVE_SECONDS):
                    await connection.execute("select 1")

    async def _read(self, connection: psycopg.AsyncConnection[Any]) -> None:
        async for notify in connection.notifies():
            self._hand_on(notify.channel, notify.payload)

    def _hand_on(self, channel: str, payload: str | None) -> None:
        for handler in list(self._handlers.get(channel, ())):
            handler(payload)
