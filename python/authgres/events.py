"""GET /sessions/events: a user's events (auth.user_events: session_revoked, password_changed,
factor_changed, account_deleted) pushed to their signed-in clients as Server-Sent Events.

SQL writes each event in the transaction that caused it and NOTIFYs it on authgres_user_events at
commit. The process's one LISTEN connection (notifications.py: AUTHGRES_DB_LISTEN_URL, else
DATABASE_URL when no pooler is in between) hands every notification on it to the streams open in this
process for that user, so an event caused through any process reaches every stream. A stream
subscribes before it asks SQL where it starts (auth.user_events_since), then sends only events past
the last id it sent: a user's events commit in id order (auth._user_event), so none is missed and
none sent twice. After the LISTEN connection was lost it is made again, and then every
stream catches up from its last id through auth.user_events_since; without LISTEN (a transaction
pooler and no listen URL) every stream polls that function at each heartbeat. A stream holds no pooled
connection while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
from aiohttp import web

from authgres.db import Database
from authgres.errors import AuthError
from authgres.logs import REQUEST_ID

log = logging.getLogger("authgres.events")

CHANNEL = "authgres_user_events"
_HEARTBEAT = b": heartbeat\n\n"


class Signal(enum.Enum):
    CATCH_UP = "catch up"  # notifications may have been lost: read what came since from the table
    CLOSE = "close"  # the service is stopping


Item = dict[str, Any] | Signal


class Inbox:
    """What one stream is handed: its user's events as they are NOTIFYed, and the signals above."""

    def __init__(self) -> None:
        self.user_id: str | None = None  # until the stream knows its user, it is handed every event
        self._items: asyncio.Queue[Item] = asyncio.Queue()

    def put(self, item: Item) -> None:
        self._items.put_nowait(item)

    async def next(self, seconds: float) -> Item | None:
        """The next item, or None when there was none for that many seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                return await self._items.get()
        return None


class UserEvents:
    """This process's streams, by user, fed by the process's LISTEN connection."""

    def __init__(self, db: Database, heartbeat_seconds: float) -> None:
        self.db = db
        self.heartbeat_seconds = heartbeat_seconds
        self._inboxes: dict[str | None, set[Inbox]] = {}
        self._closed = False

    @property
    def polling(self) -> bool:
        """No LISTEN is possible: streams read the table at each heartbeat."""
        return self.db.listen_conninfo is None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[UserEvents]:
        async with self.db.notifications.subscribed(CHANNEL, self._notified):
            try:
                yield self
            finally:
                self.close()

    def close(self) -> None:
        """Ends every stream (each after what it is sending): the service is stopping."""
        self._closed = True
        self._broadcast(Signal.CLOSE)

    def _notified(self, payload: str | None) -> None:
        if payload is None:  # whatever was NOTIFYed while no connection listened is in the table
            self._broadcast(Signal.CATCH_UP)
        else:
            self._deliver(payload)

    def _deliver(self, payload: str) -> None:
        try:
            event = json.loads(payload)
            user_id = event["user_id"]
        except (ValueError, KeyError, TypeError):
            log.warning("user events: ignored a notification that is not an event: %.200s", payload)
            return
        for inbox in (*self._inboxes.get(user_id, ()), *self._inboxes.get(None, ())):
            inbox.put(event)

    def _broadcast(self, signal: Signal) -> None:
        for inboxes in self._inboxes.values():
            for inbox in inboxes:
                inbox.put(signal)

    @contextlib.contextmanager
    def _subscribed(self) -> Iterator[Inbox]:
        inbox = Inbox()
        self._inboxes.setdefault(None, set()).add(inbox)
        if self._closed:
            inbox.put(Signal.CLOSE)
        try:
            yield inbox
        finally:
            members = self._inboxes.get(inbox.user_id, set())
            members.discard(inbox)
            if not members and inbox.user_id is not None:
                self._inboxes.pop(inbox.user_id, None)

    def _narrow(self, inbox: Inbox, user_id: str) -> None:
        self._inboxes[None].discard(inbox)
        inbox.user_id = user_id
        self._inboxes.setdefault(user_id, set()).add(inbox)

    async def since(self, token: str, after: int | None) -> dict[str, Any]:
        """auth.user_events_since: who the token speaks for, and the events after `after`."""
        result: dict[str, Any] = json.loads(await self.db.call("user_events_since", access_token=token, after=after))
        return result

    async def stream(self, request: web.Request, token: str, after: int | None) -> web.StreamResponse:
        """The stream of the token's user, from the event after `after` (Last-Event-ID) or from now on.
        A token that does not hold is answered as on any endpoint (401, 403), before anything streams."""
        with self._subscribed() as inbox:
            opened = await self.since(token, after)
            self._narrow(inbox, opened["user_id"])
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",  # nginx would otherwise hold events back
                }
            )
            if (request_id := REQUEST_ID.get()) is not None:  # sent before the request middleware could add it
                response.headers["X-Request-Id"] = request_id
            await response.prepare(request)
            stream = _Stream(self, response, token, opened, after)
            with contextlib.suppress(ConnectionResetError):  # the client went away
                await stream.run(inbox, opened)
        return response


class _Stream:
    """One client's stream: where it is (the last event id sent), and when it ends."""

    def __init__(
        self, events: UserEvents, response: web.StreamResponse, token: str, opened: dict[str, Any], after: int | None
    ) -> None:
        self.events = events
        self.response = response
        self.token = token
        self.user_id: str = opened["user_id"]
        self.session_id: str | None = opened["session_id"]  # None for an API key
        self.expires_at = float(opened["expires_at"])  # the credential's: a stream outlives it by nothing
        self.last_id = int(opened["last_id"] if after is None else after)
        self.behind = False  # a catch-up failed for want of the database: try again at the next heartbeat

    async def run(self, inbox: Inbox, opened: dict[str, Any]) -> None:
        # First the position a reconnecting client resumes from (an `id:` alone sets it, dispatching
        # nothing), then what it missed.
        await self.response.write(f"id: {self.last_id}\n\n".encode())
        ended = await self._send(opened["events"]) or (opened["more"] and await self._catch_up())
        heartbeat = self.events.heartbeat_seconds
        beat = time.monotonic() + heartbeat
        while not ended:
            left = self.expires_at - time.time()
            if left <= 0:
                return
            item = await inbox.next(min(beat - time.monotonic(), left))
            if item is Signal.CLOSE:
                return
            if item is Signal.CATCH_UP:
                ended = await self._catch_up()
            elif item is not None:
                ended = await self._send([item])
            elif time.monotonic() >= beat:
                beat = time.monotonic() + heartbeat
                # Without LISTEN, reading the table is how events arrive; an API key has no session
                # whose end would be an event, so its own validity (revoked, expired) is checked here.
                if self.behind or self.events.polling or self.session_id is None:
                    ended = await self._catch_up()
                if not ended:
                    await self.response.write(_HEARTBEAT)

    async def _send(self, events: list[dict[str, Any]]) -> bool:
        """Sends the events past the last one sent; True once one of them ends this stream."""
        for event in events:
            if event["user_id"] != self.user_id or event["id"] <= self.last_id:
                continue
            data = json.dumps(event["data"], separators=(",", ":"))
            await self.response.write(f"id: {event['id']}\nevent: {event['kind']}\ndata: {data}\n\n".encode())
            self.last_id = event["id"]
            if event["kind"] == "account_deleted" or (
                event["kind"] == "session_revoked"
                and self.session_id is not None
                and event["data"].get("session_id") == self.session_id
            ):
                return True
        return False

    async def _catch_up(self) -> bool:
        """Sends what came since the last event sent, read from the table; True when the stream ends
        (one of those events ends it, or its credential no longer holds)."""
        while True:
            try:
                result = await self.events.since(self.token, self.last_id)
            except AuthError as error:
                if error.status < 500:
                    return True  # expired, revoked, banned: the client learns which when it reconnects
                self.behind = True
                return False
            except psycopg.Error as error:
                log.warning("user events: could not catch up (%s); trying again at the next heartbeat", error)
                self.behind = True
                return False
            self.behind = False
            if await self._send(result["events"]):
                return True
            if not result["more"]:
                return False
