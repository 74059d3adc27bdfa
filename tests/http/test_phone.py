"""Phone: texted codes through a loopback stand-in for Twilio's Messages API (tests/http/twilio.py), sign-up
and sign-in by phone, phone change, delivery through the SMS outbox under failure, attempt limits, the
no-enumeration rule, fixed development codes, and phone as a second factor."""

import asyncio
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from psycopg.types.json import Jsonb

from authgres.app import create_app
from authgres.db import Database
from authgres.settings import ConfigError, Settings
from authgres.sms import SmsSender
from tests.conftest import JWT_SECRET
from tests.http import twilio as twilio_stand_in
from tests.http.helpers import API_2024, bearer, claims_of
from tests.http.mail import until
from tests.http.test_metrics import TOKEN, scrape, value

PHONE = "15550100001"
PASSWORD = "a good password"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
async def twilio(aiohttp_server):
    return await twilio_stand_in.start(aiohttp_server)


@pytest.fixture
def phone_settings(settings, twilio):
    return twilio_stand_in.phone_settings(settings, twilio)


@pytest.fixture
async def phone_client(phone_settings, aiohttp_client):
    return await aiohttp_client(create_app(phone_settings))


async def post(client, path, body, status=200, **kwargs):
    response = await client.post(path, json=body, headers=API_2024, **kwargs)
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def signed_in_by_code(client, twilio, phone=PHONE, index=0):
    await post(client, "/otp", {"phone": f"+{phone}"})
    text = await twilio.text_to(phone, index)
    return await post(client, "/verify", {"type": "sms", "phone": phone, "token": text.code})


async def test_sign_in_by_sms_sends_twilio_the_exact_request_and_verifies(phone_client, twilio, admin):
    sent = await post(phone_client, "/otp", {"phone": "+1 555-010-0001"})
    assert set(sent) == {"message_id"} and UUID.match(sent["message_id"])

    (text,) = await twilio.wait_for(1)
    assert text.path == f"/2010-04-01/Accounts/{twilio_stand_in.ACCOUNT_SID}/Messages.json"
    assert text.authorization == twilio.basic_auth()
    assert text.content_type == "application/x-www-form-urlencoded"
    assert text.form == {
        "To": f"+{PHONE}",
        "MessagingServiceSid": twilio_stand_in.MESSAGING_SERVICE_SID,
        "Body": f"Your code is {text.code}",
    }
    assert len(text.code) == 6

    session = await post(phone_client, "/verify", {"type": "sms", "phone": f"+{PHONE}", "token": text.code})
    user = session["user"]
    assert user["phone"] == PHONE and user["email"] == "" and user["phone_confirmed_at"]
    assert [i["provider"] for i in user["identities"]] == ["phone"]
    assert user["app_metadata"] == {"provider": "phone", "providers": ["phone"]}
    assert [entry["method"] for entry in claims_of(session["access_token"])["amr"]] == ["otp"]
    assert claims_of(session["access_token"])["phone"] == PHONE

    # The code was single-use; the outbox kept the provider's id and dropped the code.
    again = await post(phone_client, "/verify", {"type": "sms", "phone": PHONE, "token": text.code}, 403)
    assert again["code"] == "otp_expired"
    status, provider_id, payload, message_id = admin.execute(
        "select status, provider_message_id, payload, message_id::text from auth.sms_outbox"
    ).fetchone()
    assert (status, payload, message_id) == ("sent", {}, sent["message_id"])
    assert provider_id.startswith("SM")
    assert admin.execute("select count(*) from auth.one_time_tokens").fetchone()[0] == 0


async def test_whatsapp_goes_through_twilio_with_the_whatsapp_prefix(settings, twilio, aiohttp_client):
    # A sender number (not a Messaging Service) is prefixed too, as Twilio's WhatsApp API wants.
    config = twilio_stand_in.phone_settings(settings, twilio)
    client = await aiohttp_client(
        create_app(Settings(**{**vars(config), "sms_twilio_message_service_sid": "+15005550006"}))
    )
    await post(client, "/otp", {"phone": PHONE, "channel": "whatsapp"})
    (text,) = await twilio.wait_for(1)
    assert text.form["To"] == f"whatsapp:+{PHONE}"
    assert text.form["From"] == "whatsapp:+15005550006"
    assert "MessagingServiceSid" not in text.form
    await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": text.code})


