"""The outbox under failure: SMTP down, several mailers, retries."""

import asyncio
from collections import Counter
from dataclasses import replace

from aiosmtpd.controller import Controller
from psycopg.types.json import Jsonb

from authgres.db import Database
from authgres.mailer import Mailer
from tests.conftest import Inbox, free_port
from tests.http.mail import outbox_settled, until


async def test_smtp_outage_loses_nothing_and_sends_each_email_once(make_client, mail_settings, admin):
    port = free_port()  # nothing listens there yet: SMTP is down
    client = await make_client(**{**vars(mail_settings), "smtp_port": port, "mailer_max_attempts": 1000})
    addresses = [f"user{n}@example.com" for n in range(50)]
    responses = await asyncio.gather(
        *(client.post("/signup", json={"email": address, "password": "a good password"}) for address in addresses)
    )
    assert [r.status for r in responses] == [200] * 50
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 50
    assert admin.execute("select count(*) from auth.one_time_tokens").fetchone()[0] == 50

    # Every email has met the closed port at least once.
    await until(lambda: admin.execute("select bool_and(last_error is not null) from auth.email_outbox").fetchone()[0])
    assert admin.execute("select count(*) from auth.email_outbox where status = 'sent'").fetchone()[0] == 0

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        delivered = await asyncio.to_thread(inbox.wait_for, 50)
        assert await outbox_settled(admin) == {"sent": 50}
    finally:
        smtp.stop()
    assert Counter(message["To"] for message in inbox.messages) == Counter(addresses)
    assert len(delivered) == 50


async def test_an_email_that_keeps_failing_ends_dead_with_its_error(make_client, mail_settings, admin):
    client = await make_client(**{**vars(mail_settings), "smtp_port": free_port(), "mailer_max_attempts": 3})
    await client.post("/otp", json={"email": "nowhere@example.com"})
    counts = await outbox_settled(admin)
    assert counts == {"dead": 1}
    attempts, error, payload = admin.execute("select attempts, last_error, payload from auth.email_outbox").fetchone()
    assert attempts == 3
    assert "Connect" in error or "refused" in error.lower()
    assert "token" not in payload


async def test_two_mailers_never_send_one_email_twice(dsn, mail_settings, smtp, admin, service):
    service.execute("select auth.configure(%s, null)", (Jsonb(mail_settings.sql_settings()),))
    for n in range(50):
        service.execute("select auth.send_magic_link(p_email => %s)", (f"m{n}@example.com",))
    mailers = []
    for _ in range(2):
        database = Database(dsn("authgres_service"), min_size=1, max_size=2)
        await database.open()
        mailers.append((database, Mailer(replace(mail_settings, mailer_sweep_seconds=0.01), database)))
    try:
        async with mailers[0][1].running(), mailers[1][1].running():
            await asyncio.to_thread(smtp.inbox.wait_for, 50)
            assert await outbox_settled(admin) == {"sent": 50}
    finally:
        for database, _ in mailers:
            await database.close()
    assert len(smtp.inbox.messages) == 50
    assert len({message["To"] for message in smtp.inbox.messages}) == 50
