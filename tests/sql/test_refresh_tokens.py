"""Refresh-token rotation with replay detection, called as the service role."""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import psycopg
import pytest

from tests.sql.helpers import call, get_user, refresh, sign_up


def live_tokens(admin, session_id):
    return admin.execute(
        "select count(*) from auth.refresh_tokens where session_id = %s and not revoked", (session_id,)
    ).fetchone()[0]


def session_id_of(admin, token):
    row = admin.execute(
        "select session_id from auth.refresh_tokens where token_hash = sha256(convert_to(%s, 'UTF8'))", (token,)
    ).fetchone()
    return row[0] if row else None


def age_rotation(admin, token, seconds):
    """Pretend the token was rotated `seconds` ago (instead of sleeping past the reuse interval)."""
    admin.execute(
        "update auth.refresh_tokens set updated_at = now() - make_interval(secs => %s)"
        " where token_hash = sha256(convert_to(%s, 'UTF8'))",
        (seconds, token),
    )


def test_rotation_issues_a_new_token_and_revokes_the_old(service, admin):
    first = sign_up(service)
    session_id = session_id_of(admin, first["refresh_token"])
    second = refresh(service, first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user"]["id"] == first["user"]["id"]
    assert live_tokens(admin, session_id) == 1
    revoked = admin.execute(
        "select revoked from auth.refresh_tokens where token_hash = sha256(convert_to(%s, 'UTF8'))",
        (first["refresh_token"],),
    ).fetchone()[0]
    assert revoked is True
    third = refresh(service, second["refresh_token"])
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


def test_tokens_are_stored_as_sha256_only(service, admin):
    session = sign_up(service)
    token = session["refresh_token"]
    rows = admin.execute("select r::text from auth.refresh_tokens r").fetchall()
    assert rows and all(token not in row[0] for row in rows)
    stored = admin.execute("select token_hash from auth.refresh_tokens").fetchone()[0]
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()


def test_the_parent_of_the_live_token_gets_the_live_token_back(service, admin):
    first = sign_up(service)
    second = refresh(service, first["refresh_token"])
    age_rotation(admin, first["refresh_token"], 3600)  # long after the reuse interval
    again = refresh(service, first["refresh_token"])
    assert again["refresh_token"] == second["refresh_token"]
    assert live_tokens(admin, session_id_of(admin, second["refresh_token"])) == 1


def test_an_older_token_within_the_reuse_interval_gets_the_live_token(service, admin):
    first = sign_up(service)
    second = refresh(service, first["refresh_token"])
    third = refresh(service, second["refresh_token"])
    assert refresh(service, first["refresh_token"])["refresh_token"] == third["refresh_token"]


def test_replay_after_the_interval_ends_the_session(service, admin):
    first = sign_up(service)
    session_id = session_id_of(admin, first["refresh_token"])
    second = refresh(service, first["refresh_token"])
    third = refresh(service, second["refresh_token"])
    age_rotation(admin, first["refresh_token"], 11)

    outcome = refresh(service, first["refresh_token"])

    assert outcome == {"error": "AUR02", "message": "Invalid Refresh Token: Already Used"}
    assert admin.execute("select count(*) from auth.sessions where id = %s", (session_id,)).fetchone()[0] == 0
    assert refresh(service, third["refresh_token"])["error"] == "AUR01"
    assert get_user(service, third["access_token"])["error"] == "AUJ04"
    actions = admin.execute("select payload->>'action' from auth.audit_log_entries").fetchall()
    assert ("token_revoked",) in actions


def test_replay_can_end_every_session_of_the_user(service, admin):
    admin.execute("update auth.settings set refresh_token_replay_revokes = 'user'")
    laptop = sign_up(service, "both@example.com")
    phone_hash = admin.execute("select encrypted_password from auth.users").fetchone()[0]
    user_id = laptop["user"]["id"]
    phone = call(service, "sign_in_with_password", user_id=user_id, verified_hash=phone_hash)
    refresh(service, refresh(service, laptop["refresh_token"])["refresh_token"])
    age_rotation(admin, laptop["refresh_token"], 60)

    assert refresh(service, laptop["refresh_token"])["error"] == "AUR02"

    assert admin.execute("select count(*) from auth.sessions where user_id = %s", (user_id,)).fetchone()[0] == 0
    assert refresh(service, phone["refresh_token"])["error"] == "AUR01"


@pytest.mark.parametrize(("token", "sqlstate"), [("", "AUR06"), ("short", "AUR06"), ("x" * 43, "AUR01")])
def test_unknown_or_malformed_tokens(service, token, sqlstate):
    assert refresh(service, token)["error"] == sqlstate


def test_banned_user_cannot_refresh(service, admin):
    session = sign_up(service)
    admin.execute("update auth.users set banned_until = now() + interval '1 day'")
    assert refresh(service, session["refresh_token"])["error"] == "AUR05"


def test_session_past_not_after_cannot_refresh(service, admin):
    session = sign_up(service)
    admin.execute("update auth.sessions set not_after = now() - interval '1 second'")
    assert refresh(service, session["refresh_token"])["error"] == "AUR04"


def test_refresh_keeps_session_claims(service, admin):
    first = sign_up(service)
    second = refresh(service, first["refresh_token"])
    claims = [call(admin, "access_token_claims", token=s["access_token"]) for s in (first, second)]
    assert claims[0]["session_id"] == claims[1]["session_id"]
    assert claims[1]["aal"] == "aal1"
    assert [entry["method"] for entry in claims[1]["amr"]] == ["password"]


def test_concurrent_refreshes_of_one_token_all_succeed_with_one_live_token(service, dsn, admin):
    session = sign_up(service)
    session_id = session_id_of(admin, session["refresh_token"])
    parallel = 20
    start = Barrier(parallel)

    def attempt(_):
        with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:
            start.wait()
            return refresh(conn, session["refresh_token"])

    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(attempt, range(parallel)))

    assert all("error" not in result for result in results)
    assert len({result["refresh_token"] for result in results}) == 1
    assert live_tokens(admin, session_id) == 1
    assert (
        admin.execute("select count(*) from auth.refresh_tokens where session_id = %s", (session_id,)).fetchone()[0]
        == 2
    )

    # The chain moves on; the first token, spent twice over and past the interval, is now a replay.
    refresh(service, results[0]["refresh_token"])
    age_rotation(admin, session["refresh_token"], 11)
    assert refresh(service, session["refresh_token"])["error"] == "AUR02"
    assert admin.execute("select count(*) from auth.sessions where id = %s", (session_id,)).fetchone()[0] == 0
