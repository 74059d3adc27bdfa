"""No user row before the number is proven (AUTHGRES_SIGNUP_DEFERRED) for phone sign-ups: a pending sign-up
and a texted code until POST /verify, with the same answers whether the number is new, pending or registered.
Texts go through the loopback stand-in for Twilio's Messages API (tests/http/twilio.py)."""

import asyncio
from dataclasses import replace

import pytest

from authgres.app import create_app
from tests.http import twilio as twilio_stand_in
from tests.http.helpers import API_2024, claims_of
from tests.http.mail import until
from tests.http.test_phone import UUID, post

PHONE = "15550100001"
PASSWORD = "a good password"
OTHER_PASSWORD = "another good password"
TIMES = ("confirmation_sent_at", "created_at", "updated_at")


@pytest.fixture
async def twilio(aiohttp_server):
    return await twilio_stand_in.start(aiohttp_server)


@pytest.fixture
def deferred_settings(settings, twilio):
    return twilio_stand_in.phone_settings(settings, twilio, signup_deferred=True)


@pytest.fixture
async def deferred(deferred_settings, aiohttp_client):
    return await aiohttp_client(create_app(deferred_settings))


def count(admin, table, where="true", *args):
    return admin.execute(f"select count(*) from auth.{table} where {where}", args).fetchone()[0]


def wrong(code):
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


async def sign_up(client, phone=PHONE, password=PASSWORD, status=200, **extra):
    """POST /signup {phone, password}: the answer without this request's times (checked to be there)."""
    answer = await post(client, "/signup", {"phone": phone, "password": password, **extra}, status)
    if status == 200:
        assert all(answer.pop(key) for key in TIMES), answer
    return answer


async def test_the_user_is_made_only_when_the_texted_code_is_verified(deferred, twilio, admin):
    answer = await sign_up(deferred, f"+{PHONE}", data={"plan": "free"}, channel="sms")
    assert UUID.match(answer.pop("id"))
    assert answer == {
        "aud": "authenticated",
        "role": "",
        "email": "",
        "phone": PHONE,
        "app_metadata": {"provider": "phone", "providers": ["phone"]},
        "user_metadata": {"plan": "free"},
        "identities": [],
        "is_anonymous": False,
    }
    text = await twilio.text_to(PHONE)  # sent while the request waited
    assert count(admin, "users") == 0 and count(admin, "identities") == 0
    phone, hashed, data = admin.execute("select phone, password_hash, data from auth.pending_signups").fetchone()
    assert (phone, data) == (PHONE, {"plan": "free"}) and hashed.startswith("$argon2id$")
    assert count(admin, "sms_outbox", "pending_signup_id is not null and user_id is null") == 1

    # No user yet: a password sign-in fails as for any unknown number.
    refused = await post(deferred, "/token?grant_type=password", {"phone": PHONE, "password": PASSWORD}, 400)
    assert refused["code"] == "invalid_credentials"

    session = await post(deferred, "/verify", {"type": "sms", "phone": f"+{PHONE}", "token": text.code})
    user = session["user"]
    assert user["phone"] == PHONE and user["phone_confirmed_at"] and user["user_metadata"]["plan"] == "free"
    assert user["user_metadata"]["phone_verified"] is True
    assert [(i["provider"], i["identity_data"]["phone_verified"]) for i in user["identities"]] == [("phone", True)]
    assert user["app_metadata"] == {"provider": "phone", "providers": ["phone"]}
    assert [entry["method"] for entry in claims_of(session["access_token"])["amr"]] == ["otp"]
    assert admin.execute("select id::text, phone from auth.users").fetchall() == [(user["id"], PHONE)]
    assert count(admin, "identities", "provider = 'phone'") == 1
    assert count(admin, "pending_signups") == 0 and count(admin, "one_time_tokens") == 0
    actions = [
        row[0] for row in admin.execute("select payload ->> 'action' from auth.audit_log_entries order by created_at")
    ]
    assert actions.count("user_signedup") == 1 and "login" in actions

    signed_in = await post(deferred, "/token?grant_type=password", {"phone": PHONE, "password": PASSWORD})
    assert signed_in["user"]["id"] == user["id"]
    again = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": text.code}, 403)
    assert again["code"] == "otp_expired"


