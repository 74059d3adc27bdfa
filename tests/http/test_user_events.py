"""GET /sessions/events: what happens to an account reaches its open streams at once, from any service
process, resumes without gaps or duplicates after a disconnect, survives a lost LISTEN connection, and
works (by polling) behind a pooler without one."""

import asyncio
import json
import signal
import time
from dataclasses import replace

import aiohttp
import jwt
import pyotp
import pytest

from authgres.app import create_app
from authgres.state import EVENTS
from tests.conftest import JWT_SECRET
from tests.http.helpers import API_2024, bearer, claims_of, sign_up
from tests.http.processes import SERVICE_DEADLINE

PASSWORD = "a good password"
LISTENER = "authgres: LISTEN"  # the application_name of the process's one LISTEN connection


class Stream:
    """A GET /sessions/events response as a client reads it: blocks of `field: value` lines."""

    def __init__(self, response):
        self.response = response
        self.position = None  # the last `id:` read: what a reconnecting client sends as Last-Event-ID
        self.comments = 0

    async def raw_block(self):
        """The next block's fields, {} for a comment (a heartbeat); None at the end of the stream."""
        raw = await self.response.content.readuntil(b"\n\n")
        if not raw:
            return None
        assert raw.endswith(b"\n\n"), raw
        fields = {}
        for line in raw.decode().splitlines():
            if line.startswith(":"):
                self.comments += 1
            elif line:
                name, _, value = line.partition(":")
                assert name not in fields, raw
                fields[name] = value.removeprefix(" ")
        if "id" in fields:
            self.position = int(fields["id"])
        return fields

    async def block(self):
        """The next block that is not a comment; None at the end of the stream."""
        while (fields := await self.raw_block()) == {}:
            pass
        return fields

    async def heartbeat(self, seconds=1.0):
        """The next block is a heartbeat (a comment), within `seconds`."""
        async with asyncio.timeout(seconds):
            assert await self.raw_block() == {}

    async def next(self):
        """The next event: (id, kind, data)."""
        while True:
            fields = await self.block()
            assert fields is not None, "the stream ended"
            if "event" in fields:
                assert set(fields) == {"id", "event", "data"}, fields
                return int(fields["id"]), fields["event"], json.loads(fields["data"])

    async def take(self, count, seconds=1.0):
        """The next `count` events, which must all arrive within `seconds`."""
        async with asyncio.timeout(seconds):
            return [await self.next() for _ in range(count)]

    async def ends(self, seconds=1.0):
        """The stream ends (cleanly: a chunked body's last chunk) within `seconds`, with no event before."""
        async with asyncio.timeout(seconds):
            assert await self.block() is None
        assert self.response.content.at_eof()


