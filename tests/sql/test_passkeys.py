"""Passkey ceremonies in SQL, called as the service role: a challenge is spent once, by the verification
that records its result, even by 20 connections at once; what the service verified is still checked
against the stored challenge, the passkey's user and its signature counter."""

import os
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import psycopg
import pytest

from tests.sql.helpers import call, sign_up


@pytest.fixture
def passkey(service, admin):
    """A user's passkey (its public key is never read here: the service checks signatures)."""
    session = sign_up(service, "holder@example.com")
    credential_id = os.urandom(32)
    admin.execute(
        "insert into auth.webauthn_credentials (user_id, credential_id, public_key) values (%s, %s, %s)",
        (session["user"]["id"], credential_id, b"cose"),
    )
    return session["user"]["id"], credential_id


def started(service, admin):
    """A sign-in challenge: its id and the random challenge the authenticator would sign."""
    options = call(service, "passkey_authentication_options")
    challenge = admin.execute(
        "select challenge from auth.webauthn_challenges where id = %s", (options["challenge_id"],)
    )
    return options["challenge_id"], bytes(challenge.fetchone()[0])


def sign_in(conn, challenge_id, challenge, credential_id, user_id, sign_count=1):
    try:
        return call(
            conn,
            "sign_in_with_passkey",
            challenge_id=challenge_id,
            challenge=challenge,
            credential_id=credential_id,
            user_handle=str(user_id).encode(),
            sign_count=sign_count,
            backed_up=False,
        )
    except psycopg.Error as error:
        return error.sqlstate


def test_twenty_connections_spending_one_challenge_give_one_session(service, admin, dsn, passkey):
    user_id, credential_id = passkey
    challenge_id, challenge = started(service, admin)
    count = 20
    start = Barrier(count)

    def attempt(_):
        with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:
            start.wait()
            return sign_in(conn, challenge_id, challenge, credential_id, user_id)

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(attempt, range(count)))
    sessions = [result for result in results if isinstance(result, dict)]
    assert len(sessions) == 1 and sessions[0]["user"]["id"] == user_id
    assert sorted(result for result in results if not isinstance(result, dict)) == ["AUW01"] * (count - 1)
    passkey_sessions = admin.execute(
        "select count(*) from auth.mfa_amr_claims where authentication_method = 'passkey'"
    ).fetchone()[0]
    assert passkey_sessions == 1
    assert admin.execute("select count(*) from auth.webauthn_challenges").fetchone()[0] == 0


def test_another_challenge_signed_is_refused_and_leaves_this_one(service, admin, passkey):
    user_id, credential_id = passkey
    challenge_id, challenge = started(service, admin)
    assert sign_in(service, challenge_id, os.urandom(32), credential_id, user_id) == "AUW03"
    assert sign_in(service, challenge_id, challenge, credential_id, user_id)["user"]["id"] == user_id


def test_another_users_handle_or_an_unknown_credential_is_refused(service, admin, passkey):
    user_id, credential_id = passkey
    other = sign_up(service, "other@example.com")["user"]["id"]
    for credential, handle in ((credential_id, other), (os.urandom(32), user_id)):
        challenge_id, challenge = started(service, admin)
        assert sign_in(service, challenge_id, challenge, credential, handle) == "AUW03"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 2  # the sign-ups'


def test_a_counter_that_goes_back_is_refused_committed_and_audited(service, admin, passkey):
    user_id, credential_id = passkey
    challenge_id, challenge = started(service, admin)
    assert "access_token" in sign_in(service, challenge_id, challenge, credential_id, user_id, sign_count=7)
    challenge_id, challenge = started(service, admin)
    refused = sign_in(service, challenge_id, challenge, credential_id, user_id, sign_count=7)
    assert refused == {"error": "AUW03", "message": "Credential verification failed"}
    # Committed: the challenge is spent and the refusal on record; the counter stays.
    assert admin.execute("select count(*) from auth.webauthn_challenges").fetchone()[0] == 0
    assert admin.execute("select sign_count from auth.webauthn_credentials").fetchone()[0] == 7
    traits = admin.execute(
        "select payload -> 'traits' from auth.audit_log_entries "
        "where payload ->> 'action' = 'passkey_sign_count_regression'"
    ).fetchone()[0]
    assert traits["stored_sign_count"] == 7 and traits["sign_count"] == 7


def test_an_authenticator_without_a_counter_stays_at_zero(service, admin, passkey):
    user_id, credential_id = passkey
    for _ in range(2):
        challenge_id, challenge = started(service, admin)
        assert "access_token" in sign_in(service, challenge_id, challenge, credential_id, user_id, sign_count=0)
