"""Provider sign-in in SQL, called as the service role: the state works once, under concurrency on
separate connections too; the first sign-ins of one provider account at once make one user; the prune
removes expired states and keeps live ones."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import psycopg
from psycopg.types.json import Jsonb

from tests.sql.helpers import call

CLAIMS = {"email": "race@example.com", "email_verified": True}


def sign_in(conn, state=None, subject="subject-1", claims=None):
    try:
        return call(
            conn,
            "sign_in_with_identity",
            provider="oidc",
            subject=subject,
            claims=Jsonb(claims or CLAIMS),
            method="oauth" if state else "id_token",
            state=state,
        )
    except psycopg.Error as error:
        return error.sqlstate


def start(conn, **pkce):
    return str(call(conn, "start_provider_flow", provider="oidc", referrer="http://localhost:3000", **pkce))


def test_simultaneous_callbacks_of_one_state_give_one_session(service, admin, dsn):
    state = start(service)
    count = 6
    barrier = Barrier(count)

    def attempt(_):
        with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:
            barrier.wait()
            return sign_in(conn, state)

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(attempt, range(count)))
    assert sorted(isinstance(result, dict) for result in results) == [False] * (count - 1) + [True]
    assert [result for result in results if not isinstance(result, dict)] == ["AUI05"] * (count - 1)
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 0


def test_simultaneous_first_sign_ins_of_one_account_make_one_user(service, admin, dsn):
    count = 4
    barrier = Barrier(count)

    def attempt(_):
        with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:
            barrier.wait()
            return sign_in(conn)

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(attempt, range(count)))
    assert all(isinstance(result, dict) for result in results), results
    assert len({result["user"]["id"] for result in results}) == 1
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1


def test_a_state_is_for_its_provider_and_a_pkce_state_gives_a_code_once(service, admin):
    state = start(service, code_challenge="c" * 43, code_challenge_method="S256")
    assert call(service, "provider_flow", state=state) == {
        "provider": "oidc",
        "referrer": "http://localhost:3000",
        "pkce": True,
        "linking": False,
    }
    other = call(
        service,
        "sign_in_with_identity",
        provider="oidc",
        subject="s",
        claims=Jsonb(CLAIMS),
        method="oauth",
        state=state,
    )
    assert set(other) == {"auth_code", "redirect_to"}
    assert sign_in(service, state) == "AUI05"  # the code was issued: the state is spent
    wrong = start(service)
    try:
        call(
            service,
            "sign_in_with_identity",
            provider="github",
            subject="s",
            claims=Jsonb({}),
            method="oauth",
            state=wrong,
        )
        raise AssertionError("another provider's callback used the state")
    except psycopg.Error as error:
        assert error.sqlstate == "AUI05"


def test_the_prune_removes_expired_states_only(service, admin):
    old, fresh = start(service), start(service)
    admin.execute("update auth.flow_state set created_at = now() - interval '11 minutes' where id = %s", (old,))
    admin.execute("select auth.prune(100)")
    assert [str(row[0]) for row in admin.execute("select id from auth.flow_state").fetchall()] == [fresh]


def test_a_flow_bound_to_a_browser_answers_only_that_browsers_value(service):
    state = start(service, browser_binding="the-browser-value")

    def look(binding):
        try:
            return call(service, "provider_flow", state=state, browser_binding=binding)["provider"]
        except psycopg.Error as error:
            return error.sqlstate

    assert [look(binding) for binding in (None, "", "another-value", "the-browser-value")] == [
        "AUI06",
        "AUI06",
        "AUI06",
        "oidc",
    ]
    # An unbound flow (a link, started by a fetch) answers whatever the browser holds.
    unbound = start(service)
    assert call(service, "provider_flow", state=unbound, browser_binding="any")["provider"] == "oidc"