async def test_phone_sign_up_confirm_and_password_sign_in(phone_client, twilio, admin):
    user = await post(phone_client, "/signup", {"phone": f"+{PHONE}", "password": PASSWORD})
    assert user["phone"] == PHONE and "phone_confirmed_at" not in user and user["confirmation_sent_at"]
    assert [i["provider"] for i in user["identities"]] == ["phone"]
    assert "sms" not in user  # the outbox row the request sent is not the client's business
    text = await twilio.text_to(PHONE)  # sent before the answer: already there

    refused = await post(phone_client, "/token?grant_type=password", {"phone": PHONE, "password": PASSWORD}, 400)
    assert refused["code"] == "phone_not_confirmed"
    wrong = await post(phone_client, "/token?grant_type=password", {"phone": PHONE, "password": "wrong one"}, 400)
    assert wrong["code"] == "invalid_credentials"

    await post(phone_client, "/verify", {"type": "sms", "phone": PHONE, "token": text.code})
    session = await post(phone_client, "/token?grant_type=password", {"phone": f"+{PHONE}", "password": PASSWORD})
    assert session["user"]["phone"] == PHONE
    assert [entry["method"] for entry in claims_of(session["access_token"])["amr"]] == ["password"]

    # Signing up a confirmed number again: a look-alike without identities, and no text.
    again = await post(phone_client, "/signup", {"phone": PHONE, "password": PASSWORD})
    assert again["identities"] == [] and again["id"] != user["id"]
    assert len(twilio.requests) == 1
    unknown = await post(
        phone_client, "/token?grant_type=password", {"phone": "15550100999", "password": PASSWORD}, 400
    )
    assert unknown["code"] == "invalid_credentials"
    audited = admin.execute(
        "select count(*) from auth.audit_log_entries where payload ->> 'action' = 'login_failed'"
    ).fetchone()[0]
    assert audited == 2


async def test_autoconfirm_signs_up_with_a_session_and_no_text(phone_settings, aiohttp_client, twilio):
    client = await aiohttp_client(create_app(Settings(**{**vars(phone_settings), "sms_autoconfirm": True})))
    session = await post(client, "/signup", {"phone": PHONE, "password": PASSWORD})
    assert session["user"]["phone_confirmed_at"] and session["access_token"]
    taken = await post(client, "/signup", {"phone": PHONE, "password": PASSWORD}, 422)
    assert taken["code"] == "user_already_exists"
    assert twilio.requests == []


async def test_phone_is_off_unless_enabled_and_numbers_must_be_e164(client, phone_client):
    for path, body, status in [
        ("/signup", {"phone": PHONE, "password": PASSWORD}, 400),
        ("/otp", {"phone": PHONE}, 400),
        ("/token?grant_type=password", {"phone": PHONE, "password": PASSWORD}, 422),
        ("/resend", {"type": "sms", "phone": PHONE}, 400),
        ("/verify", {"type": "sms", "phone": PHONE, "token": "123456"}, 400),
    ]:
        refused = await post(client, path, body, status)
        assert refused["code"] == "phone_provider_disabled", path
    settings = await (await client.get("/settings")).json()
    assert settings["external"]["phone"] is False and settings["sms_provider"] == ""
    settings = await (await phone_client.get("/settings")).json()
    assert settings["external"]["phone"] is True and settings["sms_provider"] == "twilio"
    assert settings["phone_autoconfirm"] is False

    for bad in ["0123456", "+1", "12345678901234567", "phone", "+1 (555) 0100"]:
        refused = await post(phone_client, "/otp", {"phone": bad}, 400)
        assert refused["code"] == "validation_failed", bad
    refused = await post(phone_client, "/otp", {"phone": PHONE, "channel": "pigeon"}, 400)
    assert refused["code"] == "validation_failed"
    refused = await post(phone_client, "/otp", {"email": "a@example.com", "channel": "sms"}, 400)
    assert refused["code"] == "validation_failed"


