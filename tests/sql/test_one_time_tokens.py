"""Emailed codes under concurrency, called as the service role on separate connections."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.sql.helpers import call


@pytest.fixture
def emailing(service, settings):
    service.execute(
        "select auth.configure(%s, null)", (Jsonb({**settings.sql_settings(), "mailer_autoconfirm": False}),)
    )
    return service


def issued_code(admin, address):
    return admin.execute(
        "select payload->>'token' from auth.email_outbox where to_address = %s order by id desc", (address,)
    ).fetchone()[0]


def verify(conn, address, code):
    return call(conn, "verify_email_token", type="email", email=address, code=code)


def in_parallel(dsn, count, work):
    start = Barrier(count)

    def attempt(index):
        with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:
            start.wait()
            return work(conn, index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(attempt, range(count)))


def test_two_simultaneous_verifications_of_one_code_give_one_session(emailing, admin, dsn):
    call(emailing, "send_magic_link", email="race@example.com")
    code = issued_code(admin, "race@example.com")
    results = in_parallel(dsn, 2, lambda conn, _: verify(conn, "race@example.com", code))
    assert sorted("access_token" in result for result in results) == [False, True]
    assert next(r for r in results if "error" in r)["error"] == "AUO01"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1


def test_concurrent_wrong_guesses_cannot_exceed_the_attempt_limit(emailing, admin, dsn):
    call(emailing, "send_magic_link", email="brute@example.com")
    code = issued_code(admin, "brute@example.com")
    wrong = [f"{(int(code) + n) % 1000000:06d}" for n in range(1, 21)]
    results = in_parallel(dsn, 20, lambda conn, i: verify(conn, "brute@example.com", wrong[i]))
    assert all(result["error"] == "AUO01" for result in results)
    assert admin.execute("select count(*) from auth.one_time_tokens").fetchone()[0] == 0
    assert verify(emailing, "brute@example.com", code)["error"] == "AUO01"


def test_concurrent_wrong_guesses_are_all_counted(emailing, admin, dsn):
    admin.execute("update auth.settings set mailer_otp_max_attempts = 25")
    call(emailing, "send_magic_link", email="count@example.com")
    code = issued_code(admin, "count@example.com")
    wrong = [f"{(int(code) + n) % 1000000:06d}" for n in range(1, 21)]
    in_parallel(dsn, 20, lambda conn, i: verify(conn, "count@example.com", wrong[i]))
    assert admin.execute("select attempts from auth.one_time_tokens").fetchone()[0] == 20
    assert "access_token" in verify(emailing, "count@example.com", code)


def test_claims_by_concurrent_mailers_are_disjoint(emailing, admin, dsn):
    for n in range(30):
        call(emailing, "send_magic_link", email=f"c{n}@example.com")
    claimed = in_parallel(
        dsn,
        2,
        lambda conn, _: [row[0] for row in conn.execute("select id from auth.claim_outbox(p_limit => 30)").fetchall()],
    )
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 30
    assert admin.execute("select count(*) from auth.email_outbox where status = 'sending'").fetchone()[0] == 30


def test_a_reissued_token_replaces_the_previous_one(emailing, admin):
    call(emailing, "send_magic_link", email="twice@example.com")
    first = issued_code(admin, "twice@example.com")
    call(emailing, "send_magic_link", email="twice@example.com")
    second = issued_code(admin, "twice@example.com")
    assert admin.execute("select count(*) from auth.one_time_tokens").fetchone()[0] == 1
    if first != second:
        assert verify(emailing, "twice@example.com", first)["error"] == "AUO01"
    assert "access_token" in verify(emailing, "twice@example.com", second)
