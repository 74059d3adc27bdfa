"""What email flows must not give away or allow: enumeration, replays, guessing, floods."""

import ipaddress

import pytest

from tests.http.helpers import API_2024, sign_up
from tests.http.mail import code_in, outbox_settled


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/otp", {"create_user": False}),
        ("/otp", {}),
        ("/recover", {}),
        ("/resend", {"type": "signup"}),
        ("/magiclink", {}),
    ],
)
async def test_known_and_unknown_addresses_get_byte_identical_answers(make_client, path, body, admin):
    client = await make_client(mailer_autoconfirm=False)
    await client.post("/signup", json={"email": "known@example.com", "password": "a good password"})
    if path != "/resend":  # resend answers for a pending sign-up; a confirmed one is the other case
        admin.execute("update auth.users set email_confirmed_at = now()")
    answers = []
    for address in ("known@example.com", "unknown@example.com"):
        response = await client.post(path, json={**body, "email": address}, headers=API_2024)
        # Date and the request id (drawn at random for each request) differ whatever the address.
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("date", "x-request-id")}
        answers.append((response.status, headers, await response.read()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 200 and answers[0][2] == b"{}"


async def test_send_throttle_is_per_address_known_or_not(make_client, admin):
    client = await make_client(mailer_autoconfirm=False, smtp_max_frequency=60)
    await client.post("/signup", json={"email": "known@example.com", "password": "a good password"})
    admin.execute("update auth.users set email_confirmed_at = now()")
    for address in ("known@example.com", "unknown@example.com"):
        first = await client.post("/recover", json={"email": address}, headers=API_2024)
        second = await client.post("/recover", json={"email": address}, headers=API_2024)
        assert first.status == 200
        assert second.status == 429
        assert (await second.json())["code"] == "over_email_send_rate_limit"
        assert 0 < int(second.headers["Retry-After"]) <= 60
    # Another kind of email to the same address is not held back by the recovery gap.
    assert (await client.post("/otp", json={"email": "known@example.com"})).status == 200
    assert admin.execute("select count(*) from auth.email_outbox").fetchone()[0] == 3  # signup, recovery, otp


async def test_hourly_budget_per_ip(make_client, admin):
    client = await make_client(
        mailer_autoconfirm=False, rate_limit_email_per_ip=3, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),)
    )
    statuses = []
    for n in range(5):
        response = await client.post(
            "/otp", json={"email": f"flood{n}@example.com"}, headers={**API_2024, "X-Forwarded-For": "198.51.100.9"}
        )
        statuses.append(response.status)
    assert statuses == [200, 200, 200, 429, 429]
    assert (await response.json())["code"] == "over_request_rate_limit"
    assert int(response.headers["Retry-After"]) > 0
    other_ip = await client.post(
        "/otp", json={"email": "elsewhere@example.com"}, headers={"X-Forwarded-For": "198.51.100.10"}
    )
    assert other_ip.status == 200
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 4  # refused requests made nothing


async def test_wrong_codes_kill_the_token(mail_client, inbox, admin):
    await mail_client.post("/otp", json={"email": "guess@example.com"})
    code = code_in(await inbox.next_to("guess@example.com"))
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    for attempt in range(5):
        response = await mail_client.post(
            "/verify", headers=API_2024, json={"type": "email", "email": "guess@example.com", "token": wrong}
        )
        assert response.status == 403, attempt
        assert (await response.json())["code"] == "otp_expired"
    right = await mail_client.post(
        "/verify", headers=API_2024, json={"type": "email", "email": "guess@example.com", "token": code}
    )
    assert right.status == 403
    assert admin.execute("select count(*) from auth.one_time_tokens").fetchone()[0] == 0
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 0


async def test_expired_code_fails(mail_client, inbox, admin):
    await mail_client.post("/otp", json={"email": "late@example.com"})
    code = code_in(await inbox.next_to("late@example.com"))
    admin.execute("update auth.one_time_tokens set expires_at = now() - interval '1 second'")
    response = await mail_client.post(
        "/verify", headers=API_2024, json={"type": "email", "email": "late@example.com", "token": code}
    )
    assert response.status == 403
    assert (await response.json())["code"] == "otp_expired"


async def test_a_code_for_one_purpose_does_not_serve_another(mail_client, inbox, admin):
    await sign_up(mail_client, "purpose@example.com")
    code = code_in(await inbox.next_to("purpose@example.com"))
    response = await mail_client.post(
        "/verify", headers=API_2024, json={"type": "recovery", "email": "purpose@example.com", "token": code}
    )
    assert response.status == 403
    response = await mail_client.post("/verify", json={"type": "signup", "email": "purpose@example.com", "token": code})
    assert response.status == 200


async def test_codes_and_links_are_not_stored(mail_client, inbox, admin):
    await mail_client.post("/otp", json={"email": "stored@example.com"})
    message = await inbox.next_to("stored@example.com")
    code = code_in(message)
    rows = admin.execute("select t::text from auth.one_time_tokens t").fetchall()
    assert rows and all(code not in row[0] for row in rows)
    assert await outbox_settled(admin) == {"sent": 1}
    payload = admin.execute("select payload from auth.email_outbox").fetchone()[0]
    assert "token" not in payload and "token_hash" not in payload


async def test_verify_input_errors(client):
    cases = [
        ({}, "validation_failed"),
        ({"type": "signup"}, "validation_failed"),
        ({"type": "bogus", "token_hash": "x"}, "validation_failed"),
        ({"type": "signup", "email": "not-an-email", "token": "123456"}, "validation_failed"),
    ]
    for body, code in cases:
        response = await client.post("/verify", json=body, headers=API_2024)
        assert response.status == 400, body
        assert (await response.json())["code"] == code
