"""Session listing and revocation, session limits, and per-user API keys."""

import base64
import hashlib

from tests.http.helpers import API_2024, bearer, sign_up

PASSWORD = "a good password"


async def sign_in(client, email):
    response = await client.post(
        "/token?grant_type=password",
        headers={"User-Agent": "second-device"},
        json={"email": email, "password": PASSWORD},
    )
    return await response.json()


async def test_two_devices_listed_and_one_ended(client):
    laptop = await sign_up(client, "dev@example.com", PASSWORD)
    phone = await sign_in(client, "dev@example.com")
    listed = await (await client.get("/sessions", headers=bearer(laptop))).json()
    assert len(listed) == 2
    assert [s["current"] for s in listed] == [False, True]  # newest first: the phone's, then this one
    assert listed[0]["user_agent"] == "second-device" and listed[0]["aal"] == "aal1"

    response = await client.delete(f"/sessions/{listed[0]['id']}", headers=bearer(laptop))
    assert response.status == 200
    gone = await client.get("/user", headers={**API_2024, **bearer(phone)})
    assert (gone.status, (await gone.json())["code"]) == (403, "session_not_found")
    refresh = await client.post(
        "/token?grant_type=refresh_token", headers=API_2024, json={"refresh_token": phone["refresh_token"]}
    )
    assert refresh.status == 400
    assert len(await (await client.get("/sessions", headers=bearer(laptop))).json()) == 1
    missing = await client.delete(f"/sessions/{listed[0]['id']}", headers={**API_2024, **bearer(laptop)})
    assert missing.status == 403


async def test_session_limits_apply_at_refresh(make_client, admin):
    client = await make_client(sessions_timebox=3600, sessions_inactivity_timeout=600)
    boxed = await sign_up(client, "box@example.com", PASSWORD)
    admin.execute("update auth.sessions set created_at = now() - interval '2 hours'")
    response = await client.post(
        "/token?grant_type=refresh_token", headers=API_2024, json={"refresh_token": boxed["refresh_token"]}
    )
    assert (response.status, (await response.json())["code"]) == (400, "session_expired")
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 0

    idle = await sign_in(client, "box@example.com")
    admin.execute(
        "update auth.sessions set refreshed_at = now() - interval '11 minutes', "
        "created_at = now() - interval '11 minutes'"
    )
    response = await client.post(
        "/token?grant_type=refresh_token", headers=API_2024, json={"refresh_token": idle["refresh_token"]}
    )
    body = await response.json()
    assert (response.status, body["code"]) == (400, "session_expired") and "Inactivity" in body["message"]


async def test_single_session_per_user(make_client):
    client = await make_client(sessions_single_per_user=True)
    first = await sign_up(client, "single@example.com", PASSWORD)
    await sign_in(client, "single@example.com")
    response = await client.post(
        "/token?grant_type=refresh_token", headers=API_2024, json={"refresh_token": first["refresh_token"]}
    )
    assert (response.status, (await response.json())["code"]) == (400, "session_expired")


async def test_api_keys_act_as_their_user_until_revoked(client, admin):
    session = await sign_up(client, "script@example.com", PASSWORD)
    created = await (await client.post("/api_keys", json={"name": "nightly export"}, headers=bearer(session))).json()
    key = created["key"]
    assert key.startswith("ag_") and len(base64.urlsafe_b64decode(key[3:] + "=")) == 32  # 256 bits
    assert created["prefix"] == key[:9]
    listed = await (await client.get("/api_keys", headers=bearer(session))).json()
    assert [k["name"] for k in listed] == ["nightly export"] and "key" not in listed[0]

    for headers in ({"X-Api-Key": key}, {"apikey": key}, {"Authorization": f"Bearer {key}"}):
        me = await client.get("/user", headers=headers)
        assert me.status == 200, headers
        assert (await me.json())["email"] == "script@example.com"
    assert admin.execute("select last_used_at is not null from auth.api_keys").fetchone()[0] is True

    stored = admin.execute("select k::text, key_digest from auth.api_keys k").fetchone()
    assert key not in stored[0] and bytes(stored[1]) == hashlib.sha256(key.encode()).digest()

    not_for_keys = await client.post("/api_keys", json={"name": "more"}, headers={**API_2024, "X-Api-Key": key})
    assert (not_for_keys.status, (await not_for_keys.json())["code"]) == (403, "session_required")

    revoked = await client.delete(f"/api_keys/{created['id']}", headers=bearer(session))
    assert revoked.status == 200
    refused = await client.get("/user", headers={**API_2024, "X-Api-Key": key})
    assert (refused.status, (await refused.json())["code"]) == (403, "bad_jwt")
    assert await (await client.get("/api_keys", headers=bearer(session))).json() == []


async def test_expired_api_key_fails(client, admin):
    session = await sign_up(client, "old@example.com", PASSWORD)
    created = await (
        await client.post("/api_keys", json={"name": "short", "expires_in": 60}, headers=bearer(session))
    ).json()
    assert (await client.get("/user", headers={"X-Api-Key": created["key"]})).status == 200
    admin.execute("update auth.api_keys set expires_at = now() - interval '1 second'")
    assert (await client.get("/user", headers={"X-Api-Key": created["key"]})).status == 403