async def test_new_pending_and_registered_numbers_get_the_same_answer(deferred_settings, aiohttp_client, twilio, admin):
    # Numbers registered before sign-ups were deferred (the settings are the installation's, so the
    # deferring server starts after): one confirmed, one still unconfirmed.
    plain = await aiohttp_client(create_app(replace(deferred_settings, signup_deferred=False)))
    old = "15550100002"
    await post(plain, "/signup", {"phone": old, "password": PASSWORD})
    await twilio.text_to(old)
    confirmed = "15550100003"
    await post(plain, "/otp", {"phone": confirmed})
    await post(plain, "/verify", {"type": "sms", "phone": confirmed, "token": (await twilio.text_to(confirmed)).code})
    deferred = await aiohttp_client(create_app(deferred_settings))
    texts = len(twilio.accepted)

    def shape(answer, phone):
        assert UUID.match(answer.pop("id")) and answer.pop("phone") == phone
        return answer

    new = shape(await sign_up(deferred), PHONE)
    pending = shape(await sign_up(deferred), PHONE)
    registered = shape(await sign_up(deferred, confirmed), confirmed)
    unconfirmed = shape(await sign_up(deferred, old), old)
    assert new == pending == registered == unconfirmed
    # The id is not the user's, and the same on every sign-up of a number.
    assert (await sign_up(deferred, confirmed))["id"] not in {
        row[0] for row in admin.execute("select id::text from auth.users")
    }
    assert (await sign_up(deferred))["id"] == (await sign_up(deferred))["id"]

    # The confirmed number got no text, the unconfirmed user a fresh code that confirms it, and no second user.
    await twilio.text_to(old, 1)
    assert [t.form["To"] for t in twilio.accepted[texts:]].count(f"+{confirmed}") == 0
    assert count(admin, "sms_outbox", "to_phone = %s", confirmed) == 1  # its /otp's above: none queued since
    assert count(admin, "pending_signups") == 1 and count(admin, "users") == 2
    code = [t for t in twilio.accepted if t.form["To"] == f"+{old}"][-1].code
    session = await post(deferred, "/verify", {"type": "sms", "phone": old, "token": code})
    assert session["user"]["phone_confirmed_at"] and count(admin, "users") == 2

    # POST /otp answers alike too; a new number's is a pending sign-up without a password.
    known = await post(deferred, "/otp", {"phone": confirmed})
    unknown = await post(deferred, "/otp", {"phone": "15550100004", "data": {"from": "otp"}})
    assert set(known) == set(unknown) == {"message_id"} and UUID.match(unknown["message_id"])
    assert count(admin, "users", "phone = '15550100004'") == 0
    text = await twilio.text_to("15550100004")
    session = await post(deferred, "/verify", {"type": "sms", "phone": "15550100004", "token": text.code})
    assert session["user"]["user_metadata"]["from"] == "otp"
    assert admin.execute("select encrypted_password from auth.users where phone = '15550100004'").fetchall() == [
        (None,)
    ]


async def test_a_second_sign_up_replaces_the_pending_one(deferred, twilio, admin):
    await sign_up(deferred, data={"first": True})
    first = await twilio.text_to(PHONE)
    await sign_up(deferred, password=OTHER_PASSWORD, data={"second": True})
    second = await twilio.text_to(PHONE, 1)
    assert count(admin, "pending_signups") == 1 and count(admin, "one_time_tokens") == 1
    assert admin.execute("select data from auth.pending_signups").fetchone()[0] == {"second": True}

    # Only the newest code lives, and it makes the newest sign-up's user.
    stale = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": first.code}, 403)
    assert stale["code"] == "otp_expired" and count(admin, "users") == 0
    session = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": second.code})
    assert session["user"]["user_metadata"].get("first") is None and session["user"]["user_metadata"]["second"]
    refused = await post(deferred, "/token?grant_type=password", {"phone": PHONE, "password": PASSWORD}, 400)
    assert refused["code"] == "invalid_credentials"
    await post(deferred, "/token?grant_type=password", {"phone": PHONE, "password": OTHER_PASSWORD})

    # A passwordless sign-in for a pending number replaces it too (the newest request is the sign-up).
    await sign_up(deferred, "15550100002")
    await twilio.text_to("15550100002")  # texts are sent after the answer: this one first
    await post(deferred, "/otp", {"phone": "15550100002"})
    text = await twilio.text_to("15550100002", 1)
    assert admin.execute("select password_hash from auth.pending_signups").fetchall() == [(None,)]
    await post(deferred, "/verify", {"type": "sms", "phone": "15550100002", "token": text.code})
    assert admin.execute("select encrypted_password from auth.users where phone = '15550100002'").fetchall() == [
        (None,)
    ]


