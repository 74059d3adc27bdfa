"""auth.uid() and friends inside real RLS policies, and auth.authenticate() for non-PostgREST apps."""

import json
import time

import psycopg
import pytest

from tests.conftest import JWT_SECRET
from tests.sql.helpers import call, refresh, sign_up


def test_authenticate_scopes_rows_to_each_user(service, app_conn):
    alice, bob = sign_up(service, "alice@example.com"), sign_up(service, "bob@example.com")
    for person, text in ((alice, "alice's"), (bob, "bob's")):
        with app_conn.transaction():
            claims = app_conn.execute("select auth.authenticate(%s)", (person["access_token"],)).fetchone()[0]
            assert claims["sub"] == person["user"]["id"]
            app_conn.execute("insert into public.notes (body) values (%s)", (text,))

    with app_conn.transaction():
        app_conn.execute("select auth.authenticate(%s)", (alice["access_token"],))
        assert app_conn.execute("select current_user, auth.uid()::text, auth.role()").fetchone() == (
            "authenticated",
            alice["user"]["id"],
            "authenticated",
        )
        assert app_conn.execute("select body from public.notes").fetchall() == [("alice's",)]
        with pytest.raises(psycopg.Error) as raised, app_conn.transaction():
            app_conn.execute("insert into public.notes (owner, body) values (%s, 'forged')", (bob["user"]["id"],))
        assert raised.value.sqlstate == "42501"  # the policy's WITH CHECK refuses it

    # The role and claims ended with the transaction.
    assert app_conn.execute("select current_user, auth.uid()").fetchone() == ("app_login", None)
    app_conn.rollback()


def test_postgrest_style_claims_work_with_the_same_policy(service, admin, dsn, notes):
    alice, bob = sign_up(service, "alice@example.com"), sign_up(service, "bob@example.com")
    admin.execute(
        "insert into public.notes (owner, body) values (%s, 'a'), (%s, 'b')", (alice["user"]["id"], bob["user"]["id"])
    )
    with psycopg.connect(dsn("app_login")) as conn:
        # What PostgREST does per request: claims into request.jwt.claims, then SET LOCAL ROLE.
        conn.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": bob["user"]["id"], "role": "authenticated"}),),
        )
        conn.execute("set local role authenticated")
        assert conn.execute("select body from public.notes").fetchall() == [("b",)]
        assert conn.execute("select auth.jwt() ->> 'role'").fetchone()[0] == "authenticated"
        conn.rollback()
        # PostgREST before v9 set one setting per claim.
        conn.execute("select set_config('request.jwt.claim.sub', %s, true)", (alice["user"]["id"],))
        conn.execute("set local role authenticated")
        assert conn.execute("select body from public.notes").fetchall() == [("a",)]


def test_anon_sees_nothing(service, admin, app_conn):
    alice = sign_up(service, "alice@example.com")
    admin.execute("insert into public.notes (owner, body) values (%s, 'a')", (alice["user"]["id"],))
    admin.execute("grant select on public.notes to anon")
    anon_key = service.execute(
        "select auth.sign(%s::json, %s)", (json.dumps({"role": "anon", "exp": int(time.time()) + 60}), JWT_SECRET)
    ).fetchone()[0]
    with app_conn.transaction():
        app_conn.execute("select auth.authenticate(%s)", (anon_key,))
        assert app_conn.execute("select current_user, auth.uid()").fetchone() == ("anon", None)
        assert app_conn.execute("select count(*) from public.notes").fetchone()[0] == 0


def test_authenticate_rejects_an_expired_token(service, app_conn):
    alice = sign_up(service, "alice@example.com")
    claims = call(app_conn, "access_token_claims", token=alice["access_token"])
    claims["exp"] = int(time.time()) - 1
    expired = service.execute("select auth.sign(%s::json, %s)", (json.dumps(claims), JWT_SECRET)).fetchone()[0]
    with pytest.raises(psycopg.Error) as raised:
        app_conn.execute("select auth.authenticate(%s)", (expired,))
    assert raised.value.sqlstate == "AUJ01"


def test_authenticate_rejects_a_forged_token(service, app_conn):
    alice = sign_up(service, "alice@example.com")
    claims = call(app_conn, "access_token_claims", token=alice["access_token"])
    forged = service.execute(
        "select auth.sign(%s::json, %s)", (json.dumps(claims), "not-the-server-secret-at-all-0123456789")
    ).fetchone()[0]
    with pytest.raises(psycopg.Error) as raised:
        app_conn.execute("select auth.authenticate(%s)", (forged,))
    assert raised.value.sqlstate == "AUJ01"


def test_authenticate_rejects_a_token_whose_session_logged_out(service, app_conn):
    alice = sign_up(service, "alice@example.com")
    assert call(service, "logout", access_token=alice["access_token"], scope="local") == 1
    with pytest.raises(psycopg.Error) as raised:
        app_conn.execute("select auth.authenticate(%s)", (alice["access_token"],))
    assert raised.value.sqlstate == "AUJ04"


def test_authenticate_rejects_a_deleted_user(service, admin, app_conn):
    alice = sign_up(service, "alice@example.com")
    admin.execute("delete from auth.users")
    with pytest.raises(psycopg.Error) as raised:
        app_conn.execute("select auth.authenticate(%s)", (alice["access_token"],))
    assert raised.value.sqlstate == "AUJ03"


