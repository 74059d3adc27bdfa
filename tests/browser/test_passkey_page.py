"""Passkeys in a real headless Chromium with Chrome's virtual authenticator (DevTools WebAuthn domain: a
CTAP2 platform authenticator with resident keys and user verification): a page using supabase-js signs in
with a password, registers a passkey, signs out, and signs in again with the passkey alone; and, as a
second factor, registers a security key and raises a later sign-in to aal2 with it."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from playwright.async_api import Browser, CDPSession, Page, expect

from authgres.app import create_app
from tests.conftest import JWT_SECRET
from tests.http.helpers import sign_up

ANON_KEY = jwt.encode({"role": "anon", "iss": "supabase"}, JWT_SECRET, algorithm="HS256")
EMAIL, PASSWORD = "keyholder@example.com", "a good password"


@pytest.fixture
async def api(make_settings: Any, aiohttp_server: Any, aiohttp_client: Any, pages: str) -> Any:
    """The service with passkeys on, its relying party the pages' host and origin (from configuration)."""
    settings = make_settings(
        passkey_enabled=True, mfa_web_authn_enabled=True, webauthn_rp_id="localhost", webauthn_rp_origins=(pages,)
    )
    return await aiohttp_server(create_app(settings), host="127.0.0.1")


async def open_page(
    browser: Browser, pages: str, api: Any, transport: str = "internal"
) -> tuple[Page, CDPSession, str]:
    """The passkey page, with a virtual authenticator attached to it (and its id): a platform authenticator
    (internal), or a security key (usb), which auth-js's mfa.webauthn asks for (cross-platform)."""
    page = await browser.new_page()
    devtools = await page.context.new_cdp_session(page)
    await devtools.send("WebAuthn.enable")
    added = await devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": transport,
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    query = urlencode({"api": str(api.make_url("")).rstrip("/"), "key": ANON_KEY})
    await page.goto(f"{pages}/passkey.html?{query}")
    await expect(page.locator("#status")).to_have_text("signed out")
    return page, devtools, added["authenticatorId"]


async def password_sign_in(page: Page) -> None:
    await page.fill("#email", EMAIL)
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await expect(page.locator("#status")).to_have_text(f"signed in as {EMAIL} by password at aal1")


async def test_register_a_passkey_sign_out_and_sign_in_with_it_alone(
    browser: Browser, pages: str, api: Any, aiohttp_client: Any, admin: Any
) -> None:
    await sign_up(await aiohttp_client(api), EMAIL, PASSWORD)
    page, devtools, authenticator = await open_page(browser, pages, api)
    await password_sign_in(page)

    await page.click("#register")
    await expect(page.locator("#status")).to_have_text("registered Passkey")
    registered_count = admin.execute("select sign_count from auth.webauthn_credentials").fetchone()[0]
    stored = await devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert [each["isResidentCredential"] for each in stored["credentials"]] == [True]
    user_id = admin.execute("select id::text from auth.users where email = %s", (EMAIL,)).fetchone()[0]
    assert base64.b64decode(stored["credentials"][0]["userHandle"]) == user_id.encode()  # the user handle

    await page.click("#sign-out")
    await expect(page.locator("#status")).to_have_text("signed out")

    await page.click("#passkey-sign-in")
    await expect(page.locator("#status")).to_have_text(f"signed in as {EMAIL} by passkey at aal1")
    await page.reload()
    await expect(page.locator("#status")).to_have_text(f"signed in as {EMAIL} by passkey at aal1")
    counted = admin.execute("select sign_count, last_used_at is not null from auth.webauthn_credentials").fetchone()
    assert counted[0] > registered_count and counted[1]


async def test_a_security_key_as_second_factor(
    browser: Browser, pages: str, api: Any, aiohttp_client: Any, admin: Any
) -> None:
    await sign_up(await aiohttp_client(api), EMAIL, PASSWORD)
    page, _, _ = await open_page(browser, pages, api, transport="usb")
    await password_sign_in(page)
    await page.click("#mfa-register")
    await expect(page.locator("#status")).to_have_text(f"signed in as {EMAIL} by mfa/webauthn+password at aal2")

    await page.click("#sign-out")
    await password_sign_in(page)
    await page.click("#mfa-authenticate")
    await expect(page.locator("#status")).to_have_text(f"signed in as {EMAIL} by mfa/webauthn+password at aal2")
    assert admin.execute("select status from auth.mfa_factors").fetchall() == [("verified",)]
