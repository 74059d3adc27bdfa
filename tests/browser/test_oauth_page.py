"""End to end in a real headless Chromium: a page using supabase-js clicks "Sign in with provider", logs in
at a real OpenID provider on the loopback (oidc-provider-mock's login form), comes back through authgres's
callback with a PKCE code, holds a session, and still does after a reload."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from authgres.app import create_app
from tests.browser.test_password_page import ANON_KEY
from tests.conftest import free_port
from tests.http.identity_providers import oidc_config


async def test_sign_in_with_a_provider_and_reload(
    browser: Browser, pages: str, make_settings: Any, aiohttp_server: Any, oidc_provider: Any, admin: Any
) -> None:
    port = free_port()
    settings = make_settings(
        external={
            "keycloak": oidc_config(oidc_provider.issuer, redirect_uri=f"http://127.0.0.1:{port}/auth/v1/callback")
        },
        uri_allow_list=(f"{pages}/**",),
    )
    server: TestServer = await aiohttp_server(create_app(settings), port=port, host="127.0.0.1")
    oidc_provider.set_user("browser-sub", email="browser@example.com", email_verified=True, name="Browser User")
    query = urlencode({"api": str(server.make_url("")).rstrip("/"), "key": ANON_KEY, "provider": "keycloak"})

    page = await browser.new_page()
    await page.goto(f"{pages}/oauth.html?{query}")
    await expect(page.locator("#status")).to_have_text("signed out")
    await page.click("#sign-in")

    # The provider's login form.
    await page.wait_for_url(f"{oidc_provider.issuer}/**")
    await page.get_by_placeholder("sub").fill("browser-sub")
    await page.get_by_role("button", name="Authorize").click()

    await page.wait_for_url(f"{pages}/oauth.html?**")
    await expect(page.locator("#status")).to_have_text("signed in as browser@example.com")
    assert "code=" not in page.url
    await page.reload()
    await expect(page.locator("#status")).to_have_text("signed in as browser@example.com")
    assert admin.execute("select provider from auth.identities").fetchall() == [("keycloak",)]
