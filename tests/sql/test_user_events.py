"""User events in SQL: every way a session ends emits session_revoked in the transaction that ends it; a
user's events commit in id order (their writers queue on a per-user lock)."""

import base64
import json
import time

import psycopg
import pytest

from tests.conftest import JWT_SECRET
from tests.sql.helpers import call, refresh, sign_up


def events(admin, user_id):
    return admin.execute(
        "select kind, data from auth.user_events where user_id = %s order by id", (user_id,)
    ).fetchall()


def revoked(*sessions):
    return [("session_revoked", {"session_id": session_id_of(session)}) for session in sessions]


def session_id_of(session):
    return claims_of(session)["session_id"]


def claims_of(session):
    segment = session["access_token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def second_session(service, admin, session):
    """Another sign-in of the same user."""
    hash_ = admin.execute("select encrypted_password from auth.users where id = %s", (session["user"]["id"],))
    return call(service, "sign_in_with_password", user_id=session["user"]["id"], verified_hash=hash_.fetchone()[0])


def service_key(service):
    claims = json.dumps({"role": "service_role", "exp": int(time.time()) + 600})
    return service.execute("select auth.sign(%s::json, %s)", (claims, JWT_SECRET)).fetchone()[0]


@pytest.mark.parametrize(
    ("scope", "ended"), [("local", ["laptop"]), ("others", ["phone"]), ("global", ["laptop", "phone"])]
)
def test_each_logout_scope_revokes_what_it_ends(service, admin, scope, ended):
    laptop = sign_up(service)
    sessions = {"laptop": laptop, "phone": second_session(service, admin, laptop)}
    assert call(service, "logout", access_token=laptop["access_token"], scope=scope) == len(ended)
    got = events(admin, laptop["user"]["id"])
    assert sorted(got, key=str) == sorted(revoked(*(sessions[name] for name in ended)), key=str)


def test_ending_one_session_revokes_it(service, admin):
    laptop = sign_up(service)
    phone = second_session(service, admin, laptop)
    call(service, "end_session", access_token=laptop["access_token"], session_id=session_id_of(phone))
    assert events(admin, laptop["user"]["id"]) == revoked(phone)


@pytest.mark.parametrize("revokes", ["session", "user"])
def test_a_replayed_refresh_token_revokes_the_session_or_every_session(service, admin, revokes):
    admin.execute("update auth.settings set refresh_token_replay_revokes = %s", (revokes,))
    laptop = sign_up(service)
    phone = second_session(service, admin, laptop)
    refresh(service, refresh(service, laptop["refresh_token"])["refresh_token"])  # the first is two behind
    admin.execute("update auth.refresh_tokens set updated_at = now() - interval '1 hour'")
    assert refresh(service, laptop["refresh_token"])["error"] == "AUR02"
    expected = revoked(laptop) if revokes == "session" else revoked(laptop, phone)
    assert sorted(events(admin, laptop["user"]["id"]), key=str) == sorted(expected, key=str)


@pytest.mark.parametrize(
    ("setting", "aged"),
    [
        ("sessions_timebox = 60", "created_at = now() - interval '2 minutes'"),
        (
            "sessions_inactivity_timeout = 60",
            "created_at = now() - interval '2 minutes', refreshed_at = now() - interval '2 minutes'",
        ),
    ],
)
def test_a_session_past_its_limits_is_revoked_at_refresh(service, admin, setting, aged):
    admin.execute(f"update auth.settings set {setting}")
    session = sign_up(service)
    admin.execute(f"update auth.sessions set {aged}")
    assert refresh(service, session["refresh_token"])["error"] == "AUR04"
    assert events(admin, session["user"]["id"]) == revoked(session)


def test_a_newer_session_revokes_the_older_at_its_refresh_when_one_is_allowed(service, admin):
    admin.execute("update auth.settings set sessions_single_per_user = true")
    older = sign_up(service)
    second_session(service, admin, older)
    assert refresh(service, older["refresh_token"])["error"] == "AUR04"
    assert events(admin, older["user"]["id"]) == revoked(older)


def test_admin_password_change_and_ban_revoke_and_tell(service, admin):
    session = sign_up(service)
    user_id = session["user"]["id"]
    key = service_key(service)
    call(service, "admin_update_user", admin_token=key, user_id=user_id, attributes="{}", password_hash="$argon2id$x")
    assert events(admin, user_id) == [*revoked(session), ("password_changed", {})]

    again = second_session(service, admin, session)
    call(service, "admin_update_user", admin_token=key, user_id=user_id, attributes="{}", ban_seconds=3600)
    assert events(admin, user_id)[2:] == revoked(again)


def test_a_new_password_revokes_the_other_sessions_then_tells(service, admin):
    laptop = sign_up(service)
    phone = second_session(service, admin, laptop)
    call(service, "update_user", access_token=laptop["access_token"], password_hash="$argon2id$new")
    assert events(admin, laptop["user"]["id"]) == [*revoked(phone), ("password_changed", {})]


@pytest.mark.parametrize("soft", [False, True])
def test_deleting_a_user_revokes_its_sessions(service, admin, soft):
    laptop = sign_up(service)
    phone = second_session(service, admin, laptop)
    user_id = laptop["user"]["id"]
    call(service, "admin_delete_user", admin_token=service_key(service), user_id=user_id, soft=soft)
    kinds = events(admin, user_id)
    assert ("account_deleted", {}) in kinds
    assert sorted((k for k in kinds if k[0] == "session_revoked"), key=str) == sorted(revoked(laptop, phone), key=str)


def test_a_rolled_back_cause_leaves_no_event(service, admin):
    session = sign_up(service)
    with pytest.raises(psycopg.errors.RaiseException), admin.transaction():
        admin.execute("delete from auth.sessions where user_id = %s", (session["user"]["id"],))
        admin.execute("do $$ begin raise exception 'changed my mind'; end $$")
    assert events(admin, session["user"]["id"]) == []


def test_a_users_events_commit_in_the_order_of_their_ids(dsn, service, admin):
    """A second writer of one user's events waits until the first commits, so no later id of that user
    can become visible before an earlier one; another user's writer does not wait."""
    one, other = sign_up(service)["user"]["id"], sign_up(service)["user"]["id"]
    with psycopg.connect(dsn()) as first, psycopg.connect(dsn(), autocommit=True) as second:
        first.execute("select auth._user_event(%s, 'password_changed')", (one,))  # its transaction stays open
        second.execute("set lock_timeout = '200ms'")
        second.execute("select auth._user_event(%s, 'password_changed')", (other,))
        with pytest.raises(psycopg.errors.LockNotAvailable):
            second.execute("select auth._user_event(%s, 'password_changed')", (one,))
        first.commit()
        second.execute("select auth._user_event(%s, 'password_changed')", (one,))
    assert len(events(admin, one)) == 2
