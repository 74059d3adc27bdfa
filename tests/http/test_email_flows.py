"""Every email flow finished by the code and by the link, with a real SMTP server."""

from tests.http.helpers import API_2024, bearer
from tests.http.mail import code_in, fragment, link_in, text_of, token_hash_in

PASSWORD = "a good password"


async def signed_up(client, inbox, address):
    response = await client.post("/signup", json={"email": address, "password": PASSWORD})
    assert response.status == 200
    user = await response.json()
    assert "access_token" not in user and user["confirmation_sent_at"]
    return user, await inbox.next_to(address)


async def test_signup_confirmation_by_code(mail_client, inbox, admin):
    user, message = await signed_up(mail_client, inbox, "code@example.com")
    assert message["Subject"] == "Confirm your email"
    response = await mail_client.post(
        "/verify", json={"type": "signup", "email": "code@example.com", "token": code_in(message)}
    )
    session = await response.json()
    assert response.status == 200, session
    assert session["user"]["id"] == user["id"]
    assert session["user"]["email_confirmed_at"]
    assert session["user"]["user_metadata"]["email_verified"] is True
    assert set(session) == {"access_token", "token_type", "expires_in", "expires_at", "refresh_token", "user"}
    # Single use.
    again = await mail_client.post(
        "/verify", headers=API_2024, json={"type": "signup", "email": "code@example.com", "token": code_in(message)}
    )
    assert again.status == 403
    assert (await again.json())["code"] == "otp_expired"
    # And now the password works.
    login = await mail_client.post(
        "/token?grant_type=password", json={"email": "code@example.com", "password": PASSWORD}
    )
    assert login.status == 200


