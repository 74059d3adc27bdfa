"""Recovery codes as auth-js's mfa.recoveryCodes uses them (POST/GET/DELETE /factors/recovery-codes,
/regenerate, /verify): a factor of their own, shown once, single-use, never the only factor, locked after
wrong guesses; and the first endpoints (/factors/recovery_codes) on the same codes."""

import asyncio
import re

import pytest

from tests.http.helpers import API_2024, bearer, sign_up
from tests.http.test_mfa import PASSWORD, enrolled_and_verified, password_session

CANONICAL = re.compile(r"[a-km-np-z2-9]{16}")


@pytest.fixture
async def on_request(make_client):
    """A server that hands out recovery codes only when asked, as Supabase does."""
    return await make_client(mfa_recovery_codes_with_first_factor=False)


async def answer(response):
    return response.status, await response.json()


async def error_of(response):
    status, body = await answer(response)
    return status, body.get("error_code", body.get("code"))  # both API versions' error shapes


def grouped(code: str) -> str:
    """A code as a user may type it from a printout: upper case, in groups of four."""
    return "-".join(code[i : i + 4] for i in range(0, 16, 4)).upper()


def claims_of(admin, session):
    return admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]


async def generated(client, session, **body):
    status, codes = await answer(await client.post("/factors/recovery-codes", json=body, headers=bearer(session)))
    assert status == 200, codes
    return codes


async def test_generate_show_verify_regenerate_and_unenroll(on_request, admin):
    client = on_request
    verified, _ = await enrolled_and_verified(client)
    assert "recovery_codes" not in verified  # not with the first factor on this server
    status = client.get("/factors/recovery-codes", headers={**API_2024, **bearer(verified)})
    assert await error_of(await status) == (404, "mfa_factor_not_found")

    laptop = await client.post(
        "/factors", json={"factor_type": "totp", "friendly_name": "laptop"}, headers=bearer(verified)
    )
    assert laptop.status == 200
    taken = await client.post(
        "/factors/recovery-codes", json={"friendly_name": "laptop"}, headers={**API_2024, **bearer(verified)}
    )
    assert await error_of(taken) == (422, "mfa_factor_name_conflict")
    codes = await generated(client, verified, friendly_name="Backup codes")
    assert (codes["type"], codes["friendly_name"], codes["total"]) == ("recovery_code", "Backup codes", 10)
    assert len(set(codes["codes"])) == 10 and all(CANONICAL.fullmatch(code) for code in codes["codes"])
    me = await (await client.get("/user", headers=bearer(verified))).json()
    assert [(f["id"], f["factor_type"], f["status"]) for f in me["factors"] if f["factor_type"] != "totp"] == [
        (codes["id"], "recovery_code", "verified")
    ]
    assert await answer(await client.get("/factors/recovery-codes", headers=bearer(verified))) == (
        200,
        {"id": codes["id"], "type": "recovery_code", "total": 10, "remaining": 10},
    )
    again = await client.post("/factors/recovery-codes", headers={**API_2024, **bearer(verified)})
    assert await error_of(again) == (422, "mfa_verified_factor_exists")

    # A device without the authenticator app: password, then a code as printed.
    other_aal1 = await password_session(client, "mfa@example.com")
    device = await password_session(client, "mfa@example.com")
    status, raised = await answer(
        await client.post(
            "/factors/recovery-codes/verify", json={"code": grouped(codes["codes"][0])}, headers=bearer(device)
        )
    )
    assert status == 200, raised
    claims = claims_of(admin, raised)
    assert claims["aal"] == "aal2" and claims["amr"][0]["method"] == "mfa/recovery_code"
    assert claims["session_id"] == claims_of(admin, device)["session_id"]  # raised in place
    gone = await client.get("/user", headers={**API_2024, **bearer(other_aal1)})
    assert await error_of(gone) == (403, "session_not_found")

    spent = await client.post(
        "/factors/recovery-codes/verify",
        json={"code": codes["codes"][0]},
        headers={**API_2024, **bearer(await password_session(client, "mfa@example.com"))},
    )
    assert await error_of(spent) == (422, "mfa_verification_failed")
    status = await (await client.get("/factors/recovery-codes", headers=bearer(raised))).json()
    assert status["remaining"] == 9

    aal1 = await password_session(client, "mfa@example.com")
    refused = await client.post("/factors/recovery-codes/regenerate", headers={**API_2024, **bearer(aal1)})
    assert await error_of(refused) == (403, "insufficient_aal")
    new = await answer(await client.post("/factors/recovery-codes/regenerate", headers=bearer(raised)))
    assert new[0] == 200 and (new[1]["id"], new[1]["friendly_name"]) == (codes["id"], "Backup codes")
    assert not set(new[1]["codes"]) & set(codes["codes"])
    old = await client.post("/factors/recovery-codes/verify", json={"code": codes["codes"][1]}, headers=bearer(aal1))
    assert await error_of(old) == (422, "mfa_verification_failed")

    refused = await client.delete("/factors/recovery-codes", headers={**API_2024, **bearer(aal1)})
    assert await error_of(refused) == (422, "insufficient_aal")
    assert await answer(await client.delete("/factors/recovery-codes", headers=bearer(raised))) == (
        200,
        {"id": codes["id"]},
    )
    # The session a recovery code raised is aal1 again once the codes are gone.
    refreshed = await (
        await client.post("/token?grant_type=refresh_token", json={"refresh_token": raised["refresh_token"]})
    ).json()
    assert claims_of(admin, refreshed)["aal"] == "aal1"
    assert admin.execute("select count(*) from auth.mfa_recovery_codes").fetchone() == (0,)
    status = await client.get("/factors/recovery-codes", headers={**API_2024, **bearer(verified)})
    assert await error_of(status) == (404, "mfa_factor_not_found")


