"""A database made by the first SQL layout (migrations 0001-0011 as of commit 6e7216a, kept in
first_layout/) upgrades to the current one: its catalog then equals a fresh install's, its data is
untouched, and what its users held before (sessions, refresh tokens, API keys, factors, queued
emails) keeps working with the current service."""

import base64
import json
import time
from dataclasses import replace
from typing import Any

import argon2
import psycopg
import pyotp
import pytest
from psycopg.types.json import Jsonb

from authgres.app import create_app
from authgres.schema import dump_schema
from tests.http.helpers import bearer, claims_of
from tests.http.mail import code_in
from tests.migrations.conftest import FIRST_LAYOUT, applied, conninfo, psql_file, run_migrate

PASSWORD = "a good password"
# Every auth table but the migration ledger, whose rows the upgrade rewrites.
DATA_TABLES = """
    select c.oid::regclass::text from pg_class c
     where c.relnamespace = 'auth'::regnamespace and c.relkind = 'r' and c.relname <> 'schema_migrations'
     order by 1
"""


def call(conn: psycopg.Connection[Any], function: str, **params: Any) -> Any:
    arguments = ", ".join(f"p_{name} => %({name})s" for name in params)
    return conn.execute(f"select auth.{function}({arguments})", params).fetchone()[0]  # type: ignore[index]


def table_contents(dbname: str) -> dict[str, list[Any]]:
    with psycopg.connect(conninfo(dbname), autocommit=True) as conn:
        tables = [name for (name,) in conn.execute(DATA_TABLES).fetchall()]
        return {
            table: [row for (row,) in conn.execute(f"select to_jsonb(t) from {table} t order by 1").fetchall()]
            for table in tables
        }


