"""PKCE through the official JavaScript clients: @supabase/auth-js with flowType 'pkce' and a storage
the test keeps (so the code verifier persists between the steps of a flow), and @supabase/ssr's
createServerClient with a cookie jar, against the live server and a real SMTP inbox. Each step runs
tests/node/run.mjs in node; `make install` installs the clients (npm ci in tests/node)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from tests.conftest import JWT_SECRET, ROOT
from tests.http.mail import link_in

NODE_DIR = ROOT / "tests" / "node"
CALLBACK = "http://localhost:3000/auth/callback"
PASSWORD = "a good password"
ANON_KEY = jwt.encode({"role": "anon", "iss": "supabase"}, JWT_SECRET, algorithm="HS256")


class Browser:
    """One browser (or one server's cookie jar) running steps of flows through the JavaScript clients."""

    def __init__(self, server: Any, state: Path) -> None:
        self.url = str(server.make_url("/auth/v1"))
        self.base = str(server.make_url("")).rstrip("/")
        self.state = state

    async def run(self, action: str, **step: Any) -> dict[str, Any]:
        node = shutil.which("node")
        assert node, "node is not installed: run `make install`"
        assert (NODE_DIR / "node_modules" / "@supabase" / "auth-js").is_dir(), "run `make install` (npm ci)"
        arguments = {"url": self.url, "base": self.base, "key": ANON_KEY, "state": str(self.state), "action": action}
        process = await asyncio.create_subprocess_exec(
            node,
            "run.mjs",
            json.dumps({**arguments, "redirect_to": CALLBACK, **step}),
            cwd=NODE_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    @property
    def storage(self) -> dict[str, Any]:
        stored: dict[str, Any] = json.loads(self.state.read_text())["storage"]
        return stored

    @property
    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = json.loads(self.state.read_text())["cookies"]
        return jar


@pytest.fixture
def browser(mail_server, tmp_path):
    return Browser(mail_server, tmp_path / "browser.json")


async def open_link(client, message) -> dict[str, str]:
    """Follows the emailed link as the browser would: the callback's query parameters."""
    response = await client.get(link_in(message), allow_redirects=False)
    assert response.status == 303
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    return {key: values[0] for key, values in parse_qs(location.query).items()}


async def signed_in(browser, client, inbox, address) -> dict[str, Any]:
    """signInWithOtp, the emailed link, exchangeCodeForSession: the session auth-js keeps."""
    sent = await browser.run("signInWithOtp", email=address)
    assert sent["error"] is None, sent
    callback = await open_link(client, await inbox.next_to(address))
    exchanged = await browser.run("exchangeCodeForSession", code=callback["code"])
    assert exchanged["error"] is None, exchanged
    return exchanged


async def test_sign_up_link_code_and_exchange(browser, mail_client, inbox, admin):
    signed_up = await browser.run("signUp", email="js@example.com", password=PASSWORD)
    assert signed_up["error"] is None, signed_up
    assert signed_up["data"]["session"] is None  # confirmation needed
    assert any(key.endswith("code-verifier") for key in browser.storage)  # auth-js keeps the verifier
    callback = await open_link(mail_client, await inbox.next_to("js@example.com"))
    exchanged = await browser.run("exchangeCodeForSession", code=callback["code"])
    assert exchanged["error"] is None, exchanged
    session = exchanged["data"]["session"]
    assert session["user"]["email"] == "js@example.com" and session["user"]["email_confirmed_at"]
    assert exchanged["events"][-1] == "SIGNED_IN"
    user = await browser.run("getUser")
    assert user["data"]["user"]["id"] == signed_up["data"]["user"]["id"]


async def test_magic_link_twice_then_a_used_code_is_not_found(browser, mail_client, inbox):
    await browser.run("signInWithOtp", email="magic@example.com")
    callback = await open_link(mail_client, await inbox.next_to("magic@example.com"))
    exchanged = await browser.run("exchangeCodeForSession", code=callback["code"])
    assert exchanged["error"] is None and exchanged["data"]["session"]["user"]["email"] == "magic@example.com"
    # The same code again, with a verifier in place (a second tab of the same flow): GoTrue's 404.
    await browser.run("signInWithOtp", email="magic@example.com")
    again = await browser.run("exchangeCodeForSession", code=callback["code"])
    assert again["error"]["code"] == "flow_state_not_found" and again["error"]["status"] == 404


async def test_password_recovery_fires_password_recovery(browser, mail_client, inbox):
    await signed_in(browser, mail_client, inbox, "lost@example.com")
    sent = await browser.run("resetPasswordForEmail", email="lost@example.com")
    assert sent["error"] is None, sent
    # auth-js marks the stored verifier as a recovery's; the exchange then fires PASSWORD_RECOVERY.
    assert any(str(json.loads(value)).endswith("/recovery") for value in browser.storage.values())
    callback = await open_link(mail_client, await inbox.next_to("lost@example.com", 1))
    exchanged = await browser.run("exchangeCodeForSession", code=callback["code"])
    assert exchanged["error"] is None, exchanged
    assert exchanged["events"][-1] == "PASSWORD_RECOVERY"  # not SIGNED_IN, which a non-recovery flow fires
    assert exchanged["data"]["redirectType"] == "recovery"
    updated = await browser.run("updateUser", attributes={"password": "a new good password"})
    assert updated["error"] is None, updated
    login = await mail_client.post(
        "/token?grant_type=password", json={"email": "lost@example.com", "password": "a new good password"}
    )
    assert login.status == 200


async def test_email_change_by_pkce_links(browser, mail_client, inbox):
    await signed_in(browser, mail_client, inbox, "before@example.com")
    changing = await browser.run("updateUser", attributes={"email": "after@example.com"})
    assert changing["error"] is None, changing
    assert changing["data"]["user"]["new_email"] == "after@example.com"
    # Secure email change: the current address confirms first (a message, no code), then the new one.
    first = await mail_client.get(link_in(await inbox.next_to("before@example.com", 1)), allow_redirects=False)
    assert "message=" in first.headers["Location"]
    callback = await open_link(mail_client, await inbox.next_to("after@example.com"))
    exchanged = await browser.run("exchangeCodeForSession", code=callback["code"])
    assert exchanged["error"] is None, exchanged
    assert exchanged["data"]["session"]["user"]["email"] == "after@example.com"


async def test_an_older_link_works_after_a_newer_one_was_sent(mail_server, mail_client, inbox, tmp_path):
    # auth-js keeps a verifier per flow and, with this option, names the flow in redirect_to (sb_flow_id):
    # the server passes that through, and each link answers its own flow's code.
    browser = Browser(mail_server, tmp_path / "flows.json")
    options = {"appendPkceFlowIdToRedirects": True}
    await browser.run("signInWithOtp", email="older@example.com", experimental=options)
    await browser.run("signInWithOtp", email="older@example.com", experimental=options)
    older = await open_link(mail_client, await inbox.next_to("older@example.com"))
    newer_message = await inbox.next_to("older@example.com", 1)
    assert older["sb_flow_id"] not in link_in(newer_message)
    exchanged = await browser.run(
        "exchangeCodeForSession", code=older["code"], flow_id=older["sb_flow_id"], experimental=options
    )
    assert exchanged["error"] is None, exchanged
    assert exchanged["data"]["session"]["user"]["email"] == "older@example.com"


async def test_a_wrong_verifier_and_an_expired_flow(browser, mail_client, inbox, admin):
    await browser.run("signInWithOtp", email="bad@example.com")
    callback = await open_link(mail_client, await inbox.next_to("bad@example.com"))
    # Another verifier in the storage (as if another flow had overwritten it): GoTrue's bad_code_verifier.
    state = json.loads(browser.state.read_text())
    key = "supabase.auth.token-code-verifier"  # auth-js's default key; read when no flowId is given
    genuine = state["storage"][key]
    state["storage"][key] = json.dumps("f" * 112)  # auth-js stores JSON
    browser.state.write_text(json.dumps(state))
    wrong = await browser.run("exchangeCodeForSession", code=callback["code"])
    assert wrong["error"]["code"] == "bad_code_verifier" and wrong["error"]["status"] == 400
    # The genuine verifier, once the code's lifetime (from the click) is over: flow_state_expired.
    state["storage"][key] = genuine
    browser.state.write_text(json.dumps(state))
    admin.execute("update auth.flow_state set auth_code_issued_at = now() - interval '10 minutes'")
    expired = await browser.run("exchangeCodeForSession", code=callback["code"])
    assert expired["error"]["code"] == "flow_state_expired" and expired["error"]["status"] == 422


async def test_ssr_server_client_completes_a_magic_link(mail_server, mail_client, inbox, tmp_path):
    server = Browser(mail_server, tmp_path / "cookies.json")
    sent = await server.run("ssrSignInWithOtp", email="ssr@example.com")
    assert sent["error"] is None, sent
    assert any(name.endswith("-code-verifier") for name in server.cookies)  # the verifier is a cookie
    callback = await open_link(mail_client, await inbox.next_to("ssr@example.com"))
    exchanged = await server.run("ssrExchangeCodeForSession", code=callback["code"])
    assert exchanged["error"] is None, exchanged
    assert any(name.endswith("-auth-token") or "-auth-token." in name for name in server.cookies)
    user = await server.run("ssrGetUser")
    assert user["error"] is None, user
    assert user["data"]["user"]["email"] == "ssr@example.com"
