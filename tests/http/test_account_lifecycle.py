"""An account's life beyond GoTrue: deleting one's own account, resetting a password in one call, no user
row before the address is proven, and development's fixed email codes."""

import asyncio
from datetime import UTC, datetime, timedelta

from tests.http.helpers import API_2024, bearer, sign_up
from tests.http.mail import code_in, fragment, link_in, outbox_settled
from tests.http.test_mfa import code_at, enrolled_and_verified

PASSWORD = "a good password"
NEW_PASSWORD = "another good password"


async def sign_in(client, email, password=PASSWORD):
    return await client.post("/token?grant_type=password", json={"email": email, "password": password})


async def delete_account(client, session, **body):
    return await client.request("DELETE", "/user", headers={**API_2024, **bearer(session)}, json=body)


async def error_code(response):
    return (await response.json())["code"]


# Deleting one's own account


async def test_deleting_an_account_needs_the_password_and_ends_every_way_in(client, admin):
    session = await sign_up(client, "leaving@example.com", PASSWORD)
    other = await (await sign_in(client, "leaving@example.com")).json()
    key = await (await client.post("/api_keys", json={"name": "script"}, headers=bearer(session))).json()

    wrong = await delete_account(client, session, password="not the password")
    assert (wrong.status, await error_code(wrong)) == (400, "invalid_credentials")
    missing = await delete_account(client, session)
    assert (missing.status, await error_code(missing)) == (400, "reauthentication_needed")
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1
    assert (await client.get("/user", headers=bearer(session))).status == 200

    failures = admin.execute(
        "select payload->'traits'->>'via' from auth.audit_log_entries where payload->>'action' = 'login_failed'"
    ).fetchall()
    assert failures == [("reauthentication",)]  # the wrong password is on record, like a failed sign-in

    response = await delete_account(client, session, password=PASSWORD)
    assert response.status == 204 and await response.read() == b""

    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    for credential in (session["access_token"], other["access_token"], key["key"]):
        refused = await client.get("/user", headers={**API_2024, "Authorization": f"Bearer {credential}"})
        assert refused.status == 403, credential
    refresh = await client.post("/token?grant_type=refresh_token", json={"refresh_token": other["refresh_token"]})
    assert refresh.status == 400
    assert (await sign_in(client, "leaving@example.com")).status == 400
    (entry,) = admin.execute(
        "select payload from auth.audit_log_entries where payload->>'action' = 'user_deleted'"
    ).fetchone()
    assert entry["actor_id"] == session["user"]["id"] and entry["log_type"] == "user"


async def test_soft_deletion_keeps_the_row_but_nothing_that_signs_in(make_client, admin):
    client = await make_client(account_deletion="soft")
    session = await sign_up(client, "soft@example.com", PASSWORD)
    key = await (await client.post("/api_keys", json={"name": "script"}, headers=bearer(session))).json()
    assert (await delete_account(client, session, password=PASSWORD)).status == 204

    email, deleted_at, password = admin.execute(
        "select email, deleted_at, encrypted_password from auth.users where id = %s", (session["user"]["id"],)
    ).fetchone()
    assert email is None and deleted_at is not None and password is None
    assert admin.execute(
        "select count(*) from auth.api_keys where user_id = %s and revoked_at is null", (session["user"]["id"],)
    ).fetchone() == (0,)
    for table in ("sessions", "identities"):
        count = admin.execute(f"select count(*) from auth.{table} where user_id = %s", (session["user"]["id"],))
        assert count.fetchone() == (0,), table
    assert (await client.get("/user", headers={"Authorization": f"Bearer {key['key']}"})).status == 403
    # The address is free again.
    assert (await sign_up(client, "soft@example.com", PASSWORD))["user"]["id"] != session["user"]["id"]


