"""Captcha protection (AUTHGRES_SECURITY_CAPTCHA_*), against a real siteverify stand-in on loopback that
speaks the providers' wire format: a form POST of secret, response and remoteip in, JSON
{"success", "error-codes"} out. The service under test runs without its mailer and pruner, so that
nothing but the request changes the database while a test compares it before and after."""

import asyncio
import ipaddress
import logging
import time

import jwt
import pytest
from aiohttp import web
from supabase_auth import AsyncGoTrueClient
from supabase_auth.errors import AuthApiError

from authgres.app import create_app
from tests.conftest import JWT_SECRET, free_port
from tests.http.helpers import API_2024, bearer
from tests.http.test_malformed_input import snapshot

SECRET = "0x4AAAAAAA-test-captcha-secret"
GOOD = "P1_a-token-the-widget-gave"
BAD = "P1_a-forged-token"
PASSWORD = "a good password"
PRESENT = "present@example.com"  # confirmed, with a password
PENDING = "pending@example.com"  # signed up, not confirmed

# Every protected request, as a client sends it, and one that would change the database if let through.
PROTECTED = {
    "signup": ("/signup", {"email": "new@example.com", "password": PASSWORD}),
    "anonymous": ("/signup", {}),
    "password": ("/token?grant_type=password", {"email": PRESENT, "password": PASSWORD}),
    "otp": ("/otp", {"email": PRESENT}),
    "magiclink": ("/magiclink", {"email": PRESENT}),
    "recover": ("/recover", {"email": PRESENT}),
    "resend": ("/resend", {"type": "signup", "email": PENDING}),
    "passkey": ("/passkeys/authentication/options", {}),
}


