"""The service behind PgBouncer in transaction mode, the way most production PostgreSQL is reached:
no server-side prepared statements, no session state, no LISTEN through the pooler. (`make test` also
runs the whole HTTP and client suites so, with AUTHGRES_TEST_POOLER=pgbouncer.)"""

import asyncio
from dataclasses import replace

import pytest

from authgres.app import create_app
from authgres.db import Database
from tests.http.helpers import API_2024, bearer, sign_up
from tests.http.mail import code_in


@pytest.fixture
def pooled(settings, pgbouncer, postgresql):
    """The test settings, connecting through PgBouncer whatever AUTHGRES_TEST_POOLER says."""
    return replace(settings, database_url=pgbouncer.conninfo("authgres_service", postgresql.info.dbname))


async def test_a_pooler_is_recognised_and_prepared_statements_follow_it(pooled, dsn):
    behind = Database(pooled.database_url, min_size=1, max_size=1)
    direct = Database(dsn("authgres_service"), min_size=1, max_size=1)
    forced = Database(pooled.database_url, min_size=1, max_size=1, prepared_statements="on")
    for database in (behind, direct, forced):
        await database.open()
        await database.close()
    assert (behind.behind_pooler, direct.behind_pooler, forced.behind_pooler) == (True, False, True)
    assert behind._connect_kwargs["prepare_threshold"] is None
    assert direct._connect_kwargs["prepare_threshold"] == forced._connect_kwargs["prepare_threshold"] == 5


async def test_hot_paths_keep_working_past_the_prepare_threshold(pooled, aiohttp_client):
    client = await aiohttp_client(create_app(pooled))
    session = await sign_up(client, "pooled@example.com")
    # psycopg prepares a statement on its fifth run; through PgBouncer 1.18 the sixth then failed.
    users = await asyncio.gather(*(client.get("/user", headers=bearer(session)) for _ in range(40)))
    assert [response.status for response in users] == [200] * 40
    for _ in range(8):
        response = await client.post(
            "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
        )
        assert response.status == 200, await response.text()
        session = await response.json()
    signed_in = await client.post(
        "/token?grant_type=password", json={"email": "pooled@example.com", "password": "a good password"}
    )
    assert signed_in.status == 200
    logout = await client.post("/logout?scope=global", headers=bearer(session))
    assert logout.status == 204
    assert (await client.get("/user", headers=bearer(session))).status == 403


async def test_timestamps_are_utc_whatever_the_database_time_zone(pooled, admin, postgresql, aiohttp_client):
    admin.execute(f"alter database {postgresql.info.dbname} set timezone = 'Asia/Tokyo'")
    client = await aiohttp_client(create_app(pooled))
    session = await sign_up(client, "tz@example.com")
    user = await (await client.get("/user", headers=bearer(session))).json()
    assert user["created_at"].endswith(("+00:00", "Z")), user["created_at"]
    assert session["user"]["created_at"].endswith(("+00:00", "Z"))


async def test_the_statement_timeout_bounds_requests_through_the_pooler(pooled, admin, aiohttp_client):
    admin.execute("""
        create function public.slow(event jsonb) returns jsonb language sql
          as $$ select pg_sleep(5); select '{}'::jsonb $$
    """)
    client = await aiohttp_client(
        create_app(replace(pooled, hook_before_user_created="public.slow", db_statement_timeout_ms=300))
    )
    response = await client.post("/signup", headers=API_2024, json={"email": "s@example.org", "password": "a good one"})
    assert (response.status, (await response.json())["code"]) == (504, "hook_timeout")
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_the_mailer_finds_emails_without_listening_through_the_pooler(pooled, smtp, inbox, aiohttp_client):
    mail = replace(pooled, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls="none", mailer_autoconfirm=False)
    client = await aiohttp_client(create_app(mail))
    response = await client.post("/signup", json={"email": "mailed@example.com", "password": "a good password"})
    assert response.status == 200
    message = await inbox.next_to("mailed@example.com")
    verified = await client.post(
        "/verify", json={"type": "signup", "email": "mailed@example.com", "token": code_in(message)}
    )
    assert verified.status == 200


async def test_a_listen_url_wakes_the_mailer_directly(pooled, dsn, smtp, inbox, aiohttp_client):
    mail = replace(
        pooled,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_tls="none",
        mailer_autoconfirm=False,
        mailer_sweep_seconds=3600,  # only a NOTIFY can deliver this email within the test
        db_listen_url=dsn("authgres_service"),
    )
    client = await aiohttp_client(create_app(mail))
    response = await client.post("/signup", json={"email": "woken@example.com", "password": "a good password"})
    assert response.status == 200
    assert (await inbox.next_to("woken@example.com"))["To"] == "woken@example.com"