async def test_a_user_without_a_password_deletes_with_a_reauthentication_nonce(mail_client, inbox, admin):
    await mail_client.post("/otp", json={"email": "nopass@example.com"})
    code = code_in(await inbox.next_to("nopass@example.com"))
    verified = await mail_client.post("/verify", json={"type": "email", "email": "nopass@example.com", "token": code})
    session = await verified.json()

    missing = await delete_account(mail_client, session)
    assert (missing.status, await error_code(missing)) == (400, "reauthentication_needed")
    assert (await mail_client.get("/reauthenticate", headers=bearer(session))).status == 200
    nonce = code_in(await inbox.next_to("nopass@example.com", 1))
    wrong = await delete_account(mail_client, session, nonce="000000" if nonce != "000000" else "111111")
    assert (wrong.status, await error_code(wrong)) == (422, "reauthentication_not_valid")
    assert (await delete_account(mail_client, session, nonce=nonce)).status == 204
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_an_anonymous_user_deletes_itself_without_a_password(client, admin):
    session = await (await client.post("/signup", json={})).json()
    assert session["user"]["is_anonymous"] is True
    assert (await delete_account(client, session)).status == 204
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_a_user_with_mfa_deletes_from_an_aal2_session_only(client, admin):
    aal2, factor = await enrolled_and_verified(client, "mfa-leaving@example.com")
    aal1 = await (await sign_in(client, "mfa-leaving@example.com")).json()
    refused = await delete_account(client, aal1, password=PASSWORD)
    assert (refused.status, await error_code(refused)) == (403, "insufficient_aal")
    wrong = await delete_account(client, aal2, password="not the password")
    assert (wrong.status, await error_code(wrong)) == (400, "invalid_credentials")
    assert (await delete_account(client, aal2)).status == 204  # the proven factor is the proof
    assert admin.execute("select count(*) from auth.mfa_factors").fetchone()[0] == 0
    assert code_at(factor["totp"]["secret"])  # the factor existed, with a secret


async def test_deleting_needs_a_session_not_an_api_key_nor_nothing(client, admin):
    session = await sign_up(client, "keyed@example.com", PASSWORD)
    key = await (await client.post("/api_keys", json={"name": "script"}, headers=bearer(session))).json()
    # Refused before the password is looked at: a key cannot learn whether a password is right.
    for password in (PASSWORD, "not the password"):
        by_key = await client.request(
            "DELETE",
            "/user",
            headers={**API_2024, "Authorization": f"Bearer {key['key']}"},
            json={"password": password},
        )
        assert (by_key.status, await error_code(by_key)) == (403, "session_required")
    anonymous = await client.request("DELETE", "/user", json={"password": PASSWORD})
    assert anonymous.status == 401
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1


async def test_the_before_user_deleted_hook_can_veto(make_client, admin):
    admin.execute("""
        create function public.keep_admins(event jsonb) returns jsonb language sql as $$
          select case when event->'user'->>'email' like 'admin%' and event->'metadata'->>'actor' = 'self'
                      then jsonb_build_object('error', jsonb_build_object('message', 'Admins cannot leave'))
                      else '{}'::jsonb end
        $$;
        grant execute on function public.keep_admins(jsonb) to authgres_hook""")
    client = await make_client(hook_before_user_deleted="public.keep_admins")
    kept = await sign_up(client, "admin@example.com", PASSWORD)
    vetoed = await delete_account(client, kept, password=PASSWORD)
    assert vetoed.status == 400 and (await vetoed.json())["message"] == "Admins cannot leave"
    assert (await client.get("/user", headers=bearer(kept))).status == 200
    leaving = await sign_up(client, "someone@example.com", PASSWORD)
    assert (await delete_account(client, leaving, password=PASSWORD)).status == 204
    assert admin.execute("select email from auth.users").fetchall() == [("admin@example.com",)]


# Resetting a password in one call


async def recovery_code(mail_client, inbox, address, index=0):
    assert (await mail_client.post("/recover", json={"email": address})).status == 200
    return code_in(await inbox.next_to(address, index))


async def confirmed_user(mail_client, admin, address):
    response = await mail_client.post("/signup", json={"email": address, "password": PASSWORD})
    assert response.status == 200
    admin.execute("update auth.users set email_confirmed_at = now() where email = %s", (address,))


async def test_a_recovery_code_and_a_new_password_in_one_call(mail_client, inbox, admin):
    await confirmed_user(mail_client, admin, "reset@example.com")
    elsewhere = await (await sign_in(mail_client, "reset@example.com")).json()
    code = await recovery_code(mail_client, inbox, "reset@example.com", 1)
    response = await mail_client.post(
        "/verify", json={"type": "recovery", "email": "reset@example.com", "token": code, "password": NEW_PASSWORD}
    )
    session = await response.json()
    assert response.status == 200, session
    assert (await mail_client.get("/user", headers=bearer(session))).status == 200
    assert (await sign_in(mail_client, "reset@example.com")).status == 400
    assert (await sign_in(mail_client, "reset@example.com", NEW_PASSWORD)).status == 200
    # Whoever was signed in before the reset is signed out.
    stale = await mail_client.post(
        "/token?grant_type=refresh_token", json={"refresh_token": elsewhere["refresh_token"]}
    )
    assert stale.status == 400
    actions = [row[0] for row in admin.execute("select payload->>'action' from auth.audit_log_entries")]
    assert "user_updated_password" in actions


