"""MFA over HTTP: recovery codes, replays, brute force, assurance-level rules, email second step."""

import asyncio
import base64
import hashlib
import time

import pyotp

from tests.http.helpers import API_2024, bearer, sign_up
from tests.http.mail import code_in

PASSWORD = "a good password"


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


async def password_session(client, email):
    response = await client.post("/token?grant_type=password", json={"email": email, "password": PASSWORD})
    assert response.status == 200
    return await response.json()


async def enrolled_and_verified(client, email="mfa@example.com"):
    session = await sign_up(client, email, PASSWORD)
    factor = await (await client.post("/factors", json={"factor_type": "totp"}, headers=bearer(session))).json()
    challenge = await (await client.post(f"/factors/{factor['id']}/challenge", headers=bearer(session))).json()
    response = await client.post(
        f"/factors/{factor['id']}/verify",
        headers=bearer(session),
        json={"challenge_id": challenge["id"], "code": code_at(factor["totp"]["secret"])},
    )
    verified = await response.json()
    assert response.status == 200, verified
    return verified, factor


async def challenge_of(client, session, factor):
    response = await client.post(f"/factors/{factor['id']}/challenge", headers=bearer(session))
    return (await response.json())["id"]


async def verify(client, session, factor, challenge_id, code):
    return await client.post(
        f"/factors/{factor['id']}/verify",
        headers={**API_2024, **bearer(session)},
        json={"challenge_id": challenge_id, "code": code},
    )