async def test_an_outage_delays_texts_and_loses_none_and_sends_each_once(phone_client, twilio, admin):
    twilio.mode = "500"
    phones = [f"1555010{n:04d}" for n in range(5)]
    for phone in phones:
        await post(phone_client, "/otp", {"phone": phone})
    # A sign-up's text is sent while the request waits; the outage only delays it.
    user = await post(phone_client, "/signup", {"phone": "15550109999", "password": PASSWORD})
    assert user["phone"] == "15550109999"
    phones.append("15550109999")
    await twilio.wait_for(len(phones), accepted=False)
    await until(lambda: admin.execute("select bool_and(last_error is not null) from auth.sms_outbox").fetchone()[0])
    assert twilio.accepted == []

    twilio.mode = "ok"
    await twilio.wait_for(len(phones))

    def settled():
        rows = dict(admin.execute("select status, count(*) from auth.sms_outbox group by status").fetchall())
        return None if rows.get("pending") or rows.get("sending") else rows

    assert await until(settled) == {"sent": len(phones)}
    assert sorted(text.form["To"] for text in twilio.accepted) == sorted(f"+{phone}" for phone in phones)
    # Each code that arrived works.
    for text in twilio.accepted:
        await post(phone_client, "/verify", {"type": "sms", "phone": text.form["To"], "token": text.code})


async def test_a_sign_up_answers_without_waiting_for_its_text(phone_client, twilio, admin):
    # Were the answer to wait for the provider, its time would tell a new number (a text goes) from a
    # registered one (none does).
    twilio.answering.clear()
    async with asyncio.timeout(10):  # bounds a wrong implementation, which would wait for the release
        answered = await post(phone_client, "/signup", {"phone": PHONE, "password": PASSWORD})
    assert answered["phone"] == PHONE
    await twilio.wait_for(1, accepted=False)  # the sender's request, still unanswered
    assert admin.execute("select status from auth.sms_outbox").fetchone()[0] == "sending"
    twilio.answering.set()
    await until(lambda: admin.execute("select status = 'sent' from auth.sms_outbox").fetchone()[0])
    code = (await twilio.text_to(PHONE)).code
    await post(phone_client, "/verify", {"type": "sms", "phone": PHONE, "token": code})


async def test_a_refused_number_leaves_no_half_made_user(phone_client, twilio, admin):
    twilio.mode = "refuse"
    # /signup answers at once, as /otp does: waiting for the provider would tell by the time it takes that
    # a text went, that is that the number was new. The sender meets the refusal and removes the user the
    # request created for that number.
    answered = await post(phone_client, "/signup", {"phone": PHONE, "password": PASSWORD})
    assert answered["phone"] == PHONE and answered["identities"]
    await until(lambda: admin.execute("select status = 'dead' from auth.sms_outbox").fetchone()[0])
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    assert admin.execute("select count(*) from auth.one_time_tokens").fetchone()[0] == 0
    status, error, payload = admin.execute("select status, last_error, payload from auth.sms_outbox").fetchone()
    assert status == "dead" and "21211" in error and payload == {}
    deleted = admin.execute(
        "select payload -> 'traits' ->> 'reason' from auth.audit_log_entries"
        " where payload ->> 'action' = 'user_deleted'"
    ).fetchall()
    assert deleted == [("sms_refused",)]

    await post(phone_client, "/otp", {"phone": "15550100002"})
    await until(lambda: admin.execute("select count(*) = 2 from auth.sms_outbox where status = 'dead'").fetchone()[0])
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0

    # The number is free again once the provider takes it.
    twilio.mode = "ok"
    await post(phone_client, "/signup", {"phone": PHONE, "password": PASSWORD})
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1


async def test_attempt_limit_is_exact_under_50_concurrent_wrong_codes(phone_settings, aiohttp_client, twilio, admin):
    client = await aiohttp_client(create_app(Settings(**{**vars(phone_settings), "mailer_otp_max_attempts": 60})))
    await post(client, "/otp", {"phone": PHONE})
    text = await twilio.text_to(PHONE)
    wrong = f"{(int(text.code) + 1) % 1_000_000:06d}"
    answers = await asyncio.gather(
        *(
            client.post("/verify", json={"type": "sms", "phone": PHONE, "token": wrong}, headers=API_2024)
            for _ in range(50)
        )
    )
    assert [a.status for a in answers] == [403] * 50
    assert {(await a.json())["code"] for a in answers} == {"otp_expired"}
    assert admin.execute("select attempts from auth.one_time_tokens").fetchone()[0] == 50
    await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": text.code})


async def test_the_code_dies_at_the_attempt_limit_even_under_concurrency(phone_client, twilio, admin):
    await post(phone_client, "/otp", {"phone": PHONE})
    text = await twilio.text_to(PHONE)
    wrong = f"{(int(text.code) + 1) % 1_000_000:06d}"
    answers = await asyncio.gather(
        *(phone_client.post("/verify", json={"type": "sms", "phone": PHONE, "token": wrong}) for _ in range(50))
    )
    assert [a.status for a in answers] == [403] * 50
    assert admin.execute("select count(*) from auth.one_time_tokens").fetchone()[0] == 0
    late = await post(phone_client, "/verify", {"type": "sms", "phone": PHONE, "token": text.code}, 403)
    assert late["code"] == "otp_expired"