def first_layout_database(dbname: str, settings: Any) -> dict[str, Any]:
    """Installs the first layout in dbname and uses it the way its service did; returns what users hold."""
    psql_file(dbname, *sorted(FIRST_LAYOUT.glob("*.sql")))
    password_hash = argon2.PasswordHasher(memory_cost=1024, time_cost=1).hash(PASSWORD)
    held: dict[str, Any] = {}
    with psycopg.connect(conninfo(dbname, "authgres_service"), autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        sql_settings = settings.sql_settings()
        call(
            conn,
            "configure",
            settings=Jsonb({**sql_settings, "mailer_autoconfirm": False}),
            jwt_secret=settings.jwt_secret,
        )
        call(conn, "sign_up", email="pending@example.com", password_hash=password_hash, data=Jsonb({}))
        call(conn, "configure", settings=Jsonb({**sql_settings, "mailer_autoconfirm": True}), jwt_secret=None)
        kim = call(conn, "sign_up", email="kim@example.com", password_hash=password_hash, data=Jsonb({"plan": "pro"}))
        factor = call(
            conn, "enroll_factor", access_token=kim["access_token"], factor_type="totp", friendly_name="phone"
        )
        with psycopg.connect(conninfo(dbname), autocommit=True) as superuser:
            raw = superuser.execute("select secret from auth.mfa_factors where id = %s", (factor["id"],)).fetchone()
        held["totp_secret"] = base64.b32encode(raw[0]).decode()  # type: ignore[index]
        challenge = call(conn, "challenge_factor", access_token=kim["access_token"], factor_id=factor["id"])
        held["aal2"] = call(
            conn,
            "verify_factor",
            access_token=kim["access_token"],
            factor_id=factor["id"],
            challenge_id=challenge["id"],
            code=pyotp.TOTP(held["totp_secret"]).now(),
        )
        held["api_key"] = call(conn, "create_api_key", access_token=held["aal2"]["access_token"], name="nightly")["key"]
    held["user_id"] = kim["user"]["id"]
    held["factor_id"] = factor["id"]
    return held


@pytest.fixture
def upgraded(empty_database, settings) -> dict[str, Any]:
    dbname = empty_database()
    held = first_layout_database(dbname, settings)
    before = table_contents(dbname)
    result = run_migrate(dbname)
    assert result.returncode == 0, result.stderr
    return {"dbname": dbname, "held": held, "before": before, "applied": applied(result)}


def test_the_upgrade_runs_the_new_migration_and_every_function_file(upgraded):
    assert upgraded["applied"][0] == "0012_adopt_function_files.sql"
    assert "0011_create_auth_schema.sql" not in upgraded["applied"]
    assert "functions/sessions.sql" in upgraded["applied"]


def test_an_upgraded_catalog_equals_a_fresh_install(upgraded, postgresql):
    assert dump_schema(conninfo(upgraded["dbname"])) == dump_schema(conninfo(postgresql.info.dbname))


def test_an_upgrade_leaves_the_data_as_it_was(upgraded):
    after = table_contents(upgraded["dbname"])
    # 0023 made a factor of the recovery codes a user had: the only row an upgrade adds.
    made = [row for row in after["auth.mfa_factors"] if row["factor_type"] == "recovery_code"]
    assert [(row["user_id"], row["friendly_name"], row["status"]) for row in made] == [
        (upgraded["held"]["user_id"], "Recovery codes", "verified")
    ]
    after["auth.mfa_factors"] = [row for row in after["auth.mfa_factors"] if row not in made]
    # Columns added since the first layout are left out: every column it had keeps its values.
    assert {
        table: [{column: row[column] for column in rows[0]} for row in after[table]] if rows else after[table]
        for table, rows in upgraded["before"].items()
    } == upgraded["before"]
    assert len(after["auth.users"]) == 2 and len(after["auth.email_outbox"]) == 1


def test_an_upgraded_ledger_reads_like_a_fresh_one(upgraded, postgresql):
    def ledger(dbname: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(conninfo(dbname), autocommit=True) as conn:
            return conn.execute("select version, checksum from auth.schema_migrations order by 1").fetchall()

    assert ledger(upgraded["dbname"]) == ledger(postgresql.info.dbname)
    assert run_migrate(upgraded["dbname"]).stdout == ""


async def test_what_users_held_before_the_upgrade_keeps_working(upgraded, mail_settings, aiohttp_client, inbox):
    held = upgraded["held"]
    settings = replace(mail_settings, database_url=conninfo(upgraded["dbname"], "authgres_service"))
    client = await aiohttp_client(create_app(settings))

    # An access token issued before the upgrade, and its session's refresh token.
    user = await client.get("/user", headers=bearer(held["aal2"]))
    assert user.status == 200
    assert (await user.json())["user_metadata"]["plan"] == "pro"
    refreshed = await client.post(
        "/token?grant_type=refresh_token", json={"refresh_token": held["aal2"]["refresh_token"]}
    )
    assert refreshed.status == 200
    session = await refreshed.json()
    assert claims_of(session["access_token"])["aal"] == "aal2"
    assert session["user"]["id"] == held["user_id"]

    # The API key.
    by_key = await client.get("/user", headers={"X-Api-Key": held["api_key"]})
    assert by_key.status == 200
    assert (await by_key.json())["id"] == held["user_id"]

    # The password and the TOTP factor (the next time step: the current one was spent before).
    signed_in = await client.post("/token?grant_type=password", json={"email": "kim@example.com", "password": PASSWORD})
    assert signed_in.status == 200
    aal1 = await signed_in.json()
    challenge = await (await client.post(f"/factors/{held['factor_id']}/challenge", headers=bearer(aal1))).json()
    verified = await client.post(
        f"/factors/{held['factor_id']}/verify",
        headers=bearer(aal1),
        json={"challenge_id": challenge["id"], "code": pyotp.TOTP(held["totp_secret"]).at(time.time() + 30)},
    )
    assert verified.status == 200, await verified.text()

    # A recovery code handed out then (shown in groups of four, stored so), typed as it is shown now.
    code = held["aal2"]["recovery_codes"][0]
    assert len(code) == 19 and code.count("-") == 3
    aal1 = await (
        await client.post("/token?grant_type=password", json={"email": "kim@example.com", "password": PASSWORD})
    ).json()
    recovered = await client.post(
        "/factors/recovery-codes/verify", headers=bearer(aal1), json={"code": code.replace("-", "").upper()}
    )
    assert recovered.status == 200, await recovered.text()
    assert claims_of((await recovered.json())["access_token"])["aal"] == "aal2"
    status = await (await client.get("/factors/recovery-codes", headers=bearer(aal1))).json()
    assert (status["total"], status["remaining"]) == (10, 9)

    # The confirmation email queued before the upgrade is delivered, and its code confirms.
    message = await inbox.next_to("pending@example.com")
    confirmed = await client.post(
        "/verify", json={"type": "signup", "email": "pending@example.com", "token": code_in(message)}
    )
    assert confirmed.status == 200
    assert json.loads(await confirmed.text())["user"]["email_confirmed_at"]


async def test_a_replayed_refresh_token_from_before_the_upgrade_is_still_caught(upgraded, settings, aiohttp_client):
    held = upgraded["held"]
    client = await aiohttp_client(
        create_app(replace(settings, database_url=conninfo(upgraded["dbname"], "authgres_service")))
    )
    token = held["aal2"]["refresh_token"]
    first = await (await client.post("/token?grant_type=refresh_token", json={"refresh_token": token})).json()
    await client.post("/token?grant_type=refresh_token", json={"refresh_token": first["refresh_token"]})
    with psycopg.connect(conninfo(upgraded["dbname"]), autocommit=True) as conn:
        conn.execute("update auth.refresh_tokens set updated_at = updated_at - interval '1 minute'")

    replayed = await client.post("/token?grant_type=refresh_token", json={"refresh_token": token})

    assert replayed.status == 400
    assert (await replayed.json())["error_code"] == "refresh_token_already_used"
