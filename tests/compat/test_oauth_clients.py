"""Third-party sign-in through the official clients, against a real OpenID provider on the loopback
(oidc-provider-mock) and a GitHub-style server: @supabase/auth-js (tests/node/run.mjs) signInWithOAuth in
the PKCE and the implicit flow, signInWithIdToken, linkIdentity / getUserIdentities / unlinkIdentity; the
Python client's sign_in_with_oauth in both flows. The browser's part (logging in at the provider,
arriving at our callback) is played by an HTTP client following the same redirects."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from supabase_auth import AsyncGoTrueClient, AsyncMemoryStorage

from authgres.app import create_app
from tests.compat.test_auth_js_pkce import CALLBACK, Browser
from tests.http.identity_providers import CLIENT_ID, GitHubUser, github_config, nonce_pair, oidc_config


@pytest.fixture
async def server(make_settings, aiohttp_server, oidc_provider, github):
    settings = make_settings(
        # keycloak: an OpenID provider by its issuer, as oidc is; the Python client accepts only the names it
        # knows (its Provider type), and oidc is not one of them.
        external={
            "oidc": oidc_config(oidc_provider.issuer),
            "keycloak": oidc_config(oidc_provider.issuer),
            "github": github_config(github),
        },
        manual_linking_enabled=True,
    )
    return await aiohttp_server(create_app(settings))


@pytest.fixture
def browser(server, tmp_path):
    return Browser(server, tmp_path / "browser.json")


async def through_provider(server, url: str, provider=None, sub: str = "") -> str:
    """The browser's way from our /authorize (or the provider URL) to redirect_to: the final Location. Like a
    browser it keeps cookies, also of a host that is an IP address (aiohttp's jar would not)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        if url.startswith(str(server.make_url(""))):
            async with http.get(url, allow_redirects=False) as response:
                assert response.status == 302, await response.text()
                url = response.headers["Location"]
        if provider is not None:  # the OpenID provider's login form
            callback = await provider.log_in(url, sub)
        else:  # the GitHub-style server logs in at once
            async with http.get(url, allow_redirects=False) as response:
                callback = response.headers["Location"]
        ours = str(server.make_url("/auth/v1/callback")) + "?" + urlsplit(callback).query
        async with http.get(ours, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            return response.headers["Location"]


def query(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def fragment(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).fragment).items()}


async def test_auth_js_sign_in_with_oauth_pkce(browser, server, oidc_provider):
    oidc_provider.set_user("js-pkce", email="js-pkce@example.com", email_verified=True, name="JS")
    started = await browser.run("signInWithOAuth", provider="oidc", query_params={"login_hint": "js-pkce"})
    assert started["error"] is None, started
    url = started["data"]["url"]
    assert "code_challenge=" in url and "/authorize?provider=oidc" in url
    location = await through_provider(server, url, oidc_provider, "js-pkce")
    assert location.startswith(CALLBACK + "?")
    exchanged = await browser.run("exchangeCodeForSession", code=query(location)["code"])
    assert exchanged["error"] is None, exchanged
    session = exchanged["data"]["session"]
    assert session["user"]["email"] == "js-pkce@example.com"
    assert session["provider_token"] and session["user"]["app_metadata"]["provider"] == "oidc"
    assert exchanged["events"][-1] == "SIGNED_IN"
    user = await browser.run("getUser")
    assert user["data"]["user"]["id"] == session["user"]["id"]


async def test_auth_js_sign_in_with_oauth_implicit(browser, server, oidc_provider):
    oidc_provider.set_user("js-implicit", email="js-implicit@example.com", email_verified=True)
    started = await browser.run("signInWithOAuth", provider="oidc", flow_type="implicit")
    assert "code_challenge" not in started["data"]["url"]
    location = await through_provider(server, started["data"]["url"], oidc_provider, "js-implicit")
    tokens = fragment(location)
    assert tokens["provider_token"]
    set_session = await browser.run(
        "setSession", flow_type="implicit", access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )
    assert set_session["error"] is None, set_session
    assert set_session["data"]["user"]["email"] == "js-implicit@example.com"


async def test_auth_js_github_links_to_the_verified_password_user(browser, server, github):
    signed_up = await browser.run("signUp", email="octo@example.com", password="a good password")
    user_id = signed_up["data"]["user"]["id"]
    github.next_user = GitHubUser(
        id=7, login="octo", emails=[{"email": "octo@example.com", "primary": True, "verified": True}]
    )
    started = await browser.run("signInWithOAuth", provider="github")
    location = await through_provider(server, started["data"]["url"])
    exchanged = await browser.run("exchangeCodeForSession", code=query(location)["code"])
    assert exchanged["data"]["session"]["user"]["id"] == user_id
    identities = await browser.run("getUserIdentities")
    assert sorted(each["provider"] for each in identities["data"]["identities"]) == ["email", "github"]


async def test_auth_js_unverified_github_email_gets_its_own_account(browser, server, github):
    signed_up = await browser.run("signUp", email="victim@example.com", password="a good password")
    github.next_user = GitHubUser(
        id=8, login="mallory", emails=[{"email": "victim@example.com", "primary": True, "verified": False}]
    )
    started = await browser.run("signInWithOAuth", provider="github")
    location = await through_provider(server, started["data"]["url"])
    exchanged = await browser.run("exchangeCodeForSession", code=query(location)["code"])
    user = exchanged["data"]["session"]["user"]
    assert user["id"] != signed_up["data"]["user"]["id"] and user["email"] == ""


async def test_auth_js_link_get_and_unlink_identities(browser, server, oidc_provider):
    await browser.run("signUp", email="linker@example.com", password="a good password")
    oidc_provider.set_user("js-link", email="linker@elsewhere.example", email_verified=True)
    linked = await browser.run("linkIdentity", provider="oidc")
    assert linked["error"] is None, linked
    location = await through_provider(server, linked["data"]["url"], oidc_provider, "js-link")
    exchanged = await browser.run("exchangeCodeForSession", code=query(location)["code"])
    assert exchanged["error"] is None, exchanged
    identities = await browser.run("getUserIdentities")
    assert sorted(each["provider"] for each in identities["data"]["identities"]) == ["email", "oidc"]
    unlinked = await browser.run("unlinkIdentity", provider="email")
    assert unlinked["error"] is None, unlinked
    identities = await browser.run("getUserIdentities")
    assert [each["provider"] for each in identities["data"]["identities"]] == ["oidc"]
    last = await browser.run("unlinkIdentity", provider="oidc")
    assert (last["error"]["code"], last["error"]["status"]) == ("single_identity_not_deletable", 422)


async def test_auth_js_sign_in_with_id_token(browser, make_settings, aiohttp_server, issuer, tmp_path):
    settings = make_settings(external={"oidc": oidc_config(issuer.url)})
    js = Browser(await aiohttp_server(create_app(settings)), tmp_path / "idtoken.json")
    nonce, hashed = nonce_pair()
    signed_in = await js.run(
        "signInWithIdToken",
        provider="oidc",
        token=issuer.token("js-idt", email="idt@example.com", nonce=hashed),
        nonce=nonce,
    )
    assert signed_in["error"] is None, signed_in
    assert signed_in["data"]["user"]["identities"][0]["provider"] == "oidc"
    assert signed_in["events"][-1] == "SIGNED_IN"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    refusals = [
        ({"aud": "nope"}, None, "unexpected_audience"),  # wrong audience
        ({"iss": "https://other.example"}, None, "bad_jwt"),  # wrong issuer
        ({"exp": now - 3600, "iat": now - 7200}, None, "bad_jwt"),  # expired
        ({"key": stranger}, None, "bad_jwt"),  # bad signature
        ({"nonce": hashed}, None, "validation_failed"),  # the token has a nonce, the client none
        ({"nonce": hashed}, "another nonce", "validation_failed"),  # wrong nonce
    ]
    for shape, given, code in refusals:
        refused = await js.run("signInWithIdToken", provider="oidc", token=issuer.token("js-idt", **shape), nonce=given)
        assert (refused["error"]["code"], refused["error"]["status"]) == (code, 400), (shape, refused)
        assert refused["data"]["session"] is None
    assert CLIENT_ID


@pytest.mark.parametrize("flow", ["pkce", "implicit"])
async def test_python_client_sign_in_with_oauth(server, oidc_provider, flow):
    oidc_provider.set_user(f"py-{flow}", email=f"py-{flow}@example.com", email_verified=True)
    client = AsyncGoTrueClient(
        url=str(server.make_url("/auth/v1")), flow_type=flow, storage=AsyncMemoryStorage(), auto_refresh_token=False
    )
    try:
        started = await client.sign_in_with_oauth(
            {"provider": "keycloak", "options": {"redirect_to": CALLBACK, "query_params": {"prompt": "login"}}}
        )
        assert ("code_challenge=" in started.url) == (flow == "pkce")
        location = await through_provider(server, started.url, oidc_provider, f"py-{flow}")
        if flow == "pkce":
            response: Any = await client.exchange_code_for_session({"auth_code": query(location)["code"]})
            session = response.session
        else:
            await client.initialize_from_url(location)
            session = await client.get_session()
        assert session is not None and session.user.email == f"py-{flow}@example.com"
        assert session.provider_token
        assert (await client.get_user()).user.id == session.user.id
        assert session.user.identities[0].provider == "keycloak"
    finally:
        await client.close()