async def test_recovery_codes_are_shown_once_work_once_and_are_stored_hashed(client, admin):
    verified, factor = await enrolled_and_verified(client)
    codes = verified["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = [bytes(row[0]) for row in admin.execute("select code_digest from auth.mfa_recovery_codes")]
    assert sorted(stored) == sorted(hashlib.sha256(code.encode()).digest() for code in codes)
    assert all(code not in str(row) for row in admin.execute("select * from auth.mfa_recovery_codes") for code in codes)

    second_device = await password_session(client, "mfa@example.com")
    response = await verify(
        client, second_device, factor, await challenge_of(client, second_device, factor), codes[0].upper()
    )  # typed in capitals: still accepted
    assert response.status == 200
    claims = admin.execute(
        "select auth.access_token_claims(%s)", ((await response.json())["access_token"],)
    ).fetchone()[0]
    assert claims["aal"] == "aal2" and claims["amr"][0]["method"] == "mfa/recovery_code"

    third_device = await password_session(client, "mfa@example.com")
    response = await verify(client, third_device, factor, await challenge_of(client, third_device, factor), codes[0])
    assert response.status == 422
    assert (await response.json())["code"] == "mfa_verification_failed"
    remaining = await client.get("/factors/recovery_codes", headers=bearer(verified))
    assert await remaining.json() == {"remaining": 9}
    actions = [a for (a,) in admin.execute("select payload->>'action' from auth.audit_log_entries")]
    assert actions.count("recovery_code_used") == 1


async def test_regenerating_recovery_codes_kills_the_old_set(client, admin):
    verified, factor = await enrolled_and_verified(client)
    old = verified["recovery_codes"]
    response = await client.post("/factors/recovery_codes", headers=bearer(verified))
    new = (await response.json())["recovery_codes"]
    assert len(new) == 10 and not set(old) & set(new)
    device = await password_session(client, "mfa@example.com")
    refused = await verify(client, device, factor, await challenge_of(client, device, factor), old[1])
    assert refused.status == 422
    accepted = await verify(client, device, factor, await challenge_of(client, device, factor), new[1])
    assert accepted.status == 200
    aal1 = await password_session(client, "mfa@example.com")
    response = await client.post("/factors/recovery_codes", headers={**API_2024, **bearer(aal1)})
    assert (response.status, (await response.json())["code"]) == (403, "insufficient_aal")


async def test_a_totp_code_works_once_per_time_step(client, admin):
    session = await sign_up(client, "mfa@example.com", PASSWORD)
    factor = await (await client.post("/factors", json={"factor_type": "totp"}, headers=bearer(session))).json()
    used = code_at(factor["totp"]["secret"])
    assert (await verify(client, session, factor, await challenge_of(client, session, factor), used)).status == 200

    device = await password_session(client, "mfa@example.com")  # signing in on another device at once
    challenge = await challenge_of(client, device, factor)
    response = await verify(client, device, factor, challenge, used)

    # Refused as before, but with an answer the user can act on; not counted as a wrong guess.
    assert (response.status, (await response.json())["code"]) == (422, "mfa_code_already_used")
    assert admin.execute("select attempts from auth.mfa_challenges where id = %s", (challenge,)).fetchone()[0] == 0
    wrong = await verify(client, device, factor, challenge, "000000" if used != "000000" else "111111")
    assert (await wrong.json())["code"] == "mfa_verification_failed"
    response = await verify(client, device, factor, challenge, code_at(factor["totp"]["secret"], 1))
    assert response.status == 200


async def test_wrong_codes_lock_the_challenge(client):
    _verified, factor = await enrolled_and_verified(client)
    device = await password_session(client, "mfa@example.com")
    challenge_id = await challenge_of(client, device, factor)
    for _ in range(5):
        response = await verify(client, device, factor, challenge_id, "000000")
        assert (await response.json())["code"] in ("mfa_verification_failed",)
    right = await verify(client, device, factor, challenge_id, code_at(factor["totp"]["secret"], 1))
    assert (right.status, (await right.json())["code"]) == (422, "mfa_challenge_expired")


async def test_concurrent_wrong_codes_cannot_exceed_the_limit(client, admin):
    _verified, factor = await enrolled_and_verified(client)
    device = await password_session(client, "mfa@example.com")
    challenge_id = await challenge_of(client, device, factor)
    responses = await asyncio.gather(*(verify(client, device, factor, challenge_id, f"{n:06d}") for n in range(20)))
    codes = [(await r.json())["code"] for r in responses]
    assert codes.count("mfa_verification_failed") <= 5
    assert admin.execute("select attempts from auth.mfa_challenges where id = %s", (challenge_id,)).fetchone()[0] == 5
    right = await verify(client, device, factor, challenge_id, code_at(factor["totp"]["secret"], 1))
    assert (await right.json())["code"] == "mfa_challenge_expired"


async def test_expired_challenge(client, admin):
    _verified, factor = await enrolled_and_verified(client)
    device = await password_session(client, "mfa@example.com")
    challenge_id = await challenge_of(client, device, factor)
    admin.execute("update auth.mfa_challenges set expires_at = now() - interval '1 second'")
    response = await verify(client, device, factor, challenge_id, code_at(factor["totp"]["secret"], 1))
    assert (await response.json())["code"] == "mfa_challenge_expired"


async def test_assurance_level_rules(client, admin):
    early = await sign_up(client, "rules@example.com", PASSWORD)
    verified, factor = await enrolled_and_verified(client, "rules2@example.com")
    assert (await client.get("/user", headers=bearer(early))).status == 200  # another user: untouched
    # aal1 sessions of the user that existed before the factor was verified are ended.
    aal1 = await password_session(client, "rules2@example.com")
    response = await client.post("/factors", json={"factor_type": "totp"}, headers={**API_2024, **bearer(aal1)})
    assert (response.status, (await response.json())["code"]) == (403, "insufficient_aal")
    response = await client.delete(f"/factors/{factor['id']}", headers={**API_2024, **bearer(aal1)})
    assert (response.status, (await response.json())["code"]) == (422, "insufficient_aal")
    # Refresh keeps aal2.
    refreshed = await (
        await client.post("/token?grant_type=refresh_token", json={"refresh_token": verified["refresh_token"]})
    ).json()
    claims = admin.execute("select auth.access_token_claims(%s)", (refreshed["access_token"],)).fetchone()[0]
    assert claims["aal"] == "aal2"
    assert [(f["factor_type"], f["status"]) for f in refreshed["user"]["factors"]] == [
        ("totp", "verified"),
        ("recovery_code", "verified"),  # handed out with the first TOTP factor
    ]


async def test_first_verification_ends_the_users_other_aal1_sessions(client):
    session = await sign_up(client, "ends@example.com", PASSWORD)
    other = await password_session(client, "ends@example.com")
    factor = await (await client.post("/factors", json={"factor_type": "totp"}, headers=bearer(session))).json()
    challenge_id = await challenge_of(client, session, factor)
    response = await verify(client, session, factor, challenge_id, code_at(factor["totp"]["secret"]))
    assert response.status == 200
    gone = await client.get("/user", headers={**API_2024, **bearer(other)})
    assert (gone.status, (await gone.json())["code"]) == (403, "session_not_found")


async def test_anonymous_users_cannot_enrol(client):
    anonymous = await (await client.post("/signup", json={})).json()
    response = await client.post("/factors", json={"factor_type": "totp"}, headers={**API_2024, **bearer(anonymous)})
    assert (response.status, (await response.json())["code"]) == (403, "no_authorization")


async def test_friendly_names_are_unique_per_user(client):
    session = await sign_up(client, "names@example.com", PASSWORD)
    for expected in (200, 422):
        response = await client.post(
            "/factors", json={"factor_type": "totp", "friendly_name": "laptop"}, headers={**API_2024, **bearer(session)}
        )
        assert response.status == expected
    assert (await response.json())["code"] == "mfa_factor_name_conflict"


async def test_admin_factor_routes_refuse_a_user_token_and_audit(client, admin):
    verified, factor = await enrolled_and_verified(client)
    user_id = verified["user"]["id"]
    for method, path in (
        ("GET", f"/admin/users/{user_id}/factors"),
        ("DELETE", f"/admin/users/{user_id}/factors/{factor['id']}"),
    ):
        response = await client.request(method, path, headers={**API_2024, **bearer(verified)})
        assert (response.status, (await response.json())["code"]) == (403, "not_admin")
    response = await client.get("/admin/users/not-a-uuid/factors", headers={**API_2024, **bearer(verified)})
    assert response.status == 404
    assert admin.execute("select factor_type from auth.mfa_factors order by created_at").fetchall() == [
        ("totp",),
        ("recovery_code",),
    ]


async def test_factor_secrets_are_not_in_responses_after_enrolment(client, admin):
    verified, factor = await enrolled_and_verified(client)
    secret = base64.b32decode(factor["totp"]["secret"] + "=" * (-len(factor["totp"]["secret"]) % 8))
    assert bytes(admin.execute("select secret from auth.mfa_factors").fetchone()[0]) == secret
    me = await (await client.get("/user", headers=bearer(verified))).text()
    assert factor["totp"]["secret"] not in me and "secret" not in me


async def test_email_second_step_raises_the_session_to_aal2(make_client, mail_settings, inbox, admin):
    client = await make_client(**{**vars(mail_settings), "mfa_email": "required", "mailer_autoconfirm": True})
    await client.post("/signup", json={"email": "two@example.com", "password": PASSWORD})
    session = await password_session(client, "two@example.com")
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    assert claims["aal"] == "aal1"
    email_factor = next(f for f in session["user"]["factors"] if f["factor_type"] == "email")
    message = await inbox.next_to("two@example.com")
    assert message["Subject"] == "Your sign-in code"
    response = await client.post(
        f"/factors/{email_factor['id']}/verify", headers=bearer(session), json={"code": code_in(message)}
    )
    raised = await response.json()
    assert response.status == 200, raised
    claims = admin.execute("select auth.access_token_claims(%s)", (raised["access_token"],)).fetchone()[0]
    assert claims["aal"] == "aal2"
    assert [entry["method"] for entry in claims["amr"]] == ["email", "password"]


async def test_strict_email_second_step_gives_no_session_before_the_code(make_client, mail_settings, inbox, admin):
    client = await make_client(
        **{**vars(mail_settings), "mfa_email": "required", "mfa_email_strict": True, "mailer_autoconfirm": True}
    )
    await client.post("/signup", json={"email": "strict@example.com", "password": PASSWORD})
    sessions_before = admin.execute("select count(*) from auth.sessions").fetchone()[0]
    response = await client.post(
        "/token?grant_type=password", json={"email": "strict@example.com", "password": PASSWORD}
    )
    pending = await response.json()
    assert response.status == 200
    assert pending["twofa_required"] is True and pending["methods"] == ["email"]
    assert "access_token" not in pending and "refresh_token" not in pending
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == sessions_before
    code = code_in(await inbox.next_to("strict@example.com"))
    wrong = await client.post(
        "/token?grant_type=twofa",
        headers=API_2024,
        json={"challenge_token": pending["challenge_token"], "code": "not-it"},
    )
    assert (wrong.status, (await wrong.json())["code"]) == (422, "mfa_verification_failed")
    response = await client.post(
        "/token?grant_type=twofa", json={"challenge_token": pending["challenge_token"], "code": code}
    )
    session = await response.json()
    assert response.status == 200, session
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    assert claims["aal"] == "aal2"
    again = await client.post(
        "/token?grant_type=twofa", headers=API_2024, json={"challenge_token": pending["challenge_token"], "code": code}
    )
    assert again.status == 404  # the challenge token is spent


async def test_optional_email_second_step_applies_to_users_who_enrol_it(make_client, mail_settings, inbox, admin):
    client = await make_client(**{**vars(mail_settings), "mfa_email": "optional", "mailer_autoconfirm": True})
    await client.post("/signup", json={"email": "opt@example.com", "password": PASSWORD})
    session = await password_session(client, "opt@example.com")
    assert "factors" not in session["user"]
    assert admin.execute("select count(*) from auth.email_outbox").fetchone()[0] == 0
    enrolled = await client.post("/factors", json={"factor_type": "email"}, headers=bearer(session))
    factor = await enrolled.json()
    assert (enrolled.status, factor["type"]) == (200, "email")
    later = await password_session(client, "opt@example.com")
    assert [f["factor_type"] for f in later["user"]["factors"]] == ["email"]
    code = code_in(await inbox.next_to("opt@example.com"))
    response = await client.post(f"/factors/{factor['id']}/verify", headers=bearer(later), json={"code": code})
    assert response.status == 200


async def test_two_devices_verifying_at_once_get_answers_not_a_deadlock(client):
    # Each verification locks its own session, and the one that succeeds ends the other's (aal1):
    # the user is locked first, so the second waits for the first instead of deadlocking with it.
    _, factor = await enrolled_and_verified(client)
    devices = [await password_session(client, "mfa@example.com") for _ in range(2)]
    challenges = [await challenge_of(client, device, factor) for device in devices]
    code = code_at(factor["totp"]["secret"], 1)  # the next step: the current one was spent enrolling
    responses = await asyncio.gather(
        *(
            verify(client, device, factor, challenge, code)
            for device, challenge in zip(devices, challenges, strict=True)
        )
    )
    answers = sorted([(response.status, (await response.json()).get("code")) for response in responses], key=str)
    assert answers == [(200, None), (403, "session_not_found")]
