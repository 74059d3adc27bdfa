"""A page using supabase-js in a real headless Chromium signs in with a password, keeps its session across a
reload, and signs out; a wrong password shows GoTrue's error code and leaves the page signed out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import jwt
from playwright.async_api import Browser, expect

from tests.conftest import JWT_SECRET
from tests.http.helpers import sign_up

ANON_KEY = jwt.encode({"role": "anon", "iss": "supabase"}, JWT_SECRET, algorithm="HS256")


def page_url(pages: str, server: Any) -> str:
    return f"{pages}/password.html?" + urlencode({"api": str(server.make_url("")).rstrip("/"), "key": ANON_KEY})


async def test_sign_in_survives_a_reload_and_signs_out(browser: Browser, pages: str, server: Any, client: Any) -> None:
    await sign_up(client, "reader@example.com", "a good password")
    page = await browser.new_page()
    await page.goto(page_url(pages, server))
    await expect(page.locator("#status")).to_have_text("signed out")

    await page.fill("#email", "reader@example.com")
    await page.fill("#password", "a good password")
    await page.click("#submit")
    await expect(page.locator("#status")).to_have_text("signed in as reader@example.com")

    await page.reload()
    await expect(page.locator("#status")).to_have_text("signed in as reader@example.com")

    await page.click("#sign-out")
    await expect(page.locator("#status")).to_have_text("signed out")
    await page.reload()
    await expect(page.locator("#status")).to_have_text("signed out")


async def test_wrong_password_shows_the_error_code(browser: Browser, pages: str, server: Any, client: Any) -> None:
    await sign_up(client, "reader@example.com", "a good password")
    page = await browser.new_page()
    await page.goto(page_url(pages, server))
    await page.fill("#email", "reader@example.com")
    await page.fill("#password", "not the password")
    await page.click("#submit")
    await expect(page.locator("#status")).to_have_text("error: invalid_credentials")
    await page.reload()
    await expect(page.locator("#status")).to_have_text("signed out")
