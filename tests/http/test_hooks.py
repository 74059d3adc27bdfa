"""Hooks as SQL functions: custom claims, vetoing new users, and failing or slow hooks."""

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.http.helpers import API_2024, sign_up

HOOKS = """
create or replace function public.add_plan(event jsonb) returns jsonb language sql as $$
  select jsonb_build_object('claims', event->'claims' || jsonb_build_object(
    'plan', 'gold', 'sub', 'someone-else', 'aal', 'aal2'))
$$;
create or replace function public.only_example_org(event jsonb) returns jsonb language sql as $$
  select case when event->'user'->>'email' like '%@example.org' then '{}'::jsonb
              else jsonb_build_object('error', jsonb_build_object('message', 'Sign-ups are for example.org only')) end
$$;
create table public.hook_writes (note text);
grant insert on public.hook_writes to authgres_hook;
create or replace function public.broken(event jsonb) returns jsonb language plpgsql as $$
begin
  insert into public.hook_writes values ('from a broken hook');
  raise exception 'boom';
end $$;
create or replace function public.peek(event jsonb) returns jsonb language plpgsql as $$
begin
  perform count(*) from auth.signing_keys;
  return '{}';
end $$;
create or replace function public.private(event jsonb) returns jsonb language sql as $$ select '{}'::jsonb $$;
revoke execute on function public.private(jsonb) from public;
create or replace function public.slow(event jsonb) returns jsonb language sql as $$
  select pg_sleep(5); select '{}'::jsonb
$$;
"""


@pytest.fixture
def hooks(admin):
    admin.execute(HOOKS)


async def test_custom_access_token_hook_adds_claims_but_not_identity(make_client, hooks, admin, dsn):
    client = await make_client(hook_custom_access_token="public.add_plan")
    session = await sign_up(client, "gold@example.com")
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    assert claims["plan"] == "gold"
    assert claims["sub"] == session["user"]["id"] and claims["aal"] == "aal1"
    with psycopg.connect(dsn()) as conn:  # one transaction: the role and claims end with it
        conn.execute("select auth.authenticate(%s)", (session["access_token"],))
        assert conn.execute("select current_user, auth.jwt() ->> 'plan'").fetchone() == ("authenticated", "gold")


async def test_before_user_created_hook_can_reject(make_client, hooks, admin):
    client = await make_client(hook_before_user_created="public.only_example_org")
    refused = await client.post("/signup", headers=API_2024, json={"email": "x@example.com", "password": "a good one"})
    assert (refused.status, await refused.json()) == (
        400,
        {"code": "validation_failed", "message": "Sign-ups are for example.org only"},
    )
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    allowed = await client.post("/signup", json={"email": "y@example.org", "password": "a good one"})
    assert allowed.status == 200


async def test_a_failing_hook_is_a_clean_error_that_changes_nothing(make_client, hooks, admin):
    client = await make_client(hook_before_user_created="public.broken")
    response = await client.post("/signup", headers=API_2024, json={"email": "z@example.org", "password": "a good one"})
    body = await response.json()
    assert response.status == 500 and body["code"] == "unexpected_failure"
    assert "public.broken" in body["message"] and "boom" in body["message"]
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    assert admin.execute("select count(*) from auth.audit_log_entries").fetchone()[0] == 0
    assert admin.execute("select count(*) from public.hook_writes").fetchone()[0] == 0


async def test_a_slow_hook_times_out_cleanly(make_client, hooks, admin):
    client = await make_client(hook_before_user_created="public.slow", db_statement_timeout_ms=300)
    response = await client.post("/signup", headers=API_2024, json={"email": "s@example.org", "password": "a good one"})
    assert (response.status, (await response.json())["code"]) == (504, "hook_timeout")
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


def test_configuring_a_missing_hook_fails(service, settings):
    with pytest.raises(psycopg.Error) as raised:
        service.execute(
            "select auth.configure(%s, null)",
            (Jsonb({**settings.sql_settings(), "hook_custom_access_token": "public.nope"}),),
        )
    assert raised.value.sqlstate == "AUV01"


