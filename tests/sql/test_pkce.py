"""PKCE flows in SQL, called as the service role: the auth code a followed link issues, and its exchange
under concurrency on separate connections."""

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.sql.helpers import call

VERIFIER = "v" * 20 + "-._~" + "0123456789" * 3
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture
def emailing(service, settings):
    service.execute(
        "select auth.configure(%s, null)", (Jsonb({**settings.sql_settings(), "mailer_autoconfirm": False}),)
    )
    return service


def followed(conn, admin, address: str) -> str:
    """Sends a PKCE magic link and follows it: the auth code."""
    call(conn, "send_magic_link", email=address, code_challenge=CHALLENGE, code_challenge_method="S256")
    token_hash = admin.execute(
        "select payload->>'token_hash' from auth.email_outbox where to_address = %s order by id desc", (address,)
    ).fetchone()[0]
    assert token_hash.startswith("pkce_")
    outcome = call(conn, "verify_email_token", type="email", token_hash=token_hash, link=True)
    assert set(outcome) == {"auth_code", "redirect_to", "verification_type"}, outcome
    return str(outcome["auth_code"])


def exchange(conn, code: str, verifier: str = VERIFIER):
    try:
        return call(conn, "exchange_auth_code", auth_code=code, code_verifier=verifier)
    except psycopg.Error as error:
        return error.sqlstate


def test_simultaneous_exchanges_of_one_code_give_one_session(emailing, admin, dsn):
    code = followed(emailing, admin, "race@example.com")
    count = 6
    start = Barrier(count)

    def attempt(_):
        with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:
            start.wait()
            return exchange(conn, code)

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(attempt, range(count)))
    assert sorted(isinstance(result, dict) for result in results) == [False] * (count - 1) + [True]
    assert [result for result in results if not isinstance(result, dict)] == ["AUF01"] * (count - 1)
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1


def test_a_refused_exchange_changes_nothing(emailing, admin):
    code = followed(emailing, admin, "careful@example.com")
    assert exchange(emailing, code, "w" * 43) == "AUF03"
    assert exchange(emailing, "", VERIFIER) == "AUV01"
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 1
    assert "access_token" in exchange(emailing, code)


def test_only_the_digest_of_the_code_is_kept(emailing, admin):
    code = followed(emailing, admin, "digest@example.com")
    row = admin.execute("select to_jsonb(f)::text from auth.flow_state f").fetchone()[0]
    assert code not in row
    digest = admin.execute("select auth_code_digest from auth.flow_state").fetchone()[0]
    assert bytes(digest) == hashlib.sha256(code.encode()).digest()


def test_a_link_followed_twice_issues_no_second_code(emailing, admin):
    followed(emailing, admin, "once@example.com")
    token_hash = admin.execute("select payload->>'token_hash' from auth.email_outbox").fetchone()[0]
    again = call(emailing, "verify_email_token", type="email", token_hash=token_hash, link=True)
    assert again["error"] == "AUO01"
