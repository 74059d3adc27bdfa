"""What the email and SMS outboxes share: a drain loop that SQL's NOTIFY on the outbox's channel wakes (through
the process's one listener, notifications.py, which wakes it too when it reconnects, as notifications may have
been lost meanwhile), with a periodic sweep as fallback (for retries that come due, or for every row where no
LISTEN is possible). Rows are leased by auth.claim_* with FOR UPDATE SKIP LOCKED, so any number of service
processes may drain one outbox; mailer.py and sms.py say how a row is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from authgres.db import Database
from authgres.settings import Settings

log = logging.getLogger("authgres.outbox")


async def _until_woken(woken: asyncio.Event, stop: asyncio.Event, sweep: float) -> None:
    """Waits for woken (a NOTIFY, or the listener reconnected), for stop, or for the sweep interval, whichever
    comes first."""
    waits = {asyncio.ensure_future(woken.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waits, timeout=sweep, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


class OutboxDrain:
    """Drains one outbox: `channel` is what SQL notifies when it queues a row, `claim` the auth function that
    leases due rows, `deliver` sends one leased row and records the outcome."""

    channel: ClassVar[str]
    claim: ClassVar[str]
    settings: Settings
    db: Database

    async def deliver(self, row: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Delivers every row that is due (until stop is set); returns how many were attempted."""
        attempted = 0
        while not (stop and stop.is_set()) and (
            rows := await self.db.call_rows(self.claim, limit=10, lease_seconds=60)
        ):
            # In the order they were queued (UPDATE ... RETURNING has none): a resent code after the one it replaces.
            for row in sorted(rows, key=lambda row: int(row["id"])):
                await self.deliver(row)
            attempted += len(rows)
        return attempted

    async def run(self, stop: asyncio.Event) -> None:
        """Drains the outbox until stop is set: when woken by the process's listener (notifications.py), and at
        every sweep; after a database failure, again at the next of those."""
        sweep = self.settings.mailer_sweep_seconds
        woken = asyncio.Event()
        # Without a listener (behind a pooler, no AUTHGRES_DB_LISTEN_URL) the sweep alone finds new rows.
        async with self.db.notifications.subscribed(self.channel, lambda _: woken.set()):
            while not stop.is_set():
                woken.clear()
                try:
                    await self.drain(stop)
                except Exception:
                    log.exception("%s: lost the database; retrying", self.channel)
                await _until_woken(woken, stop, sweep)

    @contextlib.asynccontextmanager
    async def draining(self) -> AsyncIterator[None]:
        """The drain loop, in the background while the block runs. Leaving lets a delivery in flight finish: a
        cancelled send could leave a message delivered but unmarked."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop), name=f"authgres: drain {self.channel}")
        try:
            yield
        finally:
            stop.set()
            await task