async def test_known_and_unknown_numbers_get_identical_answers(phone_client, twilio, admin):
    await post(phone_client, "/signup", {"phone": PHONE, "password": PASSWORD})  # known, unconfirmed
    unknown = "15550100077"

    async def answer(path, body):
        response = await phone_client.post(path, json=body, headers=API_2024)
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("date", "x-request-id")}
        payload = await response.json()
        assert UUID.match(payload.pop("message_id"))
        return response.status, headers, payload

    for path, body in [
        ("/otp", {"create_user": False}),
        ("/resend", {"type": "sms"}),
        ("/resend", {"type": "phone_change"}),
    ]:
        known_answer = await answer(path, {**body, "phone": PHONE})
        unknown_answer = await answer(path, {**body, "phone": unknown})
        assert known_answer == unknown_answer == (200, known_answer[1], {}), path
    assert admin.execute("select count(*) from auth.users where phone = %s", (unknown,)).fetchone()[0] == 0


async def test_send_gap_and_hourly_budget_are_per_number_and_global(phone_settings, aiohttp_client):
    client = await aiohttp_client(
        create_app(Settings(**{**vars(phone_settings), "sms_max_frequency": 60, "rate_limit_sms_sent": 2}))
    )
    await post(client, "/otp", {"phone": PHONE})
    again = await post(client, "/otp", {"phone": PHONE}, 429)
    assert again["code"] == "over_sms_send_rate_limit"
    await post(client, "/otp", {"phone": "15550100002"})
    over = await post(client, "/otp", {"phone": "15550100003"}, 429)  # the hour's two are spent
    assert over["code"] == "over_sms_send_rate_limit"


async def test_fixed_test_codes_only_for_their_numbers_and_only_until_valid_until(
    phone_settings, aiohttp_client, twilio, admin
):
    fixed = "15555550100"
    config = Settings(
        **{
            **vars(phone_settings),
            "sms_test_otp": {fixed: "123456"},
            "sms_test_otp_valid_until": datetime.now(UTC) + timedelta(hours=1),
        }
    )
    client = await aiohttp_client(create_app(config))
    await post(client, "/otp", {"phone": f"+{fixed}"})
    await post(client, "/otp", {"phone": PHONE})
    await twilio.text_to(PHONE)
    assert [t.form["To"] for t in twilio.requests] == [f"+{PHONE}"]  # the fixed number got no text
    wrong = await post(client, "/verify", {"type": "sms", "phone": fixed, "token": "654321"}, 403)
    assert wrong["code"] == "otp_expired"
    other = await post(client, "/verify", {"type": "sms", "phone": PHONE, "token": "123456"}, 403)
    assert other["code"] == "otp_expired"
    session = await post(client, "/verify", {"type": "sms", "phone": fixed, "token": "123456"})
    assert session["user"]["phone"] == fixed

    # Once valid-until passes, the number is like any other: texted a real code, and 123456 is refused.
    admin.execute("update auth.settings set sms_test_otp_valid_until = now() - interval '1 second'")
    await post(client, "/otp", {"phone": fixed})
    text = await twilio.text_to(fixed)
    if text.code != "123456":
        late = await post(client, "/verify", {"type": "sms", "phone": fixed, "token": "123456"}, 403)
        assert late["code"] == "otp_expired"
    await post(client, "/verify", {"type": "sms", "phone": fixed, "token": text.code})

    with pytest.raises(ConfigError, match="AUTHGRES_SMS_TEST_OTP_VALID_UNTIL"):
        Settings(**{**vars(config), "sms_test_otp_valid_until": datetime.now(UTC) - timedelta(seconds=1)})
    with pytest.raises(ConfigError, match="AUTHGRES_SMS_TEST_OTP_VALID_UNTIL"):
        Settings(**{**vars(config), "sms_test_otp_valid_until": None})