async def test_signup_confirmation_by_link(mail_client, inbox, admin):
    _, message = await signed_up(mail_client, inbox, "link@example.com")
    response = await mail_client.get(link_in(message), allow_redirects=False)
    assert response.status == 303
    location = response.headers["Location"]
    assert location.split("#")[0].rstrip("/") == "http://localhost:3000"
    tokens = fragment(location)
    assert tokens["token_type"] == "bearer" and tokens["type"] == "signup"
    me = await mail_client.get("/user", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert (await me.json())["email_confirmed_at"]
    replay = await mail_client.get(link_in(message), allow_redirects=False)
    assert fragment(replay.headers["Location"])["error_code"] == "otp_expired"


async def test_magic_link_by_token_hash_and_passwordless_code(mail_client, inbox, admin):
    # A new address: /otp creates the user on first verification.
    assert await (await mail_client.post("/otp", json={"email": "new@example.com"})).json() == {}
    first = await inbox.next_to("new@example.com")
    response = await mail_client.post(
        "/verify", json={"type": "email", "email": "new@example.com", "token": code_in(first)}
    )
    assert response.status == 200
    assert (await response.json())["user"]["email_confirmed_at"]
    # A known, confirmed address gets a magic link; verifyOtp({token_hash}) signs in.
    await mail_client.post("/otp", json={"email": "new@example.com"})
    second = await inbox.next_to("new@example.com", 1)
    assert second["Subject"] == "Your sign-in code"
    assert code_in(second) in text_of(second) and "/verify?token=" in text_of(second)
    response = await mail_client.post("/verify", json={"type": "magiclink", "token_hash": token_hash_in(second)})
    session = await response.json()
    assert response.status == 200, session
    claims = admin.execute("select auth.access_token_claims(%s)", (session["access_token"],)).fetchone()[0]
    assert claims["amr"][0]["method"] == "otp"


async def test_otp_without_create_user_sends_nothing_and_says_nothing(mail_client, inbox, admin):
    response = await mail_client.post("/otp", json={"email": "ghost@example.com", "create_user": False})
    assert response.status == 200 and await response.json() == {}
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    assert admin.execute("select count(*) from auth.email_outbox").fetchone()[0] == 0


async def test_recovery_then_new_password(mail_client, inbox, admin):
    _, confirmation = await signed_up(mail_client, inbox, "forgot@example.com")
    await mail_client.get(link_in(confirmation), allow_redirects=False)
    assert await (await mail_client.post("/recover", json={"email": "forgot@example.com"})).json() == {}
    message = await inbox.next_to("forgot@example.com", 1)
    assert message["Subject"] == "Reset your password"
    response = await mail_client.post(
        "/verify", json={"type": "recovery", "email": "forgot@example.com", "token": code_in(message)}
    )
    session = await response.json()
    assert response.status == 200
    updated = await mail_client.put("/user", json={"password": "a brand new password"}, headers=bearer(session))
    assert updated.status == 200
    old = await mail_client.post(
        "/token?grant_type=password", json={"email": "forgot@example.com", "password": PASSWORD}
    )
    assert old.status == 400
    new = await mail_client.post(
        "/token?grant_type=password", json={"email": "forgot@example.com", "password": "a brand new password"}
    )
    assert new.status == 200


async def test_recovery_by_link(mail_client, inbox):
    _, confirmation = await signed_up(mail_client, inbox, "linkrec@example.com")
    await mail_client.get(link_in(confirmation), allow_redirects=False)
    await mail_client.post("/recover?redirect_to=http://localhost:3000/reset", json={"email": "linkrec@example.com"})
    message = await inbox.next_to("linkrec@example.com", 1)
    response = await mail_client.get(link_in(message), allow_redirects=False)
    location = response.headers["Location"]
    assert location.startswith("http://localhost:3000/reset#")
    tokens = fragment(location)
    assert tokens["type"] == "recovery"
    updated = await mail_client.put(
        "/user", json={"password": "set from the link"}, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert updated.status == 200
    login = await mail_client.post(
        "/token?grant_type=password", json={"email": "linkrec@example.com", "password": "set from the link"}
    )
    assert login.status == 200


async def test_email_change_needs_both_addresses(mail_client, inbox, admin):
    _, confirmation = await signed_up(mail_client, inbox, "old@example.com")
    session = fragment((await mail_client.get(link_in(confirmation), allow_redirects=False)).headers["Location"])
    response = await mail_client.put("/user", json={"email": "New@Example.com"}, headers=bearer(session))
    user = await response.json()
    assert response.status == 200, user
    assert user["email"] == "old@example.com" and user["new_email"] == "new@example.com"
    to_old = await inbox.next_to("old@example.com", 1)
    to_new = await inbox.next_to("new@example.com")
    assert "new@example.com" in text_of(to_old)

    first = await mail_client.post(
        "/verify", json={"type": "email_change", "email": "old@example.com", "token": code_in(to_old)}
    )
    assert first.status == 200
    assert "other email" in (await first.json())["msg"]
    assert admin.execute("select email from auth.users").fetchone()[0] == "old@example.com"

    second = await mail_client.get(link_in(to_new), allow_redirects=False)
    tokens = fragment(second.headers["Location"])
    me = await (await mail_client.get("/user", headers={"Authorization": f"Bearer {tokens['access_token']}"})).json()
    assert me["email"] == "new@example.com"
    assert "new_email" not in me
    assert me["identities"][0]["identity_data"]["email"] == "new@example.com"


async def test_email_change_to_a_taken_address(mail_client, inbox, admin):
    _, confirmation = await signed_up(mail_client, inbox, "one@example.com")
    session = fragment((await mail_client.get(link_in(confirmation), allow_redirects=False)).headers["Location"])
    await signed_up(mail_client, inbox, "two@example.com")
    response = await mail_client.put(
        "/user", json={"email": "two@example.com"}, headers={**API_2024, **bearer(session)}
    )
    assert response.status == 422
    assert (await response.json())["code"] == "email_exists"


async def test_reauthentication_nonce_for_a_password_change(make_client, mail_settings, inbox, admin):
    from dataclasses import replace

    client = await make_client(**{**vars(replace(mail_settings, secure_password_change=True))})
    await client.post("/signup", json={"email": "re@example.com", "password": PASSWORD})
    confirmation = await inbox.next_to("re@example.com")
    session = fragment((await client.get(link_in(confirmation), allow_redirects=False)).headers["Location"])
    admin.execute("update auth.sessions set created_at = now() - interval '2 days'")

    refused = await client.put("/user", json={"password": "another password"}, headers={**API_2024, **bearer(session)})
    assert refused.status == 400
    assert (await refused.json())["code"] == "reauthentication_needed"

    assert await (await client.get("/reauthenticate", headers=bearer(session))).json() == {}
    message = await inbox.next_to("re@example.com", 1)
    assert message["Subject"] == "Confirm it is you"
    assert "/verify" not in text_of(message)  # a nonce is a code only
    wrong = await client.put(
        "/user", json={"password": "another password", "nonce": "000000"}, headers={**API_2024, **bearer(session)}
    )
    if code_in(message) != "000000":
        assert wrong.status == 422
        assert (await wrong.json())["code"] == "reauthentication_not_valid"
    accepted = await client.put(
        "/user", json={"password": "another password", "nonce": code_in(message)}, headers=bearer(session)
    )
    assert accepted.status == 200
    reused = await client.put(
        "/user",
        json={"password": "yet another password", "nonce": code_in(message)},
        headers={**API_2024, **bearer(session)},
    )
    assert reused.status == 422


async def test_link_confirmation_page_protects_the_token_from_prefetching(make_client, mail_settings, inbox):
    client = await make_client(**{**vars(mail_settings), "mailer_link_confirm_page": True})
    await client.post("/signup", json={"email": "scan@example.com", "password": PASSWORD})
    link = link_in(await inbox.next_to("scan@example.com"))
    for _ in range(2):  # a scanner fetching the link burns nothing
        page = await client.get(link)
        assert page.status == 200
        assert "<form method='post'" in await page.text()
    token = token_hash_in(await inbox.next_to("scan@example.com"))
    pressed = await client.post(
        "/verify", data={"token": token, "type": "signup", "redirect_to": ""}, allow_redirects=False
    )
    assert pressed.status == 303
    assert "access_token" in fragment(pressed.headers["Location"])


async def test_redirect_to_outside_the_allow_list_falls_back_to_the_site(make_client, mail_settings, inbox):
    client = await make_client(**{**vars(mail_settings), "uri_allow_list": ("https://*.example.org/**",)})
    await client.post(
        "/signup?redirect_to=https://evil.test/steal", json={"email": "r1@example.com", "password": PASSWORD}
    )
    await client.post(
        "/signup?redirect_to=https://app.example.org/welcome", json={"email": "r2@example.com", "password": PASSWORD}
    )
    evil = await client.get(link_in(await inbox.next_to("r1@example.com")), allow_redirects=False)
    good = await client.get(link_in(await inbox.next_to("r2@example.com")), allow_redirects=False)
    assert evil.headers["Location"].split("#")[0].rstrip("/") == "http://localhost:3000"
    assert good.headers["Location"].startswith("https://app.example.org/welcome#")


async def test_magic_link_by_the_emailed_link(mail_client, inbox):
    await signed_up(mail_client, inbox, "ml@example.com")
    confirmation = await inbox.next_to("ml@example.com")
    await mail_client.get(link_in(confirmation), allow_redirects=False)
    await mail_client.post("/magiclink", json={"email": "ml@example.com"})
    message = await inbox.next_to("ml@example.com", 1)
    response = await mail_client.get(link_in(message), allow_redirects=False)
    tokens = fragment(response.headers["Location"])
    assert tokens["type"] == "magiclink"
    me = await mail_client.get("/user", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert (await me.json())["email"] == "ml@example.com"


async def confirmed_session(client, inbox, address):
    _, confirmation = await signed_up(client, inbox, address)
    return fragment((await client.get(link_in(confirmation), allow_redirects=False)).headers["Location"])


async def test_email_change_by_codes(mail_client, inbox, admin):
    session = await confirmed_session(mail_client, inbox, "codes-old@example.com")
    await mail_client.put("/user", json={"email": "codes-new@example.com"}, headers=bearer(session))
    to_old, to_new = await inbox.next_to("codes-old@example.com", 1), await inbox.next_to("codes-new@example.com")
    for address, message in (("codes-new@example.com", to_new), ("codes-old@example.com", to_old)):
        response = await mail_client.post(
            "/verify", json={"type": "email_change", "email": address, "token": code_in(message)}
        )
        assert response.status == 200
    assert "access_token" in await response.json()
    assert admin.execute("select email, email_change from auth.users").fetchone() == ("codes-new@example.com", "")


async def test_email_change_by_links_and_its_resend(mail_client, inbox, admin):
    session = await confirmed_session(mail_client, inbox, "links-old@example.com")
    await mail_client.put("/user", json={"email": "links-new@example.com"}, headers=bearer(session))
    await inbox.next_to("links-new@example.com")
    assert (
        await (
            await mail_client.post("/resend", json={"type": "email_change", "email": "links-old@example.com"})
        ).json()
        == {}
    )
    to_old, to_new = await inbox.next_to("links-old@example.com", 2), await inbox.next_to("links-new@example.com", 1)
    first = await mail_client.get(link_in(to_old), allow_redirects=False)
    assert "other email" in fragment(first.headers["Location"])["message"]
    second = await mail_client.get(link_in(to_new), allow_redirects=False)
    assert "access_token" in fragment(second.headers["Location"])
    assert admin.execute("select email from auth.users").fetchone()[0] == "links-new@example.com"


async def test_an_anonymous_user_becomes_permanent_by_confirming_an_email(make_client, mail_settings, inbox, admin):
    client = await make_client(**{**vars(mail_settings), "anonymous_users_enabled": True})
    anonymous = await (await client.post("/signup", json={})).json()
    response = await client.put("/user", json={"email": "keep@example.com"}, headers=bearer(anonymous))
    assert (await response.json())["new_email"] == "keep@example.com"
    message = await inbox.next_to("keep@example.com")
    response = await client.post(
        "/verify", json={"type": "email_change", "email": "keep@example.com", "token": code_in(message)}
    )
    user = (await response.json())["user"]
    assert user["id"] == anonymous["user"]["id"]
    assert user["email"] == "keep@example.com" and user["is_anonymous"] is False
    assert [identity["provider"] for identity in user["identities"]] == ["email"]
    assert user["app_metadata"]["provider"] == "email"
