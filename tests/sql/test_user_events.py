"""User events in SQL: every way a session ends emits session_revoked in the transaction that ends it; a
user's events commit in id order (their writers queue on a per-user lock); auth.user_events_since()
authenticates like every endpoint and reads a gapless cursor."""

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


def test_user_events_since_opens_at_the_newest_event_and_resumes_after_any(service, admin):
    laptop = sign_up(service)
    phone = second_session(service, admin, laptop)
    user_id = laptop["user"]["id"]
    call(service, "logout", access_token=phone["access_token"], scope="local")
    (newest,) = admin.execute("select max(id) from auth.user_events where user_id = %s", (user_id,)).fetchone()

    opened = call(service, "user_events_since", access_token=laptop["access_token"])
    claims = claims_of(laptop)
    assert opened == {
        "user_id": user_id,
        "session_id": claims["session_id"],
        "expires_at": claims["exp"],
        "last_id": newest,
        "events": [],
        "more": False,
    }
    call(service, "update_user", access_token=laptop["access_token"], password_hash="$argon2id$new")
    resumed = call(service, "user_events_since", access_token=laptop["access_token"], after=newest)
    assert [(e["kind"], e["data"]) for e in resumed["events"]] == [("password_changed", {})]
    assert set(resumed["events"][0]) == {"id", "user_id", "kind", "data", "created_at"}  # as NOTIFYed
    assert resumed["last_id"] == resumed["events"][0]["id"] and resumed["more"] is False
    everything = call(service, "user_events_since", access_token=laptop["access_token"], after=0)
    assert [e["kind"] for e in everything["events"]] == ["session_revoked", "password_changed"]

    stranger = sign_up(service)
    theirs = call(service, "user_events_since", access_token=stranger["access_token"], after=0)
    assert (theirs["user_id"], theirs["events"], theirs["last_id"]) == (stranger["user"]["id"], [], 0)


def test_user_events_since_reads_a_thousand_at_a_time(service, admin):
    session = sign_up(service)
    admin.execute(
        "select auth._user_event(%s, 'password_changed', jsonb_build_object('n', n)) from generate_series(1, 1001) n",
        (session["user"]["id"],),
    )
    first = call(service, "user_events_since", access_token=session["access_token"], after=0)
    assert (len(first["events"]), first["more"]) == (1000, True)
    rest = call(service, "user_events_since", access_token=session["access_token"], after=first["last_id"])
    assert [e["data"] for e in rest["events"]] == [{"n": 1001}] and rest["more"] is False


def test_an_api_key_reads_without_a_session(service):
    session = sign_up(service)
    key = call(service, "create_api_key", access_token=session["access_token"], name="watcher")["key"]
    opened = call(service, "user_events_since", access_token=key)
    assert (opened["user_id"], opened["session_id"]) == (session["user"]["id"], None)


def test_an_ended_session_reads_up_to_its_end_and_no_further(service, admin):
    laptop = sign_up(service)
    phone = second_session(service, admin, laptop)
    opened = call(service, "user_events_since", access_token=laptop["access_token"])
    call(service, "logout", access_token=phone["access_token"], scope="global")  # both end
    call(service, "update_user", access_token=second_session(service, admin, laptop)["access_token"], data="{}")
    call(
        service,
        "admin_update_user",
        admin_token=service_key(service),
        user_id=laptop["user"]["id"],
        attributes="{}",
        password_hash="$argon2id$later",
    )

    caught_up = call(service, "user_events_since", access_token=laptop["access_token"], after=opened["last_id"])
    kinds = [(e["kind"], e["data"].get("session_id")) for e in caught_up["events"]]
    assert kinds[-1] == ("session_revoked", session_id_of(laptop))  # the laptop's own end, and nothing after
    assert len(kinds) <= 2 and caught_up["more"] is False
    for after in (None, caught_up["last_id"]):
        with pytest.raises(psycopg.Error) as refused:
            call(service, "user_events_since", access_token=laptop["access_token"], after=after)
        assert refused.value.sqlstate == "AUJ04"


def test_a_deleted_account_reads_up_to_account_deleted(service, admin):
    session = sign_up(service)
    opened = call(service, "user_events_since", access_token=session["access_token"])
    call(service, "admin_delete_user", admin_token=service_key(service), user_id=session["user"]["id"])
    caught_up = call(service, "user_events_since", access_token=session["access_token"], after=opened["last_id"])
    assert caught_up["events"][-1]["kind"] in ("account_deleted", "session_revoked")
    with pytest.raises(psycopg.Error) as refused:
        call(service, "user_events_since", access_token=session["access_token"])
    assert refused.value.sqlstate == "AUJ03"


def test_a_negative_position_is_refused(service):
    session = sign_up(service)
    with pytest.raises(psycopg.Error) as refused:
        call(service, "user_events_since", access_token=session["access_token"], after=-1)
    assert refused.value.sqlstate == "AUV01"