async def test_concurrent_sign_ups_of_one_number_leave_one_pending_sign_up(deferred, twilio, admin):
    passwords = [f"password number {n}" for n in range(5)]
    answers = await asyncio.gather(*(deferred.post("/signup", json={"phone": PHONE, "password": p}) for p in passwords))
    assert [a.status for a in answers] == [200] * 5
    assert count(admin, "pending_signups") == 1 and count(admin, "one_time_tokens") == 1
    await twilio.wait_for(5)
    live = [t for t in twilio.accepted if t.form["To"] == f"+{PHONE}"]
    outcomes = [
        (await deferred.post("/verify", json={"type": "sms", "phone": PHONE, "token": t.code})).status for t in live
    ]
    assert sorted(outcomes) == [200, 403, 403, 403, 403]
    assert count(admin, "users") == 1
    tried = [
        (await deferred.post("/token?grant_type=password", json={"phone": PHONE, "password": p})).status
        for p in passwords
    ]
    assert sorted(tried) == [200, 400, 400, 400, 400]


async def test_two_verifications_of_one_pending_sign_up_make_exactly_one_user(deferred, twilio, admin):
    await sign_up(deferred)
    text = await twilio.text_to(PHONE)
    answers = await asyncio.gather(
        *(
            deferred.post("/verify", json={"type": "sms", "phone": PHONE, "token": text.code}, headers=API_2024)
            for _ in range(4)
        )
    )
    assert sorted(a.status for a in answers) == [200, 403, 403, 403]
    assert {(await a.json()).get("code") for a in answers if a.status == 403} == {"otp_expired"}
    assert count(admin, "users") == 1 and count(admin, "identities") == 1 and count(admin, "pending_signups") == 0
    assert count(admin, "sessions") == 1


async def test_expired_pending_sign_ups_and_codes_make_no_user(deferred, twilio, admin):
    await sign_up(deferred)
    code = (await twilio.text_to(PHONE)).code
    admin.execute("update auth.pending_signups set expires_at = now() - interval '1 second'")
    refused = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": code}, 403)
    assert refused["code"] == "otp_expired"
    assert count(admin, "users") == 0 and count(admin, "pending_signups") == 0 and count(admin, "one_time_tokens") == 0
    # A resend finds nothing live to refresh: nothing is texted, and the answer is the usual one.
    resent = await post(deferred, "/resend", {"type": "sms", "phone": PHONE})
    assert set(resent) == {"message_id"} and len(twilio.requests) == 1

    # The code expires with its pending sign-up; pruning removes both.
    await sign_up(deferred)
    code = (await twilio.text_to(PHONE, 1)).code
    admin.execute("update auth.one_time_tokens set expires_at = now() - interval '1 second'")
    refused = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": code}, 403)
    assert refused["code"] == "otp_expired" and count(admin, "users") == 0
    admin.execute("update auth.pending_signups set expires_at = now() - interval '1 second'")
    admin.execute("select auth.prune()")
    assert count(admin, "pending_signups") == 0 and count(admin, "one_time_tokens") == 0


async def test_wrong_codes_are_limited_as_for_any_code(deferred, twilio, admin):
    await sign_up(deferred)
    text = await twilio.text_to(PHONE)
    for attempt in range(1, 5):
        refused = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": wrong(text.code)}, 403)
        assert refused["code"] == "otp_expired"
        assert admin.execute("select attempts from auth.one_time_tokens").fetchone()[0] == attempt
    await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": wrong(text.code)}, 403)
    assert count(admin, "one_time_tokens") == 0  # the fifth wrong code killed it
    late = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": text.code}, 403)
    assert late["code"] == "otp_expired"
    assert count(admin, "users") == 0
    # A fresh sign-up texts a fresh code, which works.
    await sign_up(deferred)
    await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": (await twilio.text_to(PHONE, 1)).code})
    assert count(admin, "users") == 1


