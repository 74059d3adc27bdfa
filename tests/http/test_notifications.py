"""One LISTEN connection per service process (notifications.py): it wakes the email outbox and the SMS outbox
and feeds the event streams, each at once; when it is lost it is made again, and whatever was NOTIFYed
meanwhile still arrives; it closes with the app."""

import asyncio

import pytest

from authgres.app import create_app
from authgres.notifications import APPLICATION_NAME
from authgres.state import DB
from tests.http import twilio as twilio_stand_in
from tests.http.mail import until
from tests.http.processes import SERVICE_DEADLINE
from tests.http.test_user_events import events_of, open_stream
from tests.http.twilio import Twilio

CHANNELS = {"authgres_outbox", "authgres_sms_outbox", "authgres_user_events"}
ROLE = "notifications_listener"  # the listen URL's role alone: its connections are the LISTEN connections


@pytest.fixture
async def twilio(aiohttp_server):
    return await twilio_stand_in.start(aiohttp_server)


@pytest.fixture
def everything(admin, dsn, mail_settings, twilio):
    """Email through the SMTP stand-in, texts through the Twilio one, a LISTEN URL of its own role (also when
    AUTHGRES_TEST_POOLER puts PgBouncer in front of DATABASE_URL), and sweeps an hour apart: within a test,
    only the listener can get a message delivered."""
    admin.execute(f"""
        do $$ begin
          if not exists (select from pg_roles where rolname = '{ROLE}') then
            create role {ROLE} login;
          end if;
        end $$
    """)
    return twilio_stand_in.phone_settings(mail_settings, twilio, mailer_sweep_seconds=3600, db_listen_url=dsn(ROLE))


def listen_connections(admin):
    return admin.execute(
        "select pid, application_name from pg_stat_activity where usename = %s and datname = current_database()",
        (ROLE,),
    ).fetchall()


async def listening(client):
    """Waits until the process's LISTEN connection LISTENs on every channel."""
    await until(lambda: client.server.app[DB].notifications.listening == CHANNELS)


async def post(client, path, body):
    response = await client.post(path, json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def text_and_email(client, twilio: Twilio, inbox, phone, address):
    """An SMS and an email queued through the outboxes, once both have been delivered."""
    await post(client, "/otp", {"phone": phone})
    await post(client, "/otp", {"email": address})
    text = await twilio.text_to(phone)
    assert (await inbox.next_to(address))["To"] == address
    return text


async def test_one_connection_wakes_both_outboxes_feeds_the_streams_and_closes_with_the_app(
    everything, twilio, inbox, admin, aiohttp_client
):
    client = await aiohttp_client(create_app(everything))
    await listening(client)
    ((pid, name),) = listen_connections(admin)
    assert name == APPLICATION_NAME == "authgres: LISTEN"

    text = await text_and_email(client, twilio, inbox, "15550300001", "woken@example.com")
    session = await post(client, "/verify", {"type": "sms", "phone": "15550300001", "token": text.code})
    stream = await open_stream(client, session)
    factor = await post_factor(client, session)
    (event,) = await stream.take(1)
    assert (event[1], event[2]["factor_id"]) == ("factor_changed", factor["id"])
    assert listen_connections(admin) == [(pid, name)]

    await client.close()
    assert not [task for task in asyncio.all_tasks() if task.get_name() == APPLICATION_NAME]
    await until(lambda: not listen_connections(admin))


async def test_a_killed_connection_is_made_again_and_every_subscriber_gets_what_it_missed(
    everything, twilio, inbox, admin, aiohttp_client
):
    client = await aiohttp_client(create_app(everything))
    await listening(client)
    ((killed, _),) = listen_connections(admin)
    text = await text_and_email(client, twilio, inbox, "15550300002", "first@example.com")
    session = await post(client, "/verify", {"type": "sms", "phone": "15550300002", "token": text.code})
    stream = await open_stream(client, session)

    # The listener cannot come back until its role may log in again: what is queued and NOTIFYed meanwhile
    # reaches no listener, and the sweeps are an hour apart.
    admin.execute(f"alter role {ROLE} nologin")
    try:
        admin.execute("select pg_terminate_backend(%s, 5000)", (killed,))
        await post(client, "/otp", {"phone": "15550300003"})
        await post(client, "/otp", {"email": "missed@example.com"})
        missed = [(await post_factor(client, session))["id"] for _ in range(2)]
    finally:
        admin.execute(f"alter role {ROLE} login")

    caught_up = await stream.take(2, seconds=SERVICE_DEADLINE)
    assert [event[2]["factor_id"] for event in caught_up] == missed
    await twilio.text_to("15550300003")
    assert (await inbox.next_to("missed@example.com"))["To"] == "missed@example.com"

    await listening(client)
    ((again, _),) = listen_connections(admin)
    assert again != killed
    await text_and_email(client, twilio, inbox, "15550300004", "after@example.com")
    live = await post_factor(client, session)
    (event,) = await stream.take(1)
    assert event[2]["factor_id"] == live["id"]
    assert [event[0] for event in [*caught_up, event]] == [row[0] for row in events_of(admin, session["user"]["id"])]


async def post_factor(client, session):
    response = await client.post(
        "/factors", headers={"Authorization": f"Bearer {session['access_token']}"}, json={"factor_type": "totp"}
    )
    assert response.status == 200, await response.text()
    return await response.json()
