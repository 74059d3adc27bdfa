"""A real headless Chromium and the pages it loads. The browser is Debian's `chromium` package driven by
Playwright with that system browser (no browser download; `make install` installs the package). The pages
in tests/browser/pages use supabase-js's UMD bundle (tests/node/node_modules, from `npm ci`), served beside
them at /supabase.js, and are served at http://localhost:<port>: a secure context, and a host name WebAuthn
accepts as a relying party id."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium")
PAGES = Path(__file__).parent / "pages"
SUPABASE_JS = ROOT / "tests" / "node" / "node_modules" / "@supabase" / "supabase-js" / "dist" / "umd" / "supabase.js"
assert SUPABASE_JS.is_file(), "supabase-js is not installed: run `make install` (npm ci in tests/node)"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM, "Chromium is not installed: run `make install`"
    async with async_playwright() as playwright:
        # Chromium's sandbox needs an unprivileged user; as root (CI containers) it must be turned off.
        sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=sandbox)
        yield launched
        await launched.close()


@pytest.fixture
async def pages(aiohttp_server: Any) -> str:
    """The base URL (http://localhost:<port>) of a static server for tests/browser/pages and /supabase.js."""

    async def supabase_js(_: web.Request) -> web.FileResponse:
        return web.FileResponse(SUPABASE_JS, headers={"Content-Type": "text/javascript"})

    app = web.Application()
    app.router.add_get("/supabase.js", supabase_js)
    app.router.add_static("/", PAGES)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://localhost:{server.port}"