async def test_a_code_is_spent_once_when_two_devices_race(on_request):
    client = on_request
    verified, _ = await enrolled_and_verified(client)
    code = (await generated(client, verified))["codes"][0]
    devices = [await password_session(client, "mfa@example.com") for _ in range(2)]
    responses = await asyncio.gather(
        *(
            client.post("/factors/recovery-codes/verify", json={"code": code}, headers={**API_2024, **bearer(device)})
            for device in devices
        )
    )
    # The first ends the user's other aal1 sessions, the second's among them.
    assert sorted([await error_of(response) for response in responses], key=str) == [
        (200, None),
        (403, "session_not_found"),
    ]
    status = await (await client.get("/factors/recovery-codes", headers=bearer(verified))).json()
    assert status["remaining"] == 9


async def test_recovery_codes_never_stand_alone(client, admin):
    session = await sign_up(client, "alone@example.com", PASSWORD)
    refused = await client.post("/factors/recovery-codes", headers={**API_2024, **bearer(session)})
    assert await error_of(refused) == (422, "mfa_recovery_codes_sole_factor")
    regenerate = await client.post("/factors/recovery-codes/regenerate", headers={**API_2024, **bearer(session)})
    assert await error_of(regenerate) == (404, "mfa_factor_not_found")
    assert admin.execute("select count(*) from auth.mfa_factors").fetchone() == (0,)

    # Handed out with the first TOTP factor (the default), and gone with the last factor they back up.
    verified, factor = await enrolled_and_verified(client)
    assert len(verified["recovery_codes"]) == 10
    status = await (await client.get("/factors/recovery-codes", headers=bearer(verified))).json()
    assert (status["total"], status["remaining"]) == (10, 10)
    exists = await client.post("/factors/recovery-codes", headers={**API_2024, **bearer(verified)})
    assert await error_of(exists) == (422, "mfa_verified_factor_exists")
    assert (await client.delete(f"/factors/{factor['id']}", headers=bearer(verified))).status == 200
    assert admin.execute("select count(*) from auth.mfa_factors").fetchone() == (0,)
    assert admin.execute("select count(*) from auth.mfa_recovery_codes").fetchone() == (0,)


async def test_wrong_codes_lock_verification_until_the_codes_are_regenerated(make_client, admin):
    client = await make_client(mfa_max_attempts=3)
    verified, _ = await enrolled_and_verified(client)
    codes = verified["recovery_codes"]
    device = await password_session(client, "mfa@example.com")

    async def attempt(code):
        return await client.post(
            "/factors/recovery-codes/verify", json={"code": code}, headers={**API_2024, **bearer(device)}
        )

    # An empty code is no guess; the right code after two wrong ones clears the count.
    for code in ("", " - ", "wrongwrongwrong2", "wrongwrongwrong3"):
        assert await error_of(await attempt(code)) == (422, "mfa_verification_failed")
    assert (await attempt(codes[0])).status == 200
    device = await password_session(client, "mfa@example.com")
    for _ in range(3):
        assert await error_of(await attempt("wrongwrongwrong4")) == (422, "mfa_verification_failed")
    locked = await attempt(codes[1])
    assert await error_of(locked) == (429, "mfa_recovery_codes_locked")
    assert 0 < int(locked.headers["Retry-After"]) <= 900
    status = await (await client.get("/factors/recovery-codes", headers=bearer(verified))).json()
    assert status["remaining"] == 9  # the right code, refused while locked, is not spent

    new = await answer(await client.post("/factors/recovery-codes/regenerate", headers=bearer(verified)))
    assert (await attempt(new[1]["codes"][0])).status == 200


