"""GoTrue's error envelope, request parsing and authentication failures."""

import json
import time

import pytest

from tests.conftest import JWT_SECRET
from tests.http.helpers import API_2024, bearer, sign_up


async def test_legacy_error_envelope(client):
    response = await client.post("/token?grant_type=password", json={"email": "x@example.com", "password": "nope"})
    assert response.status == 400
    assert await response.json() == {
        "code": 400,
        "error_code": "invalid_credentials",
        "msg": "Invalid login credentials",
    }
    assert "X-Supabase-Api-Version" not in response.headers
    assert response.headers["x-sb-error-code"] == "invalid_credentials"


async def test_2024_error_envelope_echoes_the_version_header(client):
    response = await client.post(
        "/token?grant_type=password", headers=API_2024, json={"email": "x@example.com", "password": "nope"}
    )
    assert response.status == 400
    assert await response.json() == {"code": "invalid_credentials", "message": "Invalid login credentials"}
    assert response.headers["X-Supabase-Api-Version"] == "2024-01-01"


async def test_weak_password_carries_reasons(client, make_settings, aiohttp_client):
    response = await client.post("/signup", headers=API_2024, json={"email": "w@example.com", "password": "12345"})
    assert response.status == 422
    assert await response.json() == {
        "code": "weak_password",
        "message": "Password should be at least 6 characters.",
        "weak_password": {"reasons": ["length"]},
    }


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b'{"email": 42}', b"\xff\xfe"])
async def test_bad_json_is_a_400(client, body, admin):
    response = await client.post("/signup", data=body, headers=API_2024)
    assert response.status == 400
    assert (await response.json())["code"] == "bad_json"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_unknown_fields_and_nulls_are_ignored(client):
    response = await client.post(
        "/signup",
        json={
            "email": "n@example.com",
            "password": "a good password",
            "data": None,
            "code_challenge": None,
            "code_challenge_method": None,
            "gotrue_meta_security": {"captcha_token": None},
            "options": {"x": 1},
        },
    )
    assert response.status == 200
    assert (await response.json())["user"]["user_metadata"]["email"] == "n@example.com"


async def test_body_over_one_mebibyte_is_rejected(client):
    response = await client.post("/signup", data=b'{"email": "' + b"a" * (1 << 20) + b'"}', headers=API_2024)
    assert response.status == 413
    assert (await response.json())["code"] == "request_entity_too_large"


async def test_missing_bearer_is_401(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        response = await client.get("/user", headers={**API_2024, **headers})
        assert response.status == 401
        assert (await response.json())["code"] == "no_authorization"


async def test_garbage_and_forged_tokens_are_403_bad_jwt(client, service):
    session = await sign_up(client)
    claims = session["access_token"].split(".")[1]
    forged = service.execute(
        "select auth.sign(convert_from(auth.url_decode(%s), 'UTF8')::json, %s)",
        (claims, "another-secret-another-secret-0123456789"),
    ).fetchone()[0]
    for token in ("garbage", forged):
        response = await client.get("/user", headers={**API_2024, "Authorization": f"Bearer {token}"})
        assert response.status == 403
        assert (await response.json())["code"] == "bad_jwt"


async def test_a_token_for_another_audience_is_403_unexpected_audience(client, service, admin):
    session = await sign_up(client)
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    before = admin.execute("select count(*) from auth.audit_log_entries").fetchone()[0]
    for audience in ("another-project", ["another-project"]):
        foreign = service.execute(
            "select auth.sign(%s::json, %s)", (json.dumps({**claims, "aud": audience}), JWT_SECRET)
        ).fetchone()[0]
        for method, path in (("GET", "/user"), ("PUT", "/user"), ("POST", "/logout"), ("GET", "/sessions")):
            response = await client.request(
                method, path, json={}, headers={**API_2024, "Authorization": f"Bearer {foreign}"}
            )
            assert response.status == 403, (method, path)
            assert (await response.json())["code"] == "unexpected_audience"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1  # logout ended nothing
    assert admin.execute("select count(*) from auth.audit_log_entries").fetchone()[0] == before


async def test_a_token_from_another_issuer_is_403_bad_jwt(client, service, admin):
    session = await sign_up(client)
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    assert claims["iss"] == "http://127.0.0.1:9999"  # AUTHGRES_JWT_ISSUER unset: the API's external URL
    foreign = service.execute(
        "select auth.sign(%s::json, %s)", (json.dumps({**claims, "iss": "https://elsewhere.example"}), JWT_SECRET)
    ).fetchone()[0]
    response = await client.get("/user", headers={**API_2024, "Authorization": f"Bearer {foreign}"})
    assert (response.status, (await response.json())["code"]) == (403, "bad_jwt")


async def test_expired_token_is_403_bad_jwt(client, service, admin):
    session = await sign_up(client)
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    claims["exp"] = int(time.time()) - 10
    expired = service.execute("select auth.sign(%s::json, %s)", (json.dumps(claims), JWT_SECRET)).fetchone()[0]
    response = await client.get("/user", headers={**API_2024, "Authorization": f"Bearer {expired}"})
    assert response.status == 403
    body = await response.json()
    assert body["code"] == "bad_jwt"
    assert "expired" in body["message"]


async def test_service_role_key_is_not_a_user(client, service):
    key = service.execute(
        "select auth.sign(%s::json, %s)",
        (json.dumps({"role": "service_role", "exp": int(time.time()) + 60}), JWT_SECRET),
    ).fetchone()[0]
    response = await client.get("/user", headers={**API_2024, "Authorization": f"Bearer {key}"})
    assert response.status == 403
    assert (await response.json())["code"] == "bad_jwt"


async def test_every_authenticated_endpoint_rechecks_the_session(client):
    session = await sign_up(client)
    response = await client.post("/logout?scope=local", headers=bearer(session))
    assert response.status == 204
    for method, path, body in (("GET", "/user", None), ("PUT", "/user", {"data": {"a": 1}}), ("POST", "/logout", None)):
        response = await client.request(method, path, json=body, headers={**API_2024, **bearer(session)})
        assert response.status == 403, path
        assert (await response.json())["code"] == "session_not_found"


async def test_deleted_user_is_403_user_not_found(client, admin):
    session = await sign_up(client)
    admin.execute("delete from auth.users")
    response = await client.get("/user", headers={**API_2024, **bearer(session)})
    assert response.status == 403
    assert (await response.json())["code"] == "user_not_found"


async def test_banned_user_is_403(client, admin):
    session = await sign_up(client)
    admin.execute("update auth.users set banned_until = now() + interval '1 hour'")
    response = await client.get("/user", headers={**API_2024, **bearer(session)})
    assert response.status == 403
    assert (await response.json())["code"] == "user_banned"
    response = await client.post(
        "/token?grant_type=password",
        headers=API_2024,
        json={"email": "user@example.com", "password": "a good password"},
    )
    assert response.status == 400
    assert (await response.json())["code"] == "user_banned"


async def test_unknown_route_and_method(client):
    response = await client.get("/nope", headers=API_2024)
    assert response.status == 404
    assert (await response.json())["code"] == "not_found"
    response = await client.delete("/signup", headers=API_2024)
    assert response.status == 405


async def test_unsupported_grant_type(client):
    response = await client.post("/token?grant_type=magic", json={}, headers=API_2024)
    assert response.status == 400
    assert (await response.json())["code"] == "invalid_credentials"


async def test_bad_logout_scope_changes_nothing(client, admin):
    session = await sign_up(client)
    response = await client.post("/logout?scope=everything", headers={**API_2024, **bearer(session)})
    assert response.status == 400
    assert (await response.json())["code"] == "validation_failed"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1