async def test_a_reset_that_fails_changes_nothing(mail_client, inbox, admin):
    await confirmed_user(mail_client, admin, "careful@example.com")
    code = await recovery_code(mail_client, inbox, "careful@example.com", 1)
    (hash_before,) = admin.execute(
        "select encrypted_password from auth.users where email = 'careful@example.com'"
    ).fetchone()

    def reset(**changes):
        body = {"type": "recovery", "email": "careful@example.com", "token": code, "password": NEW_PASSWORD}
        return mail_client.post("/verify", headers=API_2024, json={**body, **changes})

    weak = await reset(password="short")
    assert (weak.status, await error_code(weak)) == (422, "weak_password")
    wrong_type = await reset(type="magiclink")
    assert (wrong_type.status, await error_code(wrong_type)) == (400, "validation_failed")
    wrong_code = await reset(token="000000" if code != "000000" else "111111")
    assert (wrong_code.status, await error_code(wrong_code)) == (403, "otp_expired")
    assert admin.execute(
        "select encrypted_password from auth.users where email = 'careful@example.com'"
    ).fetchone() == (hash_before,)
    # The code survived every refusal but the one wrong guess counted against it, and it still works.
    assert (await reset()).status == 200


async def test_the_two_step_reset_still_works(mail_client, inbox, admin):
    await confirmed_user(mail_client, admin, "twostep@example.com")
    code = await recovery_code(mail_client, inbox, "twostep@example.com", 1)
    verified = await mail_client.post(
        "/verify", json={"type": "recovery", "email": "twostep@example.com", "token": code}
    )
    session = await verified.json()
    changed = await mail_client.put("/user", headers=bearer(session), json={"password": NEW_PASSWORD})
    assert changed.status == 200
    assert (await sign_in(mail_client, "twostep@example.com", NEW_PASSWORD)).status == 200


# No user row before the address is proven


async def timeless(response):
    """A deferred sign-up's answer without its times (this request's, whatever the address): the rest must
    be the same for a new, a pending and a registered address."""
    answer = await response.json()
    times = {key: answer.pop(key) for key in ("confirmation_sent_at", "created_at", "updated_at")}
    assert all(times.values())
    return response.status, answer


async def test_deferred_sign_up_makes_the_user_only_when_the_code_is_verified(make_client, mail_settings, inbox, admin):
    client = await make_client(
        smtp_port=mail_settings.smtp_port,
        smtp_host="127.0.0.1",
        smtp_tls="none",
        mailer_autoconfirm=False,
        signup_deferred=True,
    )
    signup = {"email": "later@example.com", "password": PASSWORD, "data": {"plan": "free"}}
    new = await client.post("/signup", json=signup)
    assert new.status == 200
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    assert admin.execute("select count(*) from auth.pending_signups").fetchone()[0] == 1
    first = await inbox.next_to("later@example.com")
    pending = await client.post("/signup", json=signup)
    second = await inbox.next_to("later@example.com", 1)
    assert await timeless(pending) == await timeless(new)
    assert (await sign_in(client, "later@example.com")).status == 400

    response = await client.post(
        "/verify", json={"type": "signup", "email": "later@example.com", "token": code_in(first)}
    )
    session = await response.json()
    assert response.status == 200, session
    assert session["user"]["email_confirmed_at"] and session["user"]["user_metadata"]["plan"] == "free"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1
    assert (await sign_in(client, "later@example.com")).status == 200

    registered = await client.post("/signup", json=signup)
    assert await timeless(registered) == await timeless(new)
    # The other pending sign-up's link can no longer make a second user.
    late = await client.get(link_in(second), allow_redirects=False)
    assert fragment(late.headers["Location"])["error_code"] == "otp_expired"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1
    await outbox_settled(admin)
    assert len([m for m in inbox.messages if m["To"] == "later@example.com"]) == 2


async def deferred_client(make_client, mail_settings):
    return await make_client(
        smtp_port=mail_settings.smtp_port,
        smtp_host="127.0.0.1",
        smtp_tls="none",
        mailer_autoconfirm=False,
        signup_deferred=True,
    )