async def test_resend_texts_a_pending_sign_up_a_fresh_code(deferred, twilio, admin):
    await sign_up(deferred, data={"plan": "free"})
    first = await twilio.text_to(PHONE)
    admin.execute("update auth.pending_signups set expires_at = now() + interval '5 seconds'")
    resent = await post(deferred, "/resend", {"type": "sms", "phone": f"+{PHONE}"})
    assert set(resent) == {"message_id"} and UUID.match(resent["message_id"])
    second = await twilio.text_to(PHONE, 1)  # through the outbox
    assert (
        admin.execute(
            "select message_id::text from auth.sms_outbox where pending_signup_id is not null order by id desc limit 1"
        ).fetchone()[0]
        == resent["message_id"]
    )
    # It lives on (as long as a fresh code), with its password and metadata.
    assert admin.execute("select expires_at > now() + interval '30 seconds' from auth.pending_signups").fetchone()[0]
    assert count(admin, "pending_signups") == 1 and count(admin, "one_time_tokens") == 1
    stale = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": first.code}, 403)
    assert stale["code"] == "otp_expired"
    session = await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": second.code})
    assert session["user"]["user_metadata"]["plan"] == "free"
    await post(deferred, "/token?grant_type=password", {"phone": PHONE, "password": PASSWORD})


async def test_a_refused_number_leaves_no_pending_sign_up_and_no_user(deferred, twilio, admin):
    twilio.mode = "refuse"
    # Answered at once (the look-alike); the sender meets the refusal and removes the pending sign-up.
    await post(deferred, "/signup", {"phone": PHONE, "password": PASSWORD})
    await until(lambda: count(admin, "sms_outbox", "status = 'dead'") == 1)
    assert count(admin, "pending_signups") == 0 and count(admin, "users") == 0
    assert count(admin, "one_time_tokens") == 0
    status, error, payload = admin.execute("select status, last_error, payload from auth.sms_outbox").fetchone()
    assert status == "dead" and "21211" in error and payload == {}
    assert count(admin, "audit_log_entries", "payload ->> 'action' = 'user_deleted'") == 0  # no user ever was

    # POST /otp answers at once; the sender meets the refusal and removes the pending sign-up.
    sent = await post(deferred, "/otp", {"phone": "15550100002"})
    assert set(sent) == {"message_id"}
    await until(lambda: count(admin, "sms_outbox", "status = 'dead'") == 2)
    assert count(admin, "pending_signups") == 0 and count(admin, "users") == 0
    assert count(admin, "one_time_tokens") == 0

    # Once the provider takes the number, it signs up as any other.
    twilio.mode = "ok"
    await sign_up(deferred)
    await post(deferred, "/verify", {"type": "sms", "phone": PHONE, "token": (await twilio.text_to(PHONE)).code})
    assert count(admin, "users") == 1


async def test_autoconfirm_still_signs_up_at_once(deferred_settings, aiohttp_client, twilio, admin):
    client = await aiohttp_client(create_app(replace(deferred_settings, sms_autoconfirm=True)))
    session = await post(client, "/signup", {"phone": PHONE, "password": PASSWORD})
    assert session["access_token"] and session["user"]["phone_confirmed_at"]
    assert count(admin, "users") == 1 and count(admin, "pending_signups") == 0 and twilio.requests == []


async def test_a_sign_up_racing_the_verification_of_its_number_never_fails(deferred, twilio, admin):
    for round, phone in enumerate(f"1555010{n:04d}" for n in range(5)):
        await sign_up(deferred, phone)
        code = (await twilio.text_to(phone)).code
        signed_up, verified = await asyncio.gather(
            deferred.post("/signup", json={"phone": phone, "password": OTHER_PASSWORD}, headers=API_2024),
            deferred.post("/verify", json={"type": "sms", "phone": phone, "token": code}, headers=API_2024),
        )
        assert signed_up.status == 200, await signed_up.json()
        # Whichever went first: the verification made the user, or the newer sign-up replaced its code.
        assert verified.status in (200, 403), await verified.json()
        users = count(admin, "users", "phone = %s", phone)
        assert users == (1 if verified.status == 200 else 0), round
