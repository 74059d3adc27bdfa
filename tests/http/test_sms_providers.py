"""The other ways a code is texted: Twilio Verify (the provider makes and checks the code), Vonage,
MessageBird and Textlocal, each against a loopback stand-in speaking its HTTP API (their _API_URL
settings point there), the send_sms hook, and the console of `make dev`."""

import asyncio
import base64
import re
from dataclasses import replace

import pytest
from aiohttp import web

from authgres.app import create_app
from authgres.settings import ConfigError, Settings
from tests.http.helpers import API_2024
from tests.http.mail import until

PHONE = "15550100001"
PASSWORD = "a good password"


class Provider:
    """Records every request (path, headers, form) and answers as the real API would; `refuse` makes it
    answer as it does for a number it will not deliver to."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.refuse = False
        self.verify_code = "424242"  # Twilio Verify's code, which only Twilio knows
        self.url = ""
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        async with self._changed:
            self.requests.append((request.path, dict(request.headers), form))
            self._changed.notify_all()
        path = request.path
        if path == "/sms/json":  # Vonage
            if self.refuse:
                return web.json_response({"messages": [{"status": "3", "error-text": "Invalid to number"}]})
            return web.json_response({"message-count": "1", "messages": [{"status": "0", "message-id": "vonage-1"}]})
        if path == "/messages":  # MessageBird
            if self.refuse:
                return web.json_response(
                    {"errors": [{"code": 9, "description": "no (correct) recipients found"}]}, status=422
                )
            return web.json_response({"id": "messagebird-1", "recipients": {"totalCount": 1}}, status=201)
        if path == "/send/":  # Textlocal
            if self.refuse:
                return web.json_response(
                    {"status": "failure", "errors": [{"code": 4, "message": "No recipients specified"}]}
                )
            return web.json_response(
                {"status": "success", "messages": [{"id": "textlocal-1", "recipient": form["numbers"]}]}
            )
        if path.endswith("/Verifications"):  # Twilio Verify: start
            return web.json_response({"sid": "VE1", "status": "pending", "to": form["To"]}, status=201)
        if path.endswith("/VerificationCheck"):
            approved = form.get("Code") == self.verify_code
            return web.json_response({"sid": "VE1", "status": "approved" if approved else "pending", "valid": approved})
        return web.json_response({}, status=404)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(20), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)


@pytest.fixture
async def provider(aiohttp_server):
    stand_in = Provider()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", stand_in.handle)
    server = await aiohttp_server(app)
    stand_in.url = str(server.make_url("")).rstrip("/")
    return stand_in


def configured(settings: Settings, **changes) -> Settings:
    return replace(settings, external_phone_enabled=True, sms_max_frequency=0, rate_limit_sms_sent=1000, **changes)


async def post(client, path, body, status=200):
    response = await client.post(path, json=body, headers=API_2024)
    payload = await response.json()
    assert response.status == status, payload
    return payload


@pytest.mark.parametrize("name", ["vonage", "messagebird", "textlocal"])
async def test_each_provider_gets_its_own_request_and_refusals_are_sms_send_failed(
    name, settings, provider, aiohttp_client, admin
):
    credentials = {
        "vonage": {"sms_vonage_api_key": "key", "sms_vonage_api_secret": "secret", "sms_vonage_from": "authgres"},
        "messagebird": {"sms_messagebird_access_key": "live_key", "sms_messagebird_originator": "authgres"},
        "textlocal": {"sms_textlocal_api_key": "tl-key", "sms_textlocal_sender": "AUTHGR"},
    }[name]
    config = configured(settings, sms_provider=name, **{f"sms_{name}_api_url": provider.url}, **credentials)
    client = await aiohttp_client(create_app(config))
    await post(client, "/signup", {"phone": PHONE, "password": PASSWORD})
    await until(lambda: provider.requests)  # sent by the outbox's sender, after the answer
    ((path, headers, form),) = provider.requests
    body = {"vonage": "text", "messagebird": "body", "textlocal": "message"}[name]
    code = re.fullmatch(r"Your code is (\d{6})", form[body]).group(1)
    if name == "vonage":
        assert path == "/sms/json"
        assert form == {"from": "authgres", "to": PHONE, "text": form["text"], "api_key": "key", "api_secret": "secret"}
    elif name == "messagebird":
        assert path == "/messages" and headers["Authorization"] == "AccessKey live_key"
        assert form == {"originator": "authgres", "body": form["body"], "recipients": PHONE, "type": "sms",
                        "datacoding": "unicode"}  # fmt: skip
    else:
        assert path == "/send/"
        assert form == {"sender": "AUTHGR", "apikey": "tl-key", "message": form["message"], "numbers": PHONE}
    assert admin.execute("select provider_message_id from auth.sms_outbox").fetchone()[0] == f"{name}-1"
    await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": code})

    provider.refuse = True
    await post(client, "/signup", {"phone": "15550100002", "password": PASSWORD})
    # The sender meets the refusal: the text is dead with the provider's error, the user it was for gone.
    dead = "select last_error from auth.sms_outbox where to_phone = '15550100002' and status = 'dead'"
    await until(lambda: admin.execute(dead).fetchone())
    assert admin.execute("select count(*) from auth.users where phone = '15550100002'").fetchone()[0] == 0


async def test_twilio_verify_sends_and_checks_the_code_itself(settings, provider, aiohttp_client, admin):
    config = configured(
        settings,
        sms_provider="twilio_verify",
        sms_twilio_verify_account_sid="AC1",
        sms_twilio_verify_auth_token="token",
        sms_twilio_verify_message_service_sid="VA1",
        sms_twilio_verify_api_url=provider.url,
        mailer_otp_max_attempts=2,
    )
    client = await aiohttp_client(create_app(config))
    await post(client, "/otp", {"phone": PHONE, "channel": "whatsapp"})
    await provider.wait_for(1)
    path, headers, form = provider.requests[0]
    assert path == "/v2/Services/VA1/Verifications"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"AC1:token").decode()
    assert form == {"To": f"+{PHONE}", "Channel": "whatsapp"}

    wrong = await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": "000001"}, 403)
    assert wrong["code"] == "otp_expired"
    path, _, form = provider.requests[1]
    assert path == "/v2/Services/VA1/VerificationCheck" and form == {"To": f"+{PHONE}", "Code": "000001"}
    assert admin.execute("select attempts from auth.one_time_tokens").fetchone()[0] == 1
    session = await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": provider.verify_code})
    assert session["user"]["phone_confirmed_at"]

    # Twilio's approval is not enough once authgres's attempt limit is spent.
    await post(client, "/otp", {"phone": PHONE})
    for _ in range(2):
        await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": "000001"}, 403)
    late = await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": provider.verify_code}, 403)
    assert late["code"] == "otp_expired"

    with pytest.raises(ConfigError, match="Twilio Verify"):
        Settings(**{**vars(config), "mfa_phone_verify_enabled": True})


async def test_send_sms_hook_delivers_instead_of_the_outbox(settings, aiohttp_client, admin):
    admin.execute("""
        create table public.texts (phone text, otp text, sms_type text, channel text, user_id uuid);
        create function public.send_sms(event jsonb) returns jsonb language sql as $$
          insert into public.texts
          select event -> 'sms' ->> 'phone', event -> 'sms' ->> 'otp', event -> 'sms' ->> 'sms_type',
                 event -> 'sms' ->> 'channel', (event -> 'user' ->> 'id')::uuid;
          select '{}'::jsonb
        $$;
        grant execute on function public.send_sms(jsonb) to authgres_hook;
        grant insert on public.texts to authgres_hook;
    """)
    client = await aiohttp_client(create_app(configured(settings, hook_send_sms="public.send_sms")))
    sent = await post(client, "/otp", {"phone": f"+{PHONE}"})
    assert set(sent) == {"message_id"}
    phone, otp, sms_type, channel, user_id = admin.execute("select * from public.texts").fetchone()
    assert (phone, sms_type, channel) == (PHONE, "sms", "sms") and user_id
    assert admin.execute("select count(*) from auth.sms_outbox").fetchone()[0] == 0
    session = await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": otp})
    assert session["user"]["id"] == str(user_id)


async def test_the_console_prints_the_text_for_development(settings, aiohttp_client, capsys, admin):
    client = await aiohttp_client(create_app(configured(settings)))
    assert settings.sms_provider == "console"
    await post(client, "/signup", {"phone": PHONE, "password": PASSWORD})
    await until(lambda: admin.execute("select status = 'sent' from auth.sms_outbox").fetchone()[0])
    printed = capsys.readouterr().out
    code = re.search(rf"--- sms to \+{PHONE}: Your code is (\d{{6}})", printed).group(1)
    await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": code})
    assert admin.execute("select status from auth.sms_outbox").fetchone()[0] == "sent"


def test_each_provider_needs_its_credentials(settings):
    with pytest.raises(ConfigError, match="AUTHGRES_SMS_TWILIO_ACCOUNT_SID"):
        Settings(**{**vars(settings), "sms_provider": "twilio"})
    with pytest.raises(ConfigError, match="AUTHGRES_SMS_VONAGE_API_SECRET"):
        Settings(**{**vars(settings), "sms_provider": "vonage", "sms_vonage_api_key": "k", "sms_vonage_from": "x"})
    env = {
        "DATABASE_URL": "postgresql://x",
        "AUTHGRES_JWT_SECRET": "s" * 32,
        "AUTHGRES_SMS_TEST_OTP": "+1 555-555-0100:123456",
    }
    with pytest.raises(ConfigError, match="VALID_UNTIL"):
        Settings.from_env(env)
    parsed = Settings.from_env({**env, "AUTHGRES_SMS_TEST_OTP_VALID_UNTIL": "2999-01-01T00:00:00Z"})
    assert parsed.sms_test_otp == {"15555550100": "123456"}
    with pytest.raises(ConfigError, match=r"E\.164"):
        Settings.from_env({**env, "AUTHGRES_SMS_TEST_OTP": "not-a-number:123456"})