LOCKOUT = """
create table public.failed_logins (user_id uuid primary key, failures int not null);
grant select, insert, update on public.failed_logins to authgres_hook;  -- hooks run as authgres_hook
create or replace function public.lock_out(event jsonb) returns jsonb language plpgsql as $$
declare
  v_failures int;
begin
  if not (event->>'valid')::boolean then
    insert into public.failed_logins values ((event->>'user_id')::uuid, 1)
    on conflict (user_id) do update set failures = public.failed_logins.failures + 1;
    return '{"decision": "continue"}';
  end if;
  select failures into v_failures from public.failed_logins where user_id = (event->>'user_id')::uuid;
  if coalesce(v_failures, 0) >= 3 then
    return '{"decision": "reject", "message": "Too many failed attempts", "should_logout_user": true}';
  end if;
  return '{"decision": "continue"}';
end $$;
"""


async def test_password_verification_hook_can_lock_out(make_client, admin):
    admin.execute(LOCKOUT)
    client = await make_client(hook_password_verification_attempt="public.lock_out")
    await sign_up(client, "lock@example.com", "the right one")
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1
    for _ in range(3):
        wrong = await client.post("/token?grant_type=password", json={"email": "lock@example.com", "password": "wrong"})
        assert wrong.status == 400
    assert admin.execute("select failures from public.failed_logins").fetchone()[0] == 3
    refused = await client.post(
        "/token?grant_type=password", headers=API_2024, json={"email": "lock@example.com", "password": "the right one"}
    )
    assert (refused.status, await refused.json()) == (
        400,
        {"code": "validation_failed", "message": "Too many failed attempts"},
    )
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 0  # should_logout_user


SEND_EMAIL = """
create table public.my_outbox (event jsonb not null);
grant insert on public.my_outbox to authgres_hook;
create or replace function public.deliver_my_way(event jsonb) returns jsonb language sql as $$
  insert into public.my_outbox values (event) returning '{}'::jsonb
$$;
"""


async def test_send_email_hook_takes_over_delivery(make_client, admin):
    admin.execute(SEND_EMAIL)
    client = await make_client(hook_send_email="public.deliver_my_way")
    assert (await client.post("/otp", json={"email": "hooked@example.com"})).status == 200
    event = admin.execute("select event from public.my_outbox").fetchone()[0]
    assert event["user"]["email"] == "hooked@example.com"
    assert event["email_data"]["email_action_type"] == "confirmation"
    assert admin.execute("select count(*) from auth.email_outbox").fetchone()[0] == 0
    response = await client.post(
        "/verify", json={"type": "email", "email": "hooked@example.com", "token": event["email_data"]["token"]}
    )
    assert response.status == 200


async def test_hooks_run_as_authgres_hook_and_cannot_read_the_auth_schema(make_client, hooks, admin):
    client = await make_client(hook_before_user_created="public.peek")
    response = await client.post("/signup", json={"email": "peek@example.com", "password": "a good password"})
    assert response.status == 500
    assert (await response.json())["error_code"] == "unexpected_failure"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    admin.execute("grant usage on schema auth to authgres_hook")  # even with usage, no table is readable
    response = await client.post("/signup", json={"email": "peek@example.com", "password": "a good password"})
    assert response.status == 500


def test_a_hook_the_hook_role_cannot_execute_is_refused_at_start(hooks, service, settings):
    with pytest.raises(psycopg.Error) as raised:
        service.execute(
            "select auth.configure(%s, null)",
            (Jsonb({**settings.sql_settings(), "hook_send_email": "public.private"}),),
        )
    assert raised.value.sqlstate == "AUV01"


def test_a_hook_granted_to_the_hook_role_is_accepted(hooks, service, settings, admin):
    admin.execute("grant execute on function public.private(jsonb) to authgres_hook")
    service.execute(
        "select auth.configure(%s, null)", (Jsonb({**settings.sql_settings(), "hook_send_email": "public.private"}),)
    )