class SiteVerify:
    """hCaptcha's (and Turnstile's) siteverify, on loopback: GOOD passes under SECRET, anything else is
    refused with the provider's error codes; `mode` makes it fail as an outage would."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.content_types: list[str] = []
        self.mode = "verdict"  # or "500", "not json", "hang"
        self.released = asyncio.Event()  # ends a "hang"
        self.url = ""

    def forget(self) -> None:
        self.calls.clear()
        self.content_types.clear()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.content_types.append(request.content_type)
        form = await request.post()
        self.calls.append({key: str(value) for key, value in form.items()})
        if self.mode == "hang":
            await self.released.wait()
        if self.mode == "500":
            return web.Response(status=500, text="internal error")
        if self.mode == "not json":
            return web.Response(text="<html>down for maintenance</html>", content_type="text/html")
        if form.get("secret") != SECRET:
            return web.json_response({"success": False, "error-codes": ["invalid-input-secret"]})
        if form.get("response") != GOOD:
            return web.json_response({"success": False, "error-codes": ["invalid-input-response", "expired-input"]})
        return web.json_response({"success": True, "challenge_ts": "2024-01-31T12:00:00Z", "hostname": "localhost"})


@pytest.fixture
async def siteverify(aiohttp_server):
    stand_in = SiteVerify()
    app = web.Application()
    app.router.add_post("/siteverify", stand_in.handle)
    server = await aiohttp_server(app)
    stand_in.url = str(server.make_url("/siteverify"))
    yield stand_in
    stand_in.released.set()  # before the server closes: a hanging handler returns


@pytest.fixture
def captcha_settings(make_settings, siteverify):
    def build(**changes):
        on = {"captcha_enabled": True, "captcha_secret": SECRET, "captcha_verify_url": siteverify.url}
        on["passkey_enabled"] = True  # its sign-in options are protected too
        return make_settings(**{**on, "mailer_autoconfirm": False, **changes})

    return build


@pytest.fixture
def serve(captcha_settings, aiohttp_client):
    """A client of a service protected by the stand-in (settings changed as asked)."""

    async def build(**changes):
        return await aiohttp_client(create_app(captcha_settings(**changes), background=False))

    return build


def service_role_key(secret=JWT_SECRET, headers=None, **claims):
    now = int(time.time())
    return jwt.encode({"role": "service_role", "iat": now, "exp": now + 600, **claims}, secret, headers=headers)


def with_token(body, token=GOOD):
    return {**body, "gotrue_meta_security": {"captcha_token": token}}


async def answer(client, path, body, headers=None):
    response = await client.post(path, json=body, headers={**API_2024, **(headers or {})})
    return response.status, await response.json()


@pytest.fixture
async def accounts(serve, siteverify):
    """A confirmed user with a password (made by the admin API) and one whose sign-up awaits confirmation."""
    client = await serve()
    admin_key = {"Authorization": f"Bearer {service_role_key()}"}
    created = {"email": PRESENT, "password": PASSWORD, "email_confirm": True}
    assert (await answer(client, "/admin/users", created, admin_key))[0] == 200
    assert (await answer(client, "/signup", with_token({"email": PENDING, "password": PASSWORD})))[0] == 200
    siteverify.forget()
    return client


@pytest.mark.parametrize("endpoint", PROTECTED)
async def test_a_good_token_lets_the_request_through(accounts, siteverify, admin, endpoint):
    path, body = PROTECTED[endpoint]
    before = snapshot(admin)
    status, result = await answer(accounts, path, with_token(body))
    assert status == 200, result
    assert snapshot(admin) != before
    assert siteverify.calls == [{"secret": SECRET, "response": GOOD, "remoteip": "127.0.0.1"}]
    assert siteverify.content_types == ["application/x-www-form-urlencoded"]


@pytest.mark.parametrize("endpoint", PROTECTED)
async def test_a_refused_token_is_400_and_changes_nothing(accounts, siteverify, admin, endpoint):
    path, body = PROTECTED[endpoint]
    before = snapshot(admin)
    status, result = await answer(accounts, path, with_token(body, BAD))
    assert status == 400
    assert result["code"] == "captcha_failed"
    assert "invalid-input-response" in result["message"] and "expired-input" in result["message"]
    assert snapshot(admin) == before
    assert siteverify.calls == [{"secret": SECRET, "response": BAD, "remoteip": "127.0.0.1"}]


@pytest.mark.parametrize("endpoint", PROTECTED)
async def test_a_missing_token_is_400_without_asking_the_provider(accounts, siteverify, admin, endpoint):
    path, body = PROTECTED[endpoint]
    before = snapshot(admin)
    for security in ({}, {"gotrue_meta_security": None}, {"gotrue_meta_security": {}}):
        for blank in (security, {"gotrue_meta_security": {"captcha_token": " \t"}}):
            status, result = await answer(accounts, path, {**body, **blank})
            assert (status, result["code"]) == (400, "captcha_failed"), blank
            assert result["message"] == "captcha protection: request disallowed (no captcha_token found)"
    assert snapshot(admin) == before
    assert siteverify.calls == []


@pytest.mark.parametrize("mode", ["500", "not json"])
async def test_a_provider_answering_otherwise_than_siteverify_fails_closed(accounts, siteverify, admin, mode, caplog):
    siteverify.mode = mode
    for endpoint, (path, body) in PROTECTED.items():
        before = snapshot(admin)
        with caplog.at_level(logging.ERROR, logger="authgres"):
            status, result = await answer(accounts, path, with_token(body))
        assert (status, result["code"]) == (503, "captcha_failed"), endpoint
        assert "captcha verification is unavailable" in result["message"]
        assert snapshot(admin) == before, endpoint
    assert len(siteverify.calls) == len(PROTECTED)
    unavailable = [record for record in caplog.records if record.name == "authgres" and "captcha" in record.message]
    assert len(unavailable) == len(PROTECTED)
    assert {record.levelno for record in unavailable} == {logging.ERROR}
    assert siteverify.url in unavailable[0].message
    assert SECRET not in caplog.text and GOOD not in caplog.text  # no log line holds a secret or a token


async def test_a_provider_that_is_down_fails_closed(serve, admin, caplog):
    # Nothing listens on the port: the connection is refused.
    client = await serve(captcha_verify_url=f"http://127.0.0.1:{free_port()}/siteverify")
    for endpoint, (path, body) in PROTECTED.items():
        before = snapshot(admin)
        with caplog.at_level(logging.ERROR, logger="authgres"):
            status, result = await answer(client, path, with_token(body))
        assert (status, result["code"]) == (503, "captcha_failed"), endpoint
        assert "captcha verification is unavailable" in result["message"]
        assert snapshot(admin) == before, endpoint
    assert any("captcha" in record.message and record.levelno == logging.ERROR for record in caplog.records)


async def test_a_provider_that_does_not_answer_in_time_fails_closed(serve, siteverify, admin, caplog):
    client = await serve(captcha_timeout=0.2)
    siteverify.mode = "hang"  # answers only once the test is over
    for endpoint, (path, body) in PROTECTED.items():
        before = snapshot(admin)
        with caplog.at_level(logging.ERROR, logger="authgres"):
            status, result = await answer(client, path, with_token(body))
        assert (status, result["code"]) == (503, "captcha_failed"), endpoint
        assert snapshot(admin) == before, endpoint
    assert len(siteverify.calls) == len(PROTECTED)
    assert any("within 0.2 s" in record.message for record in caplog.records)


async def test_the_client_ip_sent_is_the_one_trusted_proxies_tell(serve, siteverify):
    client = await serve(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    status, _ = await answer(
        client, "/signup", with_token({}), {"X-Forwarded-For": "198.51.100.9, 203.0.113.7, 127.0.0.2"}
    )
    assert status == 200
    assert siteverify.calls == [{"secret": SECRET, "response": GOOD, "remoteip": "203.0.113.7"}]
    # Without trusted proxies the header is ignored: the peer's address is sent.
    untrusting = await serve()
    status, _ = await answer(untrusting, "/signup", with_token({}), {"X-Forwarded-For": "203.0.113.7"})
    assert status == 200
    assert siteverify.calls[1]["remoteip"] == "127.0.0.1"


async def test_the_secret_is_sent_as_configured_and_a_wrong_one_is_refused(serve, siteverify, admin):
    client = await serve(captcha_secret="  not-the-secret  ")
    status, result = await answer(client, "/signup", with_token({}))
    assert (status, result["code"]) == (400, "captcha_failed")
    assert "invalid-input-secret" in result["message"]
    assert siteverify.calls == [{"secret": "not-the-secret", "response": GOOD, "remoteip": "127.0.0.1"}]
    assert admin.execute("select count(*) from auth.users").fetchone() == (0,)


async def test_the_service_role_key_skips_the_captcha(serve, siteverify, admin):
    client = await serve()
    status, result = await answer(client, "/signup", {}, {"Authorization": f"Bearer {service_role_key()}"})
    assert status == 200, result
    assert siteverify.calls == []
    assert admin.execute("select count(*) from auth.users where is_anonymous").fetchone() == (1,)


# Bearers that are not the service_role key, made when the test runs (a key made at collection could expire).
NOT_THE_SERVICE_ROLE_KEY = {
    "forged": lambda: {"Authorization": f"Bearer {service_role_key(secret='another-secret-another-secret-01234')}"},
    "expired": lambda: {"Authorization": f"Bearer {service_role_key(exp=int(time.time()) - 10)}"},
    "other-kid": lambda: {"Authorization": f"Bearer {service_role_key(headers={'kid': 'some-other-key'})}"},
    "anon": lambda: {"Authorization": f"Bearer {service_role_key(role='anon')}"},
    "a-user's": lambda: {"Authorization": f"Bearer {service_role_key(sub='5f7b0a39-8b5e-4bd6-9a8e-2f0b7a4f3c11')}"},
    "garbage": lambda: {"Authorization": "Bearer not.a.jwt"},
    "apikey-header": lambda: {"apikey": service_role_key()},  # GoTrue reads the Authorization header only
}


@pytest.mark.parametrize("bearer_kind", NOT_THE_SERVICE_ROLE_KEY)
async def test_other_bearers_do_not_skip_the_captcha(serve, siteverify, admin, bearer_kind):
    client = await serve()
    status, result = await answer(client, "/signup", {}, NOT_THE_SERVICE_ROLE_KEY[bearer_kind]())
    assert (status, result["code"]) == (400, "captcha_failed")
    assert result["message"].endswith("(no captcha_token found)")
    assert admin.execute("select count(*) from auth.users").fetchone() == (0,)


async def test_a_user_s_access_token_does_not_skip_it(accounts, siteverify):
    status, session = await answer(accounts, "/token?grant_type=password", with_token(PROTECTED["password"][1]))
    assert status == 200
    status, result = await answer(accounts, "/otp", {"email": PRESENT}, bearer(session))
    assert (status, result["code"]) == (400, "captcha_failed")


async def test_other_grants_and_endpoints_are_not_protected(accounts, siteverify):
    status, session = await answer(accounts, "/token?grant_type=password", with_token(PROTECTED["password"][1]))
    assert status == 200
    siteverify.forget()
    status, refreshed = await answer(
        accounts, "/token?grant_type=refresh_token", {"refresh_token": session["refresh_token"]}
    )
    assert status == 200, refreshed
    status, result = await answer(accounts, "/token?grant_type=twofa", {"challenge_token": "x", "code": "123456"})
    assert status != 200 and result["code"] != "captcha_failed"
    status, result = await answer(accounts, "/verify", {"type": "signup", "email": PENDING, "token": "000000"})
    assert (status, result["code"]) == (403, "otp_expired")
    response = await accounts.put("/user", json={"data": {"a": 1}}, headers=bearer(refreshed))
    assert response.status == 200
    response = await accounts.post("/logout", headers=bearer(refreshed))
    assert response.status == 204
    assert siteverify.calls == []


async def test_disabled_captcha_asks_no_one(captcha_settings, aiohttp_client, siteverify, admin):
    client = await aiohttp_client(create_app(captcha_settings(captcha_enabled=False), background=False))
    admin_key = {"Authorization": f"Bearer {service_role_key()}"}
    created = {"email": PRESENT, "password": PASSWORD, "email_confirm": True}
    assert (await answer(client, "/admin/users", created, admin_key))[0] == 200
    assert (await answer(client, "/signup", {"email": PENDING, "password": PASSWORD}))[0] == 200
    for endpoint, (path, body) in PROTECTED.items():
        status, result = await answer(client, path, body)
        assert status == 200, (endpoint, result)
    assert siteverify.calls == []


async def test_the_official_client_passes_its_captcha_token(captcha_settings, aiohttp_server, siteverify):
    server = await aiohttp_server(create_app(captcha_settings(), background=False))
    auth = AsyncGoTrueClient(url=str(server.make_url("/auth/v1")), auto_refresh_token=False)
    try:
        with pytest.raises(AuthApiError) as refused:
            await auth.sign_in_anonymously()
        assert refused.value.code == "captcha_failed"
        with pytest.raises(AuthApiError) as refused:
            await auth.sign_in_anonymously({"options": {"captcha_token": BAD}})
        assert refused.value.code == "captcha_failed"
        signed_in = await auth.sign_in_anonymously({"options": {"captcha_token": GOOD}})
        assert signed_in.session is not None
        await auth.reset_password_for_email(PRESENT, {"captcha_token": GOOD})
    finally:
        await auth.close()
    assert [call["response"] for call in siteverify.calls] == [BAD, GOOD, GOOD]


async def test_openapi_documents_the_token_and_the_503_where_captcha_applies(client):
    document = await (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    protected = {path.split("?")[0] for path, _ in PROTECTED.values()}
    for path, item in document["paths"].items():
        for operation in item.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            properties = schemas[body["schema"]["$ref"].rsplit("/", 1)[1]]["properties"] if body else {}
            assert ("gotrue_meta_security" in properties) == (path in protected), path
            if path in protected:
                assert operation["responses"]["503"] == {"$ref": "#/components/responses/CaptchaUnavailable"}
    assert "captcha_token" in schemas["MetaSecurity"]["properties"]
