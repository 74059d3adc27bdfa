"""Sign-up, sign-in, refresh, user and logout over HTTP, beyond what the official client shows."""

import asyncio
import ipaddress

import bcrypt
import pytest

from tests.http.helpers import API_2024, bearer, sign_up


async def test_routes_are_served_at_the_root_and_under_auth_v1(client):
    for prefix in ("", "/auth/v1"):
        response = await client.get(f"{prefix}/health")
        assert response.status == 200
        response = await client.get(f"{prefix}/settings")
        assert (await response.json())["external"]["email"] is True


async def test_settings_reflect_configuration(make_client):
    client = await make_client(mailer_autoconfirm=False, anonymous_users_enabled=False, disable_signup=True)
    body = await (await client.get("/settings")).json()
    assert body["mailer_autoconfirm"] is False
    assert body["disable_signup"] is True
    assert body["external"]["anonymous_users"] is False
    assert body["external"]["google"] is False


async def test_cors_preflight_and_exposed_headers(client):
    response = await client.options(
        "/auth/v1/token",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, apikey, x-supabase-api-version",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "x-supabase-api-version" in response.headers["Access-Control-Allow-Headers"]
    response = await client.get("/user", headers={"Origin": "http://localhost:3000", **API_2024})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "x-supabase-api-version" in response.headers["Access-Control-Expose-Headers"]


async def test_session_shape_and_claims(client, admin):
    session = await sign_up(client, "shape@example.com")
    assert set(session) == {"access_token", "token_type", "expires_in", "expires_at", "refresh_token", "user"}
    assert session["token_type"] == "bearer"
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    assert set(claims) == {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "email",
        "phone",
        "role",
        "aal",
        "amr",
        "session_id",
        "is_anonymous",
        "app_metadata",
        "user_metadata",
    }
    assert claims["exp"] == session["expires_at"] == claims["iat"] + 3600
    assert claims["aud"] == "authenticated" and claims["role"] == "authenticated"
    assert claims["iss"] == "http://127.0.0.1:9999"  # AUTHGRES_JWT_ISSUER unset: the API's external URL
    assert claims["app_metadata"] == {"provider": "email", "providers": ["email"]}
    user = session["user"]
    assert user["email"] == "shape@example.com" and user["phone"] == "" and user["is_anonymous"] is False
    assert "encrypted_password" not in user


async def test_issuer_claim_when_configured(make_client, admin):
    client = await make_client(jwt_issuer="https://auth.example.com/auth/v1")
    session = await sign_up(client)
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    assert claims["iss"] == "https://auth.example.com/auth/v1"


async def test_signup_without_autoconfirm_returns_the_bare_user(make_client, admin):
    client = await make_client(mailer_autoconfirm=False)
    response = await client.post("/signup", json={"email": "new@example.com", "password": "a good password"})
    user = await response.json()
    assert response.status == 200
    assert "access_token" not in user
    assert user["email"] == "new@example.com"
    assert "email_confirmed_at" not in user
    assert [identity["provider"] for identity in user["identities"]] == ["email"]
    response = await client.post(
        "/token?grant_type=password", headers=API_2024, json={"email": "new@example.com", "password": "a good password"}
    )
    assert response.status == 400
    assert (await response.json())["code"] == "email_not_confirmed"


async def test_signup_on_a_confirmed_address_does_not_reveal_it(make_client, admin):
    client = await make_client(mailer_autoconfirm=False)
    await client.post("/signup", json={"email": "known@example.com", "password": "a good password"})
    admin.execute("update auth.users set email_confirmed_at = now()")
    real_id = admin.execute("select id::text from auth.users").fetchone()[0]

    known = await client.post("/signup", json={"email": "known@example.com", "password": "another password"})
    fresh = await client.post("/signup", json={"email": "fresh@example.com", "password": "another password"})

    assert known.status == fresh.status == 200
    known_user, fresh_user = await known.json(), await fresh.json()
    assert known_user["identities"] == []
    assert known_user["id"] != real_id
    assert set(known_user) - {"identities"} <= set(fresh_user)
    assert admin.execute("select count(*) from auth.users where email = 'known@example.com'").fetchone()[0] == 1
    assert admin.execute(
        "select encrypted_password like '$argon2id$%' from auth.users where email = 'known@example.com'"
    ).fetchone()[0]


async def test_disabled_signup(make_client, admin):
    client = await make_client(disable_signup=True)
    for body in ({"email": "a@example.com", "password": "a good password"}, {}):
        response = await client.post("/signup", json=body, headers=API_2024)
        assert response.status == 422
        assert (await response.json())["code"] == "signup_disabled"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_anonymous_sign_in_disabled(make_client):
    client = await make_client(anonymous_users_enabled=False)
    response = await client.post("/signup", json={"data": {}}, headers=API_2024)
    assert response.status == 422
    assert (await response.json())["code"] == "anonymous_provider_disabled"


async def test_anonymous_sign_ins_are_limited_per_client_ip(make_client, admin):
    client = await make_client(rate_limit_anonymous_users=2)
    for _ in range(2):
        assert (await client.post("/signup", json={}, headers=API_2024)).status == 200
    refused = await client.post("/signup", json={}, headers=API_2024)
    assert refused.status == 429
    assert (await refused.json())["code"] == "over_request_rate_limit"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 2


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "x" * 250 + "@example.com"])
async def test_invalid_email_is_rejected(client, admin, email):
    response = await client.post("/signup", json={"email": email, "password": "a good password"}, headers=API_2024)
    assert response.status == 400
    assert (await response.json())["code"] == "validation_failed"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_phone_and_missing_fields(client):
    cases = [
        ("/signup", {"phone": "15551234567", "password": "a good password"}, 400, "phone_provider_disabled"),
        ("/signup", {"email": "a@example.com", "phone": "1555", "password": "x" * 8}, 400, "validation_failed"),
        ("/signup", {"email": "a@example.com"}, 400, "validation_failed"),
        ("/token?grant_type=password", {"password": "a good password"}, 400, "validation_failed"),
        ("/token?grant_type=refresh_token", {}, 400, "validation_failed"),
    ]
    for path, body, status, code in cases:
        response = await client.post(path, json=body, headers=API_2024)
        assert (response.status, (await response.json())["code"]) == (status, code), (path, body)