async def test_racing_pending_sign_ups_make_exactly_one_user(make_client, mail_settings, inbox, admin):
    client = await deferred_client(make_client, mail_settings)
    passwords = [f"password number {n}" for n in range(4)]
    for password in passwords:
        assert (await client.post("/signup", json={"email": "race@example.com", "password": password})).status == 200
    codes = [code_in(await inbox.next_to("race@example.com", n)) for n in range(len(passwords))]
    answers = await asyncio.gather(
        *(client.post("/verify", json={"type": "signup", "email": "race@example.com", "token": code}) for code in codes)
    )
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [200, 403, 403, 403]
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1
    # The emails may arrive in any order, so which sign-up won is not known here: exactly one password works.
    tried = [(await sign_in(client, "race@example.com", password)).status for password in passwords]
    assert sorted(tried) == [200, 400, 400, 400]


async def test_pending_sign_ups_by_link_resend_and_expiry(make_client, mail_settings, inbox, admin):
    client = await deferred_client(make_client, mail_settings)
    await client.post("/signup", json={"email": "linked@example.com", "password": PASSWORD})
    first = await inbox.next_to("linked@example.com")
    assert (await client.post("/resend", json={"type": "signup", "email": "linked@example.com"})).status == 200
    resent = await inbox.next_to("linked@example.com", 1)
    assert code_in(resent) != code_in(first) or link_in(resent) != link_in(first)
    stale = await client.get(link_in(first), allow_redirects=False)
    assert fragment(stale.headers["Location"])["error_code"] == "otp_expired"
    done = await client.get(link_in(resent), allow_redirects=False)
    assert "access_token" in fragment(done.headers["Location"])
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1

    # An expired pending sign-up cannot be verified, and pruning removes it with its token.
    await client.post("/signup", json={"email": "expired@example.com", "password": PASSWORD})
    code = code_in(await inbox.next_to("expired@example.com"))
    admin.execute("update auth.pending_signups set expires_at = now() - interval '1 second'")
    refused = await client.post("/verify", json={"type": "signup", "email": "expired@example.com", "token": code})
    assert refused.status == 403
    admin.execute("update auth.one_time_tokens set expires_at = now() - interval '1 second'")
    admin.execute("select auth.prune()")
    assert admin.execute("select count(*) from auth.pending_signups").fetchone()[0] == 0
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1


async def test_a_passwordless_sign_in_for_a_new_address_is_deferred_too(make_client, mail_settings, inbox, admin):
    client = await deferred_client(make_client, mail_settings)
    assert await (await client.post("/otp", json={"email": "otp-new@example.com"})).json() == {}
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    code = code_in(await inbox.next_to("otp-new@example.com"))
    response = await client.post("/verify", json={"type": "email", "email": "otp-new@example.com", "token": code})
    assert response.status == 200
    assert admin.execute("select encrypted_password from auth.users").fetchall() == [(None,)]


# Fixed codes for development


async def test_fixed_codes_only_for_listed_addresses_and_only_before_their_time(
    make_client, mail_settings, inbox, admin
):
    client = await make_client(
        smtp_port=mail_settings.smtp_port,
        smtp_host="127.0.0.1",
        smtp_tls="none",
        mailer_autoconfirm=False,
        mailer_test_otp={"dev@example.com": "123456"},
        mailer_test_otp_valid_until=datetime.now(UTC) + timedelta(hours=1),
    )
    await client.post("/otp", json={"email": "dev@example.com"})
    await client.post("/otp", json={"email": "real@example.com"})
    real = await inbox.next_to("real@example.com")
    await outbox_settled(admin)
    assert [m["To"] for m in inbox.messages] == ["real@example.com"]
    assert admin.execute("select count(*) from auth.email_outbox where to_address = 'dev@example.com'").fetchone() == (
        0,
    )
    guessed = await client.post("/verify", json={"type": "email", "email": "real@example.com", "token": "123456"})
    assert guessed.status == 403 or code_in(real) == "123456"
    wrong = await client.post("/verify", json={"type": "email", "email": "dev@example.com", "token": "654321"})
    assert wrong.status == 403
    fixed = await client.post("/verify", json={"type": "email", "email": "dev@example.com", "token": "123456"})
    assert fixed.status == 200

    # Past its time the address is like any other: a random code, sent by email.
    admin.execute("update auth.settings set mailer_test_otp_valid_until = now() - interval '1 second'")
    await client.post("/otp", json={"email": "dev@example.com"})
    emailed = await inbox.next_to("dev@example.com")
    if code_in(emailed) != "123456":
        late = await client.post("/verify", json={"type": "email", "email": "dev@example.com", "token": "123456"})
        assert late.status == 403
    assert (
        await client.post("/verify", json={"type": "email", "email": "dev@example.com", "token": code_in(emailed)})
    ).status == 200