async def test_phone_change_is_confirmed_by_a_code_texted_to_the_new_number(phone_client, twilio, admin):
    session = await signed_in_by_code(phone_client, twilio)
    new = "15550100042"
    response = await phone_client.put("/user", json={"phone": f"+{new}"}, headers={**API_2024, **bearer(session)})
    user = await response.json()
    assert response.status == 200, user
    assert user["phone"] == PHONE and user["new_phone"] == new and "sms" not in user
    text = await twilio.text_to(new)  # sent before the answer

    # resend sends the new number a fresh code; the old one dies.
    await post(phone_client, "/resend", {"type": "phone_change", "phone": new})
    fresh = await twilio.text_to(new, 1)
    if fresh.code != text.code:
        stale = await post(phone_client, "/verify", {"type": "phone_change", "phone": new, "token": text.code}, 403)
        assert stale["code"] == "otp_expired"
    changed = await post(phone_client, "/verify", {"type": "phone_change", "phone": new, "token": fresh.code})
    assert changed["user"]["phone"] == new and "new_phone" not in changed["user"]
    assert admin.execute("select phone, phone_change from auth.users").fetchone() == (new, "")

    # Another user's number is refused at once.
    other = await signed_in_by_code(phone_client, twilio, "15550100043")
    taken = await phone_client.put("/user", json={"phone": new}, headers={**API_2024, **bearer(other)})
    assert taken.status == 422 and (await taken.json())["code"] == "phone_exists"

    # A number the provider refuses: 422 sms_send_failed, and no pending change is left.
    twilio.mode = "refuse"
    refused = await phone_client.put("/user", json={"phone": "15550100044"}, headers={**API_2024, **bearer(other)})
    assert refused.status == 422 and (await refused.json())["code"] == "sms_send_failed"
    assert admin.execute("select phone_change from auth.users where phone = '15550100043'").fetchone() == ("",)


async def test_admin_creates_and_updates_phone_users(phone_client, admin_headers, twilio):
    response = await phone_client.post(
        "/admin/users",
        json={"phone": "+15550100050", "password": PASSWORD, "phone_confirm": True},
        headers={**API_2024, **admin_headers},
    )
    user = await response.json()
    assert response.status == 200, user
    assert user["phone"] == "15550100050" and user["phone_confirmed_at"] and user["email"] == ""
    assert [i["provider"] for i in user["identities"]] == ["phone"]
    await post(phone_client, "/token?grant_type=password", {"phone": "15550100050", "password": PASSWORD})

    taken = await phone_client.post(
        "/admin/users", json={"phone": "15550100050"}, headers={**API_2024, **admin_headers}
    )
    assert taken.status == 422 and (await taken.json())["code"] == "phone_exists"

    response = await phone_client.post(
        "/admin/users",
        json={"email": "both@example.com", "phone": "15550100051"},
        headers={**API_2024, **admin_headers},
    )
    both = await response.json()
    assert sorted(i["provider"] for i in both["identities"]) == ["email", "phone"]
    response = await phone_client.put(
        f"/admin/users/{both['id']}",
        json={"phone": "15550100052", "phone_confirm": True},
        headers={**API_2024, **admin_headers},
    )
    updated = await response.json()
    assert response.status == 200, updated
    assert updated["phone"] == "15550100052" and updated["phone_confirmed_at"]
    assert twilio.requests == []


@pytest.fixture
def admin_headers():
    return {"Authorization": "Bearer " + jwt.encode({"role": "service_role"}, JWT_SECRET, algorithm="HS256")}