async def open_stream(client, credential, last_event_id=None):
    """A stream, once it is live: its first block (`id:` alone) comes after it subscribed."""
    headers = bearer(credential) if "access_token" in credential else credential  # a session, or headers
    if last_event_id is not None:
        headers = {**headers, "Last-Event-ID": str(last_event_id)}
    response = await client.get("/sessions/events", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    stream = Stream(response)
    first = await stream.block()
    assert set(first) == {"id"}, first
    return stream


def session_of(session):
    return claims_of(session["access_token"])["session_id"]


async def sign_in(client, email, password=PASSWORD):
    response = await client.post("/token?grant_type=password", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


def service_key():
    return jwt.encode({"role": "service_role", "iat": int(time.time()), "exp": int(time.time()) + 600}, JWT_SECRET)


def admin_headers():
    return {"Authorization": f"Bearer {service_key()}", **API_2024}


def events_of(admin, user_id):
    return admin.execute(
        "select id, kind, data from auth.user_events where user_id = %s order by id", (user_id,)
    ).fetchall()


@pytest.fixture
def listening(settings, dsn):
    """The test settings with a direct LISTEN connection, also when AUTHGRES_TEST_POOLER puts PgBouncer
    in front of DATABASE_URL (AUTHGRES_DB_LISTEN_URL, as in production behind a pooler)."""
    return replace(settings, db_listen_url=dsn("authgres_service"))


@pytest.fixture
async def events_client(listening, aiohttp_client):
    return await aiohttp_client(create_app(listening))


async def test_a_sign_out_through_another_process_reaches_the_stream_within_a_second(
    events_client, serve, listening, admin
):
    _, other = serve("--workers", "1", AUTHGRES_DB_LISTEN_URL=listening.db_listen_url)
    laptop = await sign_up(events_client, "two@example.com", PASSWORD)
    phone = await sign_in(events_client, "two@example.com")
    laptop_stream = await open_stream(events_client, laptop)
    phone_stream = await open_stream(events_client, phone)

    async with aiohttp.ClientSession() as elsewhere:
        response = await elsewhere.post(f"{other}/logout?scope=others", headers=bearer(phone))
        assert (response.status, response.headers["X-Sessions-Ended"]) == (204, "1")
    (revoked,) = await laptop_stream.take(1)  # within a second of the other process's answer
    await laptop_stream.ends()
    assert revoked[1:] == ("session_revoked", {"session_id": session_of(laptop)})
    assert await phone_stream.take(1) == [revoked]  # the phone's stream tells of the laptop, and goes on
    assert events_of(admin, laptop["user"]["id"]) == [revoked]

    # An administrator's sign-out of the user (a ban ends every session) through the other process.
    async with aiohttp.ClientSession() as elsewhere:
        banned = await elsewhere.put(
            f"{other}/admin/users/{phone['user']['id']}", headers=admin_headers(), json={"ban_duration": "1h"}
        )
        assert banned.status == 200
    (ended,) = await phone_stream.take(1)  # within a second of the other process's answer
    assert ended[1:] == ("session_revoked", {"session_id": session_of(phone)})
    await phone_stream.ends()

    # Each process holds one LISTEN connection on the channel, however many streams it serves.
    listeners = admin.execute(
        "select count(*) from pg_stat_activity where application_name = %s and datname = current_database()",
        (LISTENER,),
    ).fetchone()[0]
    assert listeners == 2


async def test_admin_actions_reach_the_stream_and_deleting_the_account_ends_it(events_client):
    session = await sign_up(events_client, "managed@example.com", PASSWORD)
    user_id = session["user"]["id"]
    key = (await (await events_client.post("/api_keys", json={"name": "k"}, headers=bearer(session))).json())["key"]
    stream = await open_stream(events_client, session)
    key_stream = await open_stream(events_client, {"X-Api-Key": key})  # no session: it sees what follows, too

    changed = await events_client.put(
        f"/admin/users/{user_id}", headers=admin_headers(), json={"password": "a new one"}
    )
    assert changed.status == 200
    revoked, password = await key_stream.take(2)
    assert revoked[1:] == ("session_revoked", {"session_id": session_of(session)})
    assert password[1:] == ("password_changed", {})
    assert await stream.take(1) == [revoked]
    await stream.ends()

    again = await sign_in(events_client, "managed@example.com", "a new one")
    stream = await open_stream(events_client, again)
    banned = await events_client.put(f"/admin/users/{user_id}", headers=admin_headers(), json={"ban_duration": "1h"})
    assert banned.status == 200
    assert await stream.take(1) == await key_stream.take(1)
    await stream.ends()

    unbanned = await events_client.put(
        f"/admin/users/{user_id}", headers=admin_headers(), json={"ban_duration": "none"}
    )
    assert unbanned.status == 200
    stream = await open_stream(events_client, await sign_in(events_client, "managed@example.com", "a new one"))
    deleted = await events_client.delete(f"/admin/users/{user_id}", headers=admin_headers())
    assert deleted.status == 200
    # Deleting the account ends its sessions (each a session_revoked) and says so (account_deleted).
    (first,) = await stream.take(1)
    assert first[1] in ("account_deleted", "session_revoked")
    await stream.ends()


async def test_a_stream_ends_after_the_password_change_that_ends_its_session_and_tells_the_others(events_client):
    laptop = await sign_up(events_client, "pw@example.com", PASSWORD)
    phone = await sign_in(events_client, "pw@example.com")
    laptop_stream, phone_stream = await open_stream(events_client, laptop), await open_stream(events_client, phone)

    response = await events_client.put("/user", headers=bearer(phone), json={"password": "another good one"})
    assert response.status == 200

    revoked, password = await phone_stream.take(2)
    assert revoked[1:] == ("session_revoked", {"session_id": session_of(laptop)})
    assert password[1:] == ("password_changed", {})
    assert password[0] > revoked[0]
    assert await laptop_stream.take(1) == [revoked]
    await laptop_stream.ends()


async def test_nothing_arrives_of_another_users_events(events_client):
    mine = await sign_up(events_client, "mine@example.com", PASSWORD)
    theirs = await sign_up(events_client, "theirs@example.com", PASSWORD)
    theirs_too = await sign_in(events_client, "theirs@example.com")
    stream = await open_stream(events_client, mine)

    await events_client.post("/logout?scope=others", headers=bearer(theirs))
    await events_client.put("/user", headers=bearer(theirs_too), json={"password": "their new one"})
    await events_client.post("/factors", headers=bearer(theirs_too), json={"factor_type": "totp"})
    await events_client.put("/user", headers=bearer(mine), json={"password": "my new password"})

    # Had any of theirs come through, it would come first: the streams see events in commit order.
    assert [event[1:] for event in await stream.take(1)] == [("password_changed", {})]


async def test_last_event_id_resumes_after_a_disconnect_without_gaps_or_duplicates(events_client, admin):
    session = await sign_up(events_client, "resume@example.com", PASSWORD)
    user_id = session["user"]["id"]
    stream = await open_stream(events_client, session)
    opened_at = stream.position
    enrolled = await (
        await events_client.post("/factors", headers=bearer(session), json={"factor_type": "totp"})
    ).json()
    (first,) = await stream.take(1)
    assert first[1:] == ("factor_changed", {"factor_id": enrolled["id"], "action": "enrolled"})
    stream.response.close()  # the client goes away

    # While it is away: a factor removed, a second device signed out, the password changed.
    assert (await events_client.delete(f"/factors/{enrolled['id']}", headers=bearer(session))).status == 200
    other = await sign_in(events_client, "resume@example.com")
    assert (await events_client.post("/logout?scope=local", headers=bearer(other))).status == 204
    changed = await events_client.put("/user", headers=bearer(session), json={"password": "changed meanwhile"})
    assert changed.status == 200
    missed = events_of(admin, user_id)[1:]
    assert [kind for _, kind, _ in missed] == ["factor_changed", "session_revoked", "password_changed"]

    resumed = await open_stream(events_client, session, last_event_id=first[0])
    assert await resumed.take(3) == missed
    # ...then it is live again: the next event follows, nothing twice.
    again = await (await events_client.post("/factors", headers=bearer(session), json={"factor_type": "totp"})).json()
    (live,) = await resumed.take(1)
    assert live[1:] == ("factor_changed", {"factor_id": again["id"], "action": "enrolled"})
    assert [event[0] for event in [first, *missed, live]] == [row[0] for row in events_of(admin, user_id)]

    # A client that had received nothing resumes from the position the stream began with.
    from_the_start = await open_stream(events_client, session, last_event_id=opened_at)
    assert await from_the_start.take(5) == events_of(admin, user_id)


async def test_a_stream_ends_when_its_own_session_is_revoked(events_client):
    laptop = await sign_up(events_client, "end@example.com", PASSWORD)
    phone = await sign_in(events_client, "end@example.com")
    laptop_stream = await open_stream(events_client, laptop)

    ended = await events_client.delete(f"/sessions/{session_of(laptop)}", headers=bearer(phone))
    assert ended.status == 200
    assert [event[1:] for event in await laptop_stream.take(1)] == [
        ("session_revoked", {"session_id": session_of(laptop)})
    ]
    await laptop_stream.ends()


async def test_an_api_key_streams_until_it_is_revoked(listening, aiohttp_client):
    client = await aiohttp_client(create_app(replace(listening, events_heartbeat_seconds=0.2)))
    session = await sign_up(client, "script@example.com", PASSWORD)
    key = (await (await client.post("/api_keys", json={"name": "watcher"}, headers=bearer(session))).json())["key"]
    stream = await open_stream(client, {"X-Api-Key": key})

    await client.post("/logout?scope=local", headers=bearer(session))  # no session of its own: it goes on
    (revoked,) = await stream.take(1)
    assert revoked[1:] == ("session_revoked", {"session_id": session_of(session)})
    await stream.heartbeat()  # every 0.2 s while nothing happens
    another = await sign_in(client, "script@example.com")
    await client.put("/user", headers=bearer(another), json={"password": "a key outlives this"})
    (password,) = await stream.take(1)
    assert password[1:] == ("password_changed", {})

    # A key's revocation is no event: the stream checks its key at each heartbeat, and ends.
    key_id = (await (await client.get("/api_keys", headers=bearer(another))).json())[0]["id"]
    assert (await client.delete(f"/api_keys/{key_id}", headers=bearer(another))).status == 200
    await stream.ends(seconds=2)
    refused = await client.get("/sessions/events", headers={**API_2024, "X-Api-Key": key})
    assert (refused.status, (await refused.json())["code"]) == (403, "bad_jwt")


async def test_factor_changes_arrive(events_client):
    session = await sign_up(events_client, "factors@example.com", PASSWORD)
    other = await sign_in(events_client, "factors@example.com")
    stream = await open_stream(events_client, session)

    factor = await (await events_client.post("/factors", headers=bearer(session), json={"factor_type": "totp"})).json()
    challenge = await (await events_client.post(f"/factors/{factor['id']}/challenge", headers=bearer(session))).json()
    code = pyotp.TOTP(factor["totp"]["secret"]).now()
    verify = await events_client.post(
        f"/factors/{factor['id']}/verify", headers=bearer(session), json={"challenge_id": challenge["id"], "code": code}
    )
    assert verify.status == 200
    raised = await verify.json()
    [codes] = [f["id"] for f in raised["user"]["factors"] if f["factor_type"] == "recovery_code"]
    enrolled, revoked, verified, handed_out = await stream.take(4)
    assert enrolled[1:] == ("factor_changed", {"factor_id": factor["id"], "action": "enrolled"})
    # Verifying the first factor ends the other aal1 sessions, then tells of the factor, and of the
    # recovery codes it came with.
    assert revoked[1:] == ("session_revoked", {"session_id": session_of(other)})
    assert verified[1:] == ("factor_changed", {"factor_id": factor["id"], "action": "verified"})
    assert handed_out[1:] == ("factor_changed", {"factor_id": codes, "action": "enrolled"})

    assert (await events_client.delete(f"/factors/{factor['id']}", headers=bearer(raised))).status == 200
    assert [event[1:] for event in await stream.take(2)] == [
        ("factor_changed", {"factor_id": factor["id"], "action": "removed"}),
        ("factor_changed", {"factor_id": codes, "action": "removed"}),  # never the only factor
    ]

    second = await (await events_client.post("/factors", headers=bearer(raised), json={"factor_type": "totp"})).json()
    user_id = session["user"]["id"]
    removed = await events_client.delete(f"/admin/users/{user_id}/factors/{second['id']}", headers=admin_headers())
    assert removed.status == 200
    assert [event[1:] for event in await stream.take(2)] == [
        ("factor_changed", {"factor_id": second["id"], "action": "enrolled"}),
        ("factor_changed", {"factor_id": second["id"], "action": "removed"}),
    ]


async def test_who_may_open_a_stream(events_client):
    no_token = await events_client.get("/sessions/events", headers=API_2024)
    assert (no_token.status, (await no_token.json())["code"]) == (401, "no_authorization")
    garbage = await events_client.get("/sessions/events", headers={**API_2024, "Authorization": "Bearer nonsense"})
    assert (garbage.status, (await garbage.json())["code"]) == (403, "bad_jwt")

    laptop = await sign_up(events_client, "who@example.com", PASSWORD)
    phone = await sign_in(events_client, "who@example.com")
    stream = await open_stream(events_client, laptop)
    before = stream.position
    await events_client.post("/logout?scope=local", headers=bearer(laptop))
    (revoked,) = await stream.take(1)
    await stream.ends()

    ended = await events_client.get("/sessions/events", headers={**API_2024, **bearer(laptop)})
    assert (ended.status, (await ended.json())["code"]) == (403, "session_not_found")
    after_the_end = await events_client.get(
        "/sessions/events", headers={**API_2024, **bearer(laptop), "Last-Event-ID": str(revoked[0])}
    )
    assert (after_the_end.status, (await after_the_end.json())["code"]) == (403, "session_not_found")
    # A client that missed its own revocation still learns of it, then its stream ends.
    missed = await open_stream(events_client, laptop, last_event_id=before)
    assert await missed.take(1) == [revoked]
    await missed.ends()

    for malformed in ("-1", "soon", "12a", str(2**63), "", "null"):
        response = await events_client.get(
            "/sessions/events", headers={**API_2024, **bearer(phone), "Last-Event-ID": malformed}
        )
        assert response.status == 400, malformed  # before reading: a stream would not end
        assert (await response.json())["code"] == "validation_failed"


async def test_a_stream_ends_when_its_token_expires(events_client, admin):
    session = await sign_up(events_client, "expiring@example.com", PASSWORD)
    claims = claims_of(session["access_token"])
    short = jwt.encode({**claims, "exp": int(time.time()) + 1}, JWT_SECRET)
    stream = await open_stream(events_client, {"Authorization": f"Bearer {short}"})
    await stream.ends(seconds=2.5)
    assert (await events_client.get("/sessions/events", headers=bearer({"access_token": short}))).status == 403


async def test_a_killed_listen_connection_is_made_again_and_nothing_is_lost(settings, dsn, admin, aiohttp_client):
    admin.execute("""
        do $$ begin
          if not exists (select from pg_roles where rolname = 'events_listener') then
            create role events_listener login;
          end if;
        end $$
    """)
    client = await aiohttp_client(create_app(replace(settings, db_listen_url=dsn("events_listener"))))
    session = await sign_up(client, "listener@example.com", PASSWORD)
    stream = await open_stream(client, session)
    find = "select pid from pg_stat_activity where usename = 'events_listener' and application_name = %s"
    (killed,) = admin.execute(find, (LISTENER,)).fetchone()

    # The listener cannot come back until the role may log in again: what happens meanwhile is not NOTIFYed to it.
    admin.execute("alter role events_listener nologin")
    try:
        admin.execute("select pg_terminate_backend(%s, 5000)", (killed,))
        first = await (await client.post("/factors", headers=bearer(session), json={"factor_type": "totp"})).json()
        second = await (await client.post("/factors", headers=bearer(session), json={"factor_type": "totp"})).json()
    finally:
        admin.execute("alter role events_listener login")

    caught_up = await stream.take(2, seconds=SERVICE_DEADLINE)
    assert [event[2]["factor_id"] for event in caught_up] == [first["id"], second["id"]]
    (again,) = admin.execute(find, (LISTENER,)).fetchone()
    assert again != killed
    third = await (await client.post("/factors", headers=bearer(session), json={"factor_type": "totp"})).json()
    (live,) = await stream.take(1)
    assert live[2]["factor_id"] == third["id"]
    assert [event[0] for event in [*caught_up, live]] == [row[0] for row in events_of(admin, session["user"]["id"])]


async def test_behind_a_pooler_without_a_listen_url_streams_poll(
    settings, pgbouncer, postgresql, aiohttp_client, admin
):
    pooled = replace(
        settings,
        database_url=pgbouncer.conninfo("authgres_service", postgresql.info.dbname),
        db_listen_url=None,
        events_heartbeat_seconds=0.1,
    )
    client = await aiohttp_client(create_app(pooled))
    assert client.server.app[EVENTS].polling
    laptop = await sign_up(client, "polled@example.com", PASSWORD)
    phone = await sign_in(client, "polled@example.com")
    stream = await open_stream(client, laptop)
    await stream.heartbeat()
    await client.post("/logout?scope=others", headers=bearer(phone))
    assert [event[1:] for event in await stream.take(1)] == [("session_revoked", {"session_id": session_of(laptop)})]
    await stream.ends()
    listeners = "select count(*) from pg_stat_activity where application_name = %s and datname = current_database()"
    assert admin.execute(listeners, (LISTENER,)).fetchone()[0] == 0


async def test_a_stopping_service_ends_its_streams_cleanly(serve, listening):
    process, base = serve("--workers", "1", AUTHGRES_DB_LISTEN_URL=listening.db_listen_url)
    async with aiohttp.ClientSession(base) as client:
        session = await sign_up(client, "stopping@example.com", PASSWORD)
        stream = await open_stream(client, session)
        process.send_signal(signal.SIGTERM)
        await stream.ends(seconds=SERVICE_DEADLINE)
    assert await asyncio.to_thread(process.wait, SERVICE_DEADLINE) == 0


async def test_cors_headers_reach_a_stream(events_client):
    session = await sign_up(events_client, "cors@example.com", PASSWORD)
    origin = "http://localhost:3000"
    preflight = await events_client.options(
        "/sessions/events",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, last-event-id",
        },
    )
    assert "last-event-id" in preflight.headers["Access-Control-Allow-Headers"]
    response = await events_client.get("/sessions/events", headers={"Origin": origin, **bearer(session)})
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Content-Type"] == "text/event-stream"
    response.close()