def test_a_policy_can_require_aal2(service, admin, app_conn):
    admin.execute("""
        create table public.vault (owner uuid primary key default auth.uid(), secret text not null);
        alter table public.vault enable row level security;
        create policy mfa_only on public.vault
          using (owner = (select auth.uid()) and (select auth.jwt() ->> 'aal') = 'aal2');
        grant select on public.vault to authenticated;
    """)
    alice = sign_up(service, "alice@example.com")
    admin.execute("insert into public.vault values (%s, 'gold')", (alice["user"]["id"],))
    with app_conn.transaction():
        app_conn.execute("select auth.authenticate(%s)", (alice["access_token"],))
        assert app_conn.execute("select count(*) from public.vault").fetchone()[0] == 0
    session_id = call(app_conn, "access_token_claims", token=alice["access_token"])["session_id"]
    admin.execute("update auth.sessions set aal = 'aal2' where id = %s", (session_id,))
    raised = refresh(service, alice["refresh_token"])
    with app_conn.transaction():
        app_conn.execute("select auth.authenticate(%s)", (raised["access_token"],))
        assert app_conn.execute("select secret from public.vault").fetchall() == [("gold",)]


def test_a_script_with_an_api_key_reads_its_own_rows_only(service, admin, app_conn):
    alice, bob = sign_up(service, "alice@example.com"), sign_up(service, "bob@example.com")
    admin.execute(
        "insert into public.notes (owner, body) values (%s, 'a'), (%s, 'b')", (alice["user"]["id"], bob["user"]["id"])
    )
    key = call(service, "create_api_key", access_token=alice["access_token"], name="script")["key"]
    with app_conn.transaction():
        claims = app_conn.execute("select auth.authenticate_api_key(%s)", (key,)).fetchone()[0]
        assert claims["sub"] == alice["user"]["id"] and claims["amr"][0]["method"] == "api_key"
        assert app_conn.execute("select body from public.notes").fetchall() == [("a",)]
    call(service, "revoke_api_key", access_token=alice["access_token"], key_id=claims["api_key_id"])
    with pytest.raises(psycopg.Error) as raised:
        app_conn.execute("select auth.authenticate_api_key(%s)", (key,))
    assert raised.value.sqlstate == "AUJ01"
    app_conn.rollback()
    assert (
        admin.execute(
            "select count(*) from auth.api_keys where key_digest = sha256(%s::bytea)", (key.encode(),)
        ).fetchone()[0]
        == 1
    )


def test_get_users_answers_each_token_in_order(service):
    alice, bob = sign_up(service, "alice@example.com"), sign_up(service, "bob@example.com")
    tokens = [bob["access_token"], "garbage", alice["access_token"], bob["access_token"]]
    answers = service.execute("select auth.get_users(%s::text[])", (tokens,)).fetchone()[0]
    assert [answer.get("id") for answer in answers] == [bob["user"]["id"], None, alice["user"]["id"], bob["user"]["id"]]
    assert answers[1]["error"] == "AUJ01" and "signature is invalid" in answers[1]["message"]
    assert service.execute("select auth.get_users('{}'::text[])").fetchone()[0] == []


def resigned(service, token, **changes):
    """The token's claims with changes, signed with the server's own secret: only the changes are wrong."""
    claims = {**service.execute("select auth._decode_json_segment(split_part(%s, '.', 2))", (token,)).fetchone()[0]}
    claims.update(changes)
    claims = {key: value for key, value in claims.items() if value is not None}
    return service.execute("select auth.sign(%s::json, %s)", (json.dumps(claims), JWT_SECRET)).fetchone()[0]


@pytest.mark.parametrize("audience", ["another-project", ["another-project"], None, 42])
def test_authenticate_refuses_a_token_for_another_audience(service, app_conn, audience):
    alice = sign_up(service, "alice@example.com")
    foreign = resigned(service, alice["access_token"], aud=audience)
    with pytest.raises(psycopg.Error) as raised:
        app_conn.execute("select auth.authenticate(%s)", (foreign,))
    assert raised.value.sqlstate == "AUJ06"


def test_authenticate_accepts_an_audience_list_naming_this_one(service, app_conn):
    alice = sign_up(service, "alice@example.com")
    listed = resigned(service, alice["access_token"], aud=["another-project", "authenticated"])
    with app_conn.transaction():
        assert (
            app_conn.execute("select auth.authenticate(%s) ->> 'sub'", (listed,)).fetchone()[0] == alice["user"]["id"]
        )


def test_authenticate_checks_the_issuer_when_the_token_names_one(service, app_conn):
    alice = sign_up(service, "alice@example.com")
    issuer = service.execute(
        "select auth._decode_json_segment(split_part(%s, '.', 2)) ->> 'iss'", (alice["access_token"],)
    )
    assert issuer.fetchone()[0] == "http://127.0.0.1:9999"  # unset: the API's external URL
    with pytest.raises(psycopg.Error) as raised:
        app_conn.execute(
            "select auth.authenticate(%s)", (resigned(service, alice["access_token"], iss="https://evil"),)
        )
    assert raised.value.sqlstate == "AUJ01"
    app_conn.rollback()
    with app_conn.transaction():  # minted before issuers were set: no iss, still good for its hour
        app_conn.execute("select auth.authenticate(%s)", (resigned(service, alice["access_token"], iss=None),))


def test_client_roles_cannot_verify_tokens_themselves(service, dsn):
    alice = sign_up(service, "alice@example.com")
    with psycopg.connect(dsn()) as conn:
        for role in ("anon", "authenticated"):
            conn.execute(f"set role {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select auth.access_token_claims(%s)", (alice["access_token"],))
            conn.rollback()