async def test_bcrypt_hash_from_gotrue_signs_in_and_is_upgraded(client, admin):
    await sign_up(client, "imported@example.com")
    gotrue_hash = bcrypt.hashpw(b"from gotrue", bcrypt.gensalt(rounds=4)).decode()
    admin.execute("update auth.users set encrypted_password = %s", (gotrue_hash,))
    response = await client.post(
        "/token?grant_type=password", json={"email": "imported@example.com", "password": "from gotrue"}
    )
    assert response.status == 200
    stored = admin.execute("select encrypted_password from auth.users").fetchone()[0]
    assert stored.startswith("$argon2id$")
    response = await client.post(
        "/token?grant_type=password", json={"email": "imported@example.com", "password": "from gotrue"}
    )
    assert response.status == 200


async def test_weak_but_correct_password_signs_in_with_a_warning(client, make_client):
    await sign_up(client, "old@example.com", "short1")
    stricter = await make_client(password_min_length=10)
    response = await stricter.post(
        "/token?grant_type=password", json={"email": "old@example.com", "password": "short1"}
    )
    body = await response.json()
    assert response.status == 200
    assert body["weak_password"] == {"message": "Password should be at least 10 characters.", "reasons": ["length"]}


async def test_password_change_ends_other_sessions_only(client, admin):
    first = await sign_up(client, "pw@example.com", "old password")
    second = await (
        await client.post("/token?grant_type=password", json={"email": "pw@example.com", "password": "old password"})
    ).json()
    response = await client.put("/user", json={"password": "new password"}, headers=bearer(first))
    assert response.status == 200
    assert (await client.get("/user", headers=bearer(first))).status == 200
    assert (await client.get("/user", headers=bearer(second))).status == 403
    refresh = await client.post("/token?grant_type=refresh_token", json={"refresh_token": second["refresh_token"]})
    assert refresh.status == 400
    actions = [a for (a,) in admin.execute("select payload->>'action' from auth.audit_log_entries order by created_at")]
    assert "user_updated_password" in actions


async def test_same_password_is_refused(client, admin):
    session = await sign_up(client, "same@example.com", "the password")
    before = admin.execute("select encrypted_password from auth.users").fetchone()[0]
    response = await client.put("/user", json={"password": "the password"}, headers={**API_2024, **bearer(session)})
    assert response.status == 422
    assert (await response.json())["code"] == "same_password"
    assert admin.execute("select encrypted_password from auth.users").fetchone()[0] == before


async def test_wrong_current_password_is_refused(client, admin):
    session = await sign_up(client, "cur@example.com", "the password")
    response = await client.put(
        "/user",
        json={"password": "next password", "current_password": "guess"},
        headers={**API_2024, **bearer(session)},
    )
    assert response.status == 400
    assert (await response.json())["code"] == "current_password_mismatch"
    response = await client.put(
        "/user", json={"password": "next password", "current_password": "the password"}, headers=bearer(session)
    )
    assert response.status == 200


async def test_metadata_must_be_an_object(client):
    session = await sign_up(client)
    response = await client.put("/user", json={"data": [1, 2]}, headers={**API_2024, **bearer(session)})
    assert response.status == 400
    assert (await response.json())["code"] == "bad_json"


async def test_anonymous_user_cannot_set_a_password_without_an_email(client):
    session = await (await client.post("/signup", json={})).json()
    response = await client.put("/user", json={"password": "a good password"}, headers={**API_2024, **bearer(session)})
    assert response.status == 422
    assert (await response.json())["code"] == "validation_failed"


async def test_logout_reports_how_many_sessions_ended(client):
    first = await sign_up(client, "many@example.com")
    for _ in range(2):
        await client.post(
            "/token?grant_type=password", json={"email": "many@example.com", "password": "a good password"}
        )
    response = await client.post("/logout?scope=global", headers=bearer(first))
    assert response.status == 204
    assert response.headers["X-Sessions-Ended"] == "3"


async def test_concurrent_http_refreshes_share_one_new_token(client, admin):
    session = await sign_up(client)

    async def refresh():
        response = await client.post(
            "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
        )
        assert response.status == 200
        return (await response.json())["refresh_token"]

    tokens = await asyncio.gather(*(refresh() for _ in range(20)))
    assert len(set(tokens)) == 1
    assert admin.execute("select count(*) from auth.refresh_tokens where not revoked").fetchone()[0] == 1


async def test_client_ip_and_user_agent_are_recorded(make_client, admin):
    client = await make_client(
        trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))
    )
    await client.post(
        "/signup",
        json={"email": "ip@example.com", "password": "a good password"},
        headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "User-Agent": "pytest-agent"},
    )
    assert admin.execute("select host(ip), user_agent from auth.sessions").fetchone() == ("203.0.113.7", "pytest-agent")
    assert admin.execute("select ip_address from auth.audit_log_entries limit 1").fetchone()[0] == "203.0.113.7"
