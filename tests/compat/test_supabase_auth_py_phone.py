"""Phone through the official clients: the Python client (sign-up, sign-in by SMS, phone change, resend,
phone MFA) and auth-js (sign-in by SMS, through tests/node/run.mjs), against the live server texting
through a loopback stand-in for Twilio's Messages API; each test checks the request Twilio would get."""

import pytest
from supabase_auth import AsyncGoTrueClient
from supabase_auth.errors import AuthApiError

from authgres.app import create_app
from tests.compat.test_auth_js_pkce import Browser
from tests.http import twilio as twilio_stand_in

PHONE = "15550100001"
PASSWORD = "a good password"


@pytest.fixture
async def twilio(aiohttp_server):
    return await twilio_stand_in.start(aiohttp_server)


@pytest.fixture
async def phone_server(settings, twilio, aiohttp_server):
    config = twilio_stand_in.phone_settings(
        settings, twilio, mfa_phone_enroll_enabled=True, mfa_phone_verify_enabled=True
    )
    return await aiohttp_server(create_app(config))


@pytest.fixture
async def auth(phone_server):
    client = AsyncGoTrueClient(url=str(phone_server.make_url("/auth/v1")), auto_refresh_token=False)
    yield client
    await client.close()


def other_than(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def assert_twilio_request(twilio, text, phone):
    assert text.path == f"/2010-04-01/Accounts/{twilio_stand_in.ACCOUNT_SID}/Messages.json"
    assert text.authorization == twilio.basic_auth()
    assert text.form["To"] == f"+{phone}"
    assert text.form["MessagingServiceSid"] == twilio_stand_in.MESSAGING_SERVICE_SID
    assert text.form["Body"] == f"Your code is {text.code}"


async def test_sign_up_with_phone_verify_and_sign_in_with_password(auth, twilio):
    signed_up = await auth.sign_up({"phone": f"+{PHONE}", "password": PASSWORD, "options": {"channel": "sms"}})
    assert signed_up.session is None and signed_up.user.phone == PHONE
    text = await twilio.text_to(PHONE)
    assert_twilio_request(twilio, text, PHONE)

    with pytest.raises(AuthApiError) as refused:
        await auth.sign_in_with_password({"phone": PHONE, "password": PASSWORD})
    assert refused.value.code == "phone_not_confirmed"

    verified = await auth.verify_otp({"phone": PHONE, "token": text.code, "type": "sms"})
    assert verified.session and verified.user.phone_confirmed_at
    await auth.sign_out()
    session = await auth.sign_in_with_password({"phone": f"+{PHONE}", "password": PASSWORD})
    assert session.user.phone == PHONE


async def test_sign_in_with_otp_resend_and_phone_change(auth, twilio):
    sent = await auth.sign_in_with_otp({"phone": f"+{PHONE}"})
    assert sent.message_id and sent.user is None and sent.session is None
    first = await twilio.text_to(PHONE)
    assert_twilio_request(twilio, first, PHONE)

    # The user exists but is unconfirmed: resend texts a fresh code, which replaces the first.
    resent = await auth.resend({"type": "sms", "phone": PHONE})
    assert resent.message_id
    second = await twilio.text_to(PHONE, 1)
    signed_in = await auth.verify_otp({"phone": PHONE, "token": second.code, "type": "sms"})
    assert signed_in.user.phone == PHONE

    new = "15550100002"
    updated = await auth.update_user({"phone": f"+{new}"})
    assert updated.user.phone == PHONE and updated.user.new_phone == new
    text = await twilio.text_to(new)
    assert_twilio_request(twilio, text, new)
    await auth.resend({"type": "phone_change", "phone": new})
    fresh = await twilio.text_to(new, 1)
    changed = await auth.verify_otp({"phone": new, "token": fresh.code, "type": "phone_change"})
    assert changed.user.phone == new
    assert (await auth.get_user()).user.phone == new


async def test_phone_mfa_enroll_challenge_verify(auth, twilio):
    await auth.sign_in_with_otp({"phone": PHONE})
    text = await twilio.text_to(PHONE)
    await auth.verify_otp({"phone": PHONE, "token": text.code, "type": "sms"})

    factor_phone = "15550100003"
    enrolled = await auth.mfa.enroll({"factor_type": "phone", "phone": f"+{factor_phone}", "friendly_name": "work"})
    assert enrolled.type == "phone" and enrolled.phone == factor_phone and enrolled.friendly_name == "work"
    challenge = await auth.mfa.challenge({"factor_id": enrolled.id, "channel": "sms"})
    assert isinstance(challenge.expires_at, int) and challenge.factor_type == "phone"
    code = await twilio.text_to(factor_phone)
    assert_twilio_request(twilio, code, factor_phone)

    with pytest.raises(AuthApiError) as wrong:
        await auth.mfa.verify({"factor_id": enrolled.id, "challenge_id": challenge.id, "code": other_than(code.code)})
    assert wrong.value.code == "mfa_verification_failed"
    verified = await auth.mfa.verify({"factor_id": enrolled.id, "challenge_id": challenge.id, "code": code.code})
    assert verified.access_token
    level = await auth.mfa.get_authenticator_assurance_level()
    assert (level.current_level, level.next_level) == ("aal2", "aal2")
    assert level.current_authentication_methods[0].method == "phone"
    factors = await auth.mfa.list_factors()
    assert [f.id for f in factors.phone] == [enrolled.id]


async def test_auth_js_signs_in_by_sms(phone_server, twilio, tmp_path):
    browser = Browser(phone_server, tmp_path / "browser.json")
    sent = await browser.run("signInWithPhone", phone=f"+{PHONE}")
    assert sent["error"] is None and sent["data"]["messageId"]
    text = await twilio.text_to(PHONE)
    assert_twilio_request(twilio, text, PHONE)

    wrong = await browser.run("verifyPhone", phone=PHONE, token=other_than(text.code))
    assert wrong["error"]["code"] == "otp_expired" and wrong["error"]["status"] == 403
    verified = await browser.run("verifyPhone", phone=PHONE, token=text.code)
    assert verified["error"] is None
    assert verified["data"]["user"]["phone"] == PHONE
    assert "SIGNED_IN" in verified["events"]
    user = await browser.run("getUser")
    assert user["data"]["user"]["phone"] == PHONE


@pytest.fixture
async def deferred_auth(settings, twilio, aiohttp_server):
    server = await aiohttp_server(create_app(twilio_stand_in.phone_settings(settings, twilio, signup_deferred=True)))
    client = AsyncGoTrueClient(url=str(server.make_url("/auth/v1")), auto_refresh_token=False)
    yield client
    await client.close()


async def test_deferred_phone_sign_up_makes_the_user_at_verify(deferred_auth, twilio, admin):
    signed_up = await deferred_auth.sign_up(
        {"phone": f"+{PHONE}", "password": PASSWORD, "options": {"data": {"plan": "free"}}}
    )
    assert signed_up.session is None and signed_up.user.phone == PHONE and signed_up.user.identities == []
    first = await twilio.text_to(PHONE)
    assert_twilio_request(twilio, first, PHONE)
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0

    # Not a user yet, so not an unconfirmed one: the password is refused as for any unknown number.
    with pytest.raises(AuthApiError) as refused:
        await deferred_auth.sign_in_with_password({"phone": PHONE, "password": PASSWORD})
    assert refused.value.code == "invalid_credentials"
    resent = await deferred_auth.resend({"type": "sms", "phone": PHONE})
    assert resent.message_id
    second = await twilio.text_to(PHONE, 1)
    with pytest.raises(AuthApiError) as stale:
        await deferred_auth.verify_otp({"phone": PHONE, "token": first.code, "type": "sms"})
    assert stale.value.code == "otp_expired"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0

    verified = await deferred_auth.verify_otp({"phone": PHONE, "token": second.code, "type": "sms"})
    assert verified.session and verified.user.phone_confirmed_at and verified.user.user_metadata["plan"] == "free"
    assert [identity.provider for identity in verified.user.identities] == ["phone"]
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1
    await deferred_auth.sign_out()
    session = await deferred_auth.sign_in_with_password({"phone": f"+{PHONE}", "password": PASSWORD})
    assert session.user.id == verified.user.id

    # Signing up the registered number again: the same kind of answer, and no text.
    again = await deferred_auth.sign_up({"phone": PHONE, "password": PASSWORD})
    assert again.session is None and again.user.phone == PHONE and again.user.id == signed_up.user.id
    assert len(twilio.requests) == 2


async def test_deferred_sign_in_by_sms_for_a_new_number(deferred_auth, twilio, admin):
    sent = await deferred_auth.sign_in_with_otp({"phone": f"+{PHONE}"})
    assert sent.message_id and sent.user is None
    text = await twilio.text_to(PHONE)
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    signed_in = await deferred_auth.verify_otp({"phone": PHONE, "token": text.code, "type": "sms"})
    assert signed_in.session and signed_in.user.phone == PHONE
