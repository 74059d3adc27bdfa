"""The official Python client through every email flow, reading the codes from a real SMTP server."""

from dataclasses import replace

import pytest
from supabase_auth import AsyncGoTrueClient
from supabase_auth.errors import AuthApiError

from authgres.app import create_app
from tests.http.mail import code_in, token_hash_in


@pytest.fixture
async def auth(mail_server):
    client = AsyncGoTrueClient(url=str(mail_server.make_url("/auth/v1")), auto_refresh_token=False)
    yield client
    await client.close()


async def test_sign_up_unconfirmed_then_verify_otp(auth, inbox):
    response = await auth.sign_up({"email": "py@example.com", "password": "a good password"})
    assert response.session is None
    assert response.user.email == "py@example.com"
    message = await inbox.next_to("py@example.com")
    verified = await auth.verify_otp({"email": "py@example.com", "token": code_in(message), "type": "signup"})
    assert verified.session is not None
    assert verified.user.email_confirmed_at is not None
    assert (await auth.get_user()).user.id == response.user.id


async def test_a_deferred_sign_up_then_verify_otp(mail_settings, aiohttp_server, inbox, admin):
    # The deferred answer carries the times the client's User model requires (created_at), though no
    # user exists yet.
    server = await aiohttp_server(create_app(replace(mail_settings, signup_deferred=True)))
    auth = AsyncGoTrueClient(url=str(server.make_url("/auth/v1")), auto_refresh_token=False)
    try:
        response = await auth.sign_up({"email": "later@example.com", "password": "a good password"})
        assert response.session is None and response.user.email == "later@example.com"
        assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
        message = await inbox.next_to("later@example.com")
        verified = await auth.verify_otp({"email": "later@example.com", "token": code_in(message), "type": "signup"})
        assert verified.session is not None and verified.user.email_confirmed_at is not None
    finally:
        await auth.close()


async def test_sign_in_with_otp_then_verify_otp(auth, inbox):
    response = await auth.sign_in_with_otp({"email": "otp@example.com"})
    assert response.user is None and response.session is None
    message = await inbox.next_to("otp@example.com")
    verified = await auth.verify_otp({"email": "otp@example.com", "token": code_in(message), "type": "email"})
    assert verified.session.access_token
    # The magic link half of the next email works through verifyOtp({token_hash}).
    await auth.sign_out()
    await auth.sign_in_with_otp({"email": "otp@example.com"})
    second = await inbox.next_to("otp@example.com", 1)
    by_link = await auth.verify_otp({"token_hash": token_hash_in(second), "type": "magiclink"})
    assert by_link.user.email == "otp@example.com"


async def test_reset_password_then_update_user(auth, inbox):
    await auth.sign_up({"email": "reset@example.com", "password": "forgotten password"})
    confirmation = await inbox.next_to("reset@example.com")
    await auth.verify_otp({"email": "reset@example.com", "token": code_in(confirmation), "type": "signup"})
    await auth.sign_out()

    await auth.reset_password_for_email("reset@example.com", {"redirect_to": "http://localhost:3000/reset"})
    message = await inbox.next_to("reset@example.com", 1)
    recovered = await auth.verify_otp({"email": "reset@example.com", "token": code_in(message), "type": "recovery"})
    assert recovered.session is not None
    await auth.update_user({"password": "remembered password"})
    await auth.sign_out()
    signed_in = await auth.sign_in_with_password({"email": "reset@example.com", "password": "remembered password"})
    assert signed_in.session is not None
    with pytest.raises(AuthApiError):
        await auth.sign_in_with_password({"email": "reset@example.com", "password": "forgotten password"})


async def test_reset_password_in_one_verify_otp_call(auth, inbox):
    await auth.sign_up({"email": "onecall@example.com", "password": "forgotten password"})
    confirmation = await inbox.next_to("onecall@example.com")
    await auth.verify_otp({"email": "onecall@example.com", "token": code_in(confirmation), "type": "signup"})
    await auth.sign_out()
    events = []
    auth.on_auth_state_change(lambda event, session: events.append(event))

    await auth.reset_password_for_email("onecall@example.com")
    message = await inbox.next_to("onecall@example.com", 1)
    recovered = await auth.verify_otp(
        {"email": "onecall@example.com", "token": code_in(message), "type": "recovery", "password": "new password"}
    )
    assert recovered.session is not None and "PASSWORD_RECOVERY" in events
    await auth.sign_out()
    signed_in = await auth.sign_in_with_password({"email": "onecall@example.com", "password": "new password"})
    assert signed_in.session is not None


async def test_delete_own_account_through_the_clients_request(auth, inbox):
    await auth.sign_up({"email": "bye@example.com", "password": "a good password"})
    confirmation = await inbox.next_to("bye@example.com")
    session = (
        await auth.verify_otp({"email": "bye@example.com", "token": code_in(confirmation), "type": "signup"})
    ).session
    # The client has no method for it; apps call the endpoint with the session's token.
    response = await auth._request("DELETE", "user", jwt=session.access_token, body={"password": "a good password"})
    assert response.status_code == 204
    with pytest.raises(AuthApiError) as refused:
        await auth.get_user(session.access_token)
    assert refused.value.code == "user_not_found"


async def test_resend_a_confirmation(auth, inbox):
    await auth.sign_up({"email": "again@example.com", "password": "a good password"})
    first = await inbox.next_to("again@example.com")
    await auth.resend({"type": "signup", "email": "again@example.com"})
    second = await inbox.next_to("again@example.com", 1)
    if code_in(first) != code_in(second):  # (a one-in-a-million repeat would be the live code again)
        with pytest.raises(AuthApiError) as raised:  # the resent code replaced the first one
            await auth.verify_otp({"email": "again@example.com", "token": code_in(first), "type": "signup"})
        assert raised.value.code == "otp_expired"
    verified = await auth.verify_otp({"email": "again@example.com", "token": code_in(second), "type": "signup"})
    assert verified.session is not None


async def test_reauthenticate_sends_a_nonce_that_update_user_accepts(auth, inbox):
    await auth.sign_up({"email": "nonce@example.com", "password": "a good password"})
    confirmation = await inbox.next_to("nonce@example.com")
    await auth.verify_otp({"email": "nonce@example.com", "token": code_in(confirmation), "type": "signup"})
    response = await auth.reauthenticate()
    assert response.user is None and response.session is None
    nonce = code_in(await inbox.next_to("nonce@example.com", 1))
    updated = await auth.update_user({"password": "a better password", "nonce": nonce})
    assert updated.user.email == "nonce@example.com"
    with pytest.raises(AuthApiError) as raised:  # a nonce is single-use
        await auth.update_user({"password": "the best password", "nonce": nonce})
    assert raised.value.code == "reauthentication_not_valid"