async def test_switched_off_recovery_codes(make_client, admin):
    no_enroll = await make_client(mfa_recovery_codes_enroll_enabled=False)
    verified, _ = await enrolled_and_verified(no_enroll)
    assert "recovery_codes" not in verified
    refused = await no_enroll.post("/factors/recovery-codes", headers={**API_2024, **bearer(verified)})
    assert await error_of(refused) == (422, "mfa_recovery_codes_enroll_not_enabled")
    assert admin.execute("select factor_type from auth.mfa_factors").fetchall() == [("totp",)]

    no_verify = await make_client(mfa_recovery_codes_verify_enabled=False)
    verified, factor = await enrolled_and_verified(no_verify, "off@example.com")
    code = verified["recovery_codes"][0]
    device = await password_session(no_verify, "off@example.com")
    refused = await no_verify.post(
        "/factors/recovery-codes/verify", json={"code": code}, headers={**API_2024, **bearer(device)}
    )
    assert await error_of(refused) == (422, "mfa_recovery_codes_verify_not_enabled")
    challenge = await (await no_verify.post(f"/factors/{factor['id']}/challenge", headers=bearer(device))).json()
    instead = await no_verify.post(
        f"/factors/{factor['id']}/verify",
        json={"challenge_id": challenge["id"], "code": code},
        headers={**API_2024, **bearer(device)},
    )
    assert await error_of(instead) == (422, "mfa_verification_failed")
    status = await (await no_verify.get("/factors/recovery-codes", headers=bearer(verified))).json()
    assert status["remaining"] == 10


async def test_the_first_endpoints_and_bad_requests(client, admin):
    verified, _ = await enrolled_and_verified(client)
    recovery = next(f for f in verified["user"]["factors"] if f["factor_type"] == "recovery_code")
    challenge = await client.post(f"/factors/{recovery['id']}/challenge", headers={**API_2024, **bearer(verified)})
    assert await error_of(challenge) == (400, "validation_failed")
    assert await answer(await client.get("/factors/recovery_codes", headers=bearer(verified))) == (
        200,
        {"remaining": 10},
    )
    status, replaced = await answer(await client.post("/factors/recovery_codes", headers=bearer(verified)))
    assert status == 200 and len(replaced["recovery_codes"]) == 10
    assert not set(replaced["recovery_codes"]) & set(verified["recovery_codes"])
    assert (await client.delete(f"/factors/{recovery['id']}", headers=bearer(verified))).status == 200
    assert await answer(await client.get("/factors/recovery_codes", headers=bearer(verified))) == (
        200,
        {"remaining": 0},
    )

    before = admin.execute("select count(*) from auth.rate_limits").fetchone()
    headers = {**API_2024, **bearer(verified)}
    for body, expected in (
        ({"code": 12345678}, (400, "bad_json")),
        ({"code": "abcd\u0000efgh"}, (400, "validation_failed")),
        ({"code": "x" * 100_000}, (400, "validation_failed")),
        ([], (400, "bad_json")),
    ):
        response = await client.post("/factors/recovery-codes/verify", json=body, headers=headers)
        assert await error_of(response) == expected, body
    response = await client.post("/factors/recovery-codes", json={"friendly_name": 7}, headers=headers)
    assert await error_of(response) == (400, "bad_json")
    assert admin.execute("select count(*) from auth.rate_limits").fetchone() == before

    anonymous = await (await client.post("/signup", json={})).json()
    for method, path in (
        ("GET", "/factors/recovery-codes"),
        ("POST", "/factors/recovery-codes"),
        ("POST", "/factors/recovery-codes/regenerate"),
        ("POST", "/factors/recovery-codes/verify"),
        ("DELETE", "/factors/recovery-codes"),
    ):
        response = await client.request(method, path, headers={**API_2024, **bearer(anonymous)})
        assert await error_of(response) == (403, "no_authorization"), path
        response = await client.request(method, path, headers=API_2024)
        assert response.status == 401, path