async def test_phone_as_a_second_factor(phone_settings, aiohttp_client, twilio, admin):
    disabled = await aiohttp_client(create_app(phone_settings))
    session = await signed_in_by_code(disabled, twilio)
    refused = await disabled.post(
        "/factors", json={"factor_type": "phone", "phone": PHONE}, headers={**API_2024, **bearer(session)}
    )
    assert refused.status == 422 and (await refused.json())["code"] == "mfa_phone_enroll_not_enabled"

    client = await aiohttp_client(
        create_app(
            Settings(**{**vars(phone_settings), "mfa_phone_enroll_enabled": True, "mfa_phone_verify_enabled": True})
        )
    )
    password_user = await post(client, "/signup", {"phone": "15550100060", "password": PASSWORD})
    confirm = await twilio.text_to("15550100060")
    session = await post(client, "/verify", {"type": "sms", "phone": "15550100060", "token": confirm.code})
    del password_user
    headers = {**API_2024, **bearer(session)}
    factor_phone = "15550100061"
    response = await client.post(
        "/factors", json={"factor_type": "phone", "phone": f"+{factor_phone}"}, headers=headers
    )
    enrolled = await response.json()
    assert response.status == 200, enrolled
    assert enrolled["type"] == "phone" and enrolled["phone"] == factor_phone

    response = await client.post(f"/factors/{enrolled['id']}/challenge", json={"channel": "sms"}, headers=headers)
    challenge = await response.json()
    assert response.status == 200, challenge
    assert set(challenge) == {"id", "type", "expires_at"} and challenge["type"] == "phone"
    text = await twilio.text_to(factor_phone)

    wrong = f"{(int(text.code) + 1) % 1_000_000:06d}"
    response = await client.post(
        f"/factors/{enrolled['id']}/verify", json={"challenge_id": challenge["id"], "code": wrong}, headers=headers
    )
    assert response.status == 422 and (await response.json())["code"] == "mfa_verification_failed"
    response = await client.post(
        f"/factors/{enrolled['id']}/verify", json={"challenge_id": challenge["id"], "code": text.code}, headers=headers
    )
    raised = await response.json()
    assert response.status == 200, raised
    claims = claims_of(raised["access_token"])
    assert claims["aal"] == "aal2" and claims["amr"][0]["method"] == "phone"
    assert [f["factor_type"] for f in raised["user"]["factors"]] == ["phone"]
    assert (
        raised["user"]["factors"][0]["status"] == "verified" and raised["user"]["factors"][0]["phone"] == factor_phone
    )
    assert json.loads(json.dumps(raised)).get("recovery_codes") is None

    # WhatsApp as the channel; verify switched off refuses challenges.
    response = await client.post(
        f"/factors/{enrolled['id']}/challenge", json={"channel": "whatsapp"}, headers={**API_2024, **bearer(raised)}
    )
    assert response.status == 200
    assert (await twilio.text_to(factor_phone, 1)).form["To"] == f"whatsapp:+{factor_phone}"
    off = await aiohttp_client(create_app(Settings(**{**vars(phone_settings), "mfa_phone_enroll_enabled": True})))
    response = await off.post(f"/factors/{enrolled['id']}/challenge", json={}, headers={**API_2024, **bearer(raised)})
    assert response.status == 422 and (await response.json())["code"] == "mfa_phone_verify_not_enabled"


async def test_two_senders_never_send_one_text_twice(dsn, phone_settings, twilio, admin, service):
    service.execute("select auth.configure(%s, null)", (Jsonb(phone_settings.sql_settings()),))
    phones = [f"1555020{n:04d}" for n in range(30)]
    for phone in phones:
        service.execute("select auth.send_phone_otp(p_phone => %s)", (phone,))
    senders = []
    for _ in range(2):
        database = Database(dsn("authgres_service"), min_size=1, max_size=2)
        await database.open()
        senders.append((database, SmsSender(replace(phone_settings, mailer_sweep_seconds=0.01), database)))
    try:
        async with senders[0][1].open(background=True), senders[1][1].open(background=True):
            await twilio.wait_for(len(phones))
            await until(lambda: admin.execute("select bool_and(status = 'sent') from auth.sms_outbox").fetchone()[0])
    finally:
        for database, _ in senders:
            await database.close()
    assert sorted(text.form["To"] for text in twilio.requests) == sorted(f"+{phone}" for phone in phones)


async def test_metrics_show_the_sms_outbox(phone_settings, aiohttp_client, twilio, admin):
    config = Settings(**{**vars(phone_settings), "metrics_token": TOKEN, "sms_retry_base_seconds": 600})
    client = await aiohttp_client(create_app(config))
    scraped = await scrape(client)
    assert [value(scraped, "authgres_outbox_texts", status=s) for s in ("pending", "sending", "dead")] == [0, 0, 0]
    twilio.mode = "500"
    await post(client, "/otp", {"phone": PHONE})
    await until(lambda: admin.execute("select last_error is not null from auth.sms_outbox").fetchone()[0])
    twilio.mode = "refuse"
    await post(client, "/signup", {"phone": "15550100002", "password": PASSWORD})
    await until(lambda: admin.execute("select 1 from auth.sms_outbox where status = 'dead'").fetchone())
    admin.execute("update auth.sms_outbox set created_at = now() - interval '90 seconds'")
    scraped = await scrape(client)
    assert [value(scraped, "authgres_outbox_texts", status=s) for s in ("pending", "sending", "dead")] == [1, 0, 1]
    assert 90 <= value(scraped, "authgres_outbox_texts_oldest_seconds") < 120
