"""Third-party sign-in over HTTP against providers on the loopback: a real OpenID provider
(oidc-provider-mock) in the implicit and the PKCE flow, a GitHub-style OAuth 2.0 server, the state's
single use, account linking by verified email only, errors back to redirect_to as GoTrue sends them,
and manual identity linking. tests/compat/test_oauth_clients.py drives the same through the clients."""

import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from authgres.routes.external import BROWSER_BINDING_COOKIE
from authgres.sealing import Sealer
from tests.conftest import JWT_SECRET
from tests.http.helpers import API_2024, bearer, claims_of, sign_up
from tests.http.identity_providers import GitHubUser, fragment_of, github_config, oidc_config, query_of
from tests.http.test_admin import service_headers
from tests.http.test_pkce import pair

APP = "http://localhost:3000/app"


@pytest.fixture
async def oidc_client(make_client, oidc_provider):
    return await make_client(external={"oidc": oidc_config(oidc_provider.issuer)}, manual_linking_enabled=True)


async def start(client, provider="oidc", **query):
    """GET /authorize: the provider URL it redirects to."""
    response = await client.get(
        "/authorize", params={"provider": provider, "redirect_to": APP, **query}, allow_redirects=False
    )
    assert response.status == 302, await response.text()
    return response.headers["Location"]


async def callback(client, provider_location: str) -> str:
    """The browser arriving at our callback with what the provider sent: where we send it next."""
    response = await client.get(f"/callback?{urlsplit(provider_location).query}", allow_redirects=False)
    assert response.status == 302, await response.text()
    return response.headers["Location"]


async def oidc_sign_in(client, provider, sub, **query) -> str:
    return await callback(client, await provider.log_in(await start(client, **query), sub))


async def start_link(client, session, **query) -> str:
    """GET /user/identities/authorize as auth-js's linkIdentity calls it: the provider URL it answers."""
    response = await client.get(
        "/user/identities/authorize",
        params={"provider": "oidc", "skip_http_redirect": "true", "redirect_to": APP, **query},
        headers=bearer(session),
    )
    assert response.status == 200, await response.text()
    return (await response.json())["url"]


async def test_implicit_flow_creates_the_user_and_answers_the_session_in_the_fragment(
    oidc_client, oidc_provider, admin
):
    oidc_provider.set_user("alice-sub", email="Alice@Example.com", email_verified=True, name="Alice")
    location = await oidc_sign_in(oidc_client, oidc_provider, "alice-sub")
    assert location.startswith(APP + "#")
    session = fragment_of(location)
    assert session["token_type"] == "bearer" and int(session["expires_in"]) > 0 and session["refresh_token"]
    assert session["provider_token"]  # the provider's access token, for the app; never stored
    claims = claims_of(session["access_token"])
    assert claims["email"] == "alice@example.com"
    assert claims["amr"][0]["method"] == "oauth"
    assert claims["app_metadata"] == {"provider": "oidc", "providers": ["oidc"]}
    user = await (await oidc_client.get("/user", headers=bearer(session))).json()
    assert user["email_confirmed_at"]  # the provider verified it
    (identity,) = user["identities"]
    assert (identity["provider"], identity["id"]) == ("oidc", "alice-sub")
    assert identity["identity_data"]["name"] == "Alice" and identity["identity_data"]["email_verified"] is True
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 0  # the state is spent

    # The same provider account again: the same user, one identity.
    again = fragment_of(await oidc_sign_in(oidc_client, oidc_provider, "alice-sub"))
    assert claims_of(again["access_token"])["sub"] == claims["sub"]
    assert admin.execute("select count(*) from auth.identities where provider = 'oidc'").fetchone()[0] == 1


async def test_pkce_flow_answers_a_code_whose_exchange_gives_the_provider_tokens(oidc_client, oidc_provider, admin):
    oidc_provider.set_user("bob-sub", email="bob@example.com", email_verified=True)
    verifier, challenge = pair()
    location = await oidc_sign_in(oidc_client, oidc_provider, "bob-sub", **challenge)
    assert urlsplit(location).fragment == ""
    code = query_of(location)["code"]
    # The provider's tokens wait for the exchange sealed, never in the clear.
    sealed, refresh = admin.execute(
        "select provider_access_token, provider_refresh_token from auth.flow_state"
    ).fetchone()
    access_token = Sealer(JWT_SECRET).open(bytes(sealed), "provider access token")
    assert access_token and access_token.encode() not in bytes(sealed) and refresh is not None

    response = await oidc_client.post(
        "/token?grant_type=pkce", headers=API_2024, json={"auth_code": code, "code_verifier": verifier}
    )
    assert response.status == 200, await response.text()
    session = await response.json()
    assert session["provider_token"] == access_token and session["provider_refresh_token"]
    assert "sealed_provider_token" not in session
    assert claims_of(session["access_token"])["amr"][0]["method"] == "oauth"
    assert session["user"]["identities"][0]["provider"] == "oidc"
    again = await oidc_client.post(
        "/token?grant_type=pkce", headers=API_2024, json={"auth_code": code, "code_verifier": verifier}
    )
    assert (again.status, (await again.json())["code"]) == (404, "flow_state_not_found")


async def test_a_replayed_or_unknown_state_is_refused(oidc_client, oidc_provider, admin):
    oidc_provider.set_user("carol-sub", email="carol@example.com", email_verified=True)
    provider_location = await oidc_provider.log_in(await start(oidc_client), "carol-sub")
    first = await callback(oidc_client, provider_location)
    assert "access_token" in fragment_of(first)
    replayed = await callback(oidc_client, provider_location)
    # A spent state names no flow any more: its error goes to the site URL.
    assert urlsplit(replayed)._replace(query="", fragment="").geturl() == "http://localhost:3000/"
    assert query_of(replayed)["error_code"] == "bad_oauth_state" and query_of(replayed)["error"] == "invalid_request"
    assert fragment_of(replayed)["error_code"] == "bad_oauth_state"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1

    # A state we never issued, or none: back to the site URL with the error.
    unknown = await oidc_client.get(
        "/callback?state=00000000-0000-0000-0000-000000000000&code=x", allow_redirects=False
    )
    assert unknown.status == 302 and query_of(unknown.headers["Location"])["error_code"] == "bad_oauth_state"
    malformed = await oidc_client.get("/callback?state=not-a-uuid&code=x", allow_redirects=False)
    assert query_of(malformed.headers["Location"])["error_code"] == "bad_oauth_state"
    missing = await oidc_client.get("/callback?code=x", allow_redirects=False)
    assert query_of(missing.headers["Location"])["error_code"] == "bad_oauth_callback"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1


def binding_cookie(response):
    return response.cookies[BROWSER_BINDING_COOKIE]


async def test_authorize_binds_the_flow_to_the_browser_with_a_cookie(oidc_client, admin):
    first = await oidc_client.get("/authorize?provider=oidc", allow_redirects=False)
    cookie = binding_cookie(first)
    assert len(cookie.value) == 43 and cookie["httponly"] and cookie["path"] == "/"
    assert cookie["samesite"] == "Lax" and not cookie["secure"]  # the callback is plain http here
    # A second flow in the same browser (another tab) shares the value, so neither spoils the other.
    second = await oidc_client.get("/authorize?provider=oidc", allow_redirects=False)
    assert binding_cookie(second).value == cookie.value
    digests = admin.execute("select browser_binding_digest from auth.flow_state").fetchall()
    assert digests == [(hashlib.sha256(cookie.value.encode()).digest(),)] * 2  # the value itself is not kept


async def test_a_callback_in_another_browser_is_refused_and_spoils_nothing(oidc_client, oidc_provider, admin):
    # An attacker starts a sign-in with his own provider account and sends the victim the way back.
    oidc_provider.set_user("mallory-sub", email="mallory@example.com", email_verified=True)
    provider_location = await oidc_provider.log_in(await start(oidc_client), "mallory-sub")
    attackers_cookie = oidc_client.session.cookie_jar.filter_cookies(oidc_client.make_url("/"))[BROWSER_BINDING_COOKIE]
    for victims_cookie in (None, "x" * 43, "not a binding value"):
        oidc_client.session.cookie_jar.clear()
        if victims_cookie:
            oidc_client.session.cookie_jar.update_cookies({BROWSER_BINDING_COOKIE: victims_cookie})
        location = await callback(oidc_client, provider_location)
        # As for a state it never issued, the answer goes to the site URL: the flow is not this browser's.
        assert urlsplit(location)._replace(query="", fragment="").geturl() == "http://localhost:3000/"
        assert query_of(location)["error_code"] == fragment_of(location)["error_code"] == "bad_oauth_state"
        assert "access_token" not in fragment_of(location)
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 1
    # The browser that started it still can: the refusals spent neither the state nor the provider's code.
    oidc_client.session.cookie_jar.update_cookies({BROWSER_BINDING_COOKIE: attackers_cookie.value})
    assert "access_token" in fragment_of(await callback(oidc_client, provider_location))


async def test_the_binding_cookie_is_secure_when_the_callback_is_https(make_client, oidc_provider):
    client = await make_client(
        external={"oidc": oidc_config(oidc_provider.issuer, redirect_uri="https://auth.example.com/auth/v1/callback")}
    )
    cookie = binding_cookie(await client.get("/authorize?provider=oidc", allow_redirects=False))
    # SameSite=None, so that a provider posting its answer from its own site (Apple) brings it along.
    assert cookie["secure"] and cookie["samesite"] == "None" and cookie["httponly"]


async def test_a_link_is_not_bound_to_a_cookie(oidc_client, oidc_provider, admin):
    # Started by a fetch (auth-js's linkIdentity), which keeps no cookie; the flow names its user instead.
    session = await sign_up(oidc_client, "linker@example.com")
    response = await oidc_client.get(
        "/user/identities/authorize?provider=oidc&skip_http_redirect=true", headers={**bearer(session), **API_2024}
    )
    assert BROWSER_BINDING_COOKIE not in response.cookies
    assert admin.execute("select browser_binding_digest from auth.flow_state").fetchone() == (None,)
    oidc_provider.set_user("linked-sub", email="linked@example.com", email_verified=True)
    provider_location = await oidc_provider.log_in((await response.json())["url"], "linked-sub")
    oidc_client.session.cookie_jar.clear()
    location = await callback(oidc_client, provider_location)
    assert "error_code" not in query_of(location)
    assert admin.execute("select count(*) from auth.identities where provider = 'oidc'").fetchone()[0] == 1


async def test_an_expired_state_is_refused(oidc_client, oidc_provider, admin):
    oidc_provider.set_user("late-sub", email="late@example.com", email_verified=True)
    provider_location = await oidc_provider.log_in(await start(oidc_client), "late-sub")
    admin.execute("update auth.flow_state set created_at = created_at - interval '11 minutes'")
    location = await callback(oidc_client, provider_location)
    assert query_of(location)["error_code"] == "bad_oauth_state"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_the_provider_refusing_goes_back_to_redirect_to(oidc_client, oidc_provider, admin):
    # The user denies at the provider, which answers error (with the state, RFC 6749 4.1.2.1).
    state = query_of(await start(oidc_client))["state"]
    response = await oidc_client.get(
        "/callback",
        params={"state": state, "error": "access_denied", "error_description": "The user said no"},
        allow_redirects=False,
    )
    location = response.headers["Location"]
    assert location.startswith(APP + "?")
    assert query_of(location)["error"] == "access_denied" and query_of(location)["error_code"] == "bad_oauth_callback"
    assert "sb" in fragment_of(location)
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_a_verified_provider_email_links_to_the_confirmed_password_user(oidc_client, oidc_provider, admin):
    signed_up = await sign_up(oidc_client, "dana@example.com")  # autoconfirm: a confirmed address
    user_id = signed_up["user"]["id"]
    oidc_provider.set_user("dana-sub", email="dana@example.com", email_verified=True)
    session = fragment_of(await oidc_sign_in(oidc_client, oidc_provider, "dana-sub"))
    assert claims_of(session["access_token"])["sub"] == user_id
    providers = admin.execute(
        "select array_agg(provider order by provider) from auth.identities where user_id = %s", (user_id,)
    ).fetchone()[0]
    assert providers == ["email", "oidc"]
    app_metadata = claims_of(session["access_token"])["app_metadata"]
    assert app_metadata["provider"] == "email" and sorted(app_metadata["providers"]) == ["email", "oidc"]
    # The password still works.
    response = await oidc_client.post(
        "/token?grant_type=password", json={"email": "dana@example.com", "password": "a good password"}
    )
    assert response.status == 200


async def test_an_unverified_provider_email_does_not_take_over_an_account(oidc_client, oidc_provider, admin):
    victim = (await sign_up(oidc_client, "erin@example.com"))["user"]["id"]
    oidc_provider.set_user("mallory-sub", email="erin@example.com", email_verified=False)
    session = fragment_of(await oidc_sign_in(oidc_client, oidc_provider, "mallory-sub"))
    other = claims_of(session["access_token"])
    assert other["sub"] != victim and other["email"] == ""  # a separate account, without the address
    assert admin.execute("select count(*) from auth.identities where user_id = %s", (victim,)).fetchone()[0] == 1
    assert (
        admin.execute("select identity_data ->> 'email' from auth.identities where provider = 'oidc'").fetchone()[0]
        == "erin@example.com"
    )


async def test_a_verified_email_takes_over_an_unconfirmed_account_without_its_password(
    make_client, oidc_provider, admin
):
    client = await make_client(external={"oidc": oidc_config(oidc_provider.issuer)}, mailer_autoconfirm=False)
    response = await client.post("/signup", json={"email": "frank@example.com", "password": "a good password"})
    squatter = (await response.json())["id"]
    oidc_provider.set_user("frank-sub", email="frank@example.com", email_verified=True)
    session = fragment_of(await oidc_sign_in(client, oidc_provider, "frank-sub"))
    assert claims_of(session["access_token"])["sub"] == squatter
    confirmed, password = admin.execute(
        "select email_confirmed_at is not null, encrypted_password from auth.users where id = %s", (squatter,)
    ).fetchone()
    assert confirmed and password is None  # the password set without proof of the address is gone


async def test_signups_disabled_refuses_new_users_but_not_known_ones(make_client, oidc_provider, admin):
    client = await make_client(external={"oidc": oidc_config(oidc_provider.issuer)}, disable_signup=True)
    oidc_provider.set_user("gina-sub", email="gina@example.com", email_verified=True)
    location = await oidc_sign_in(client, oidc_provider, "gina-sub")
    assert query_of(location)["error_code"] == "signup_disabled" and query_of(location)["error"] == "access_denied"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_authorize_forwards_extra_parameters_and_keeps_its_own(oidc_client, oidc_provider):
    location = await start(
        oidc_client,
        login_hint="alice@example.com",
        prompt="consent",
        redirect_uri="https://evil.example/cb",
        state="mine",
        scopes="offline_access",
    )
    query = {key: values for key, values in parse_qs(urlsplit(location).query).items()}
    assert query["login_hint"] == ["alice@example.com"] and query["prompt"] == ["consent"]
    assert query["redirect_uri"] == ["http://127.0.0.1:9/callback"] and query["state"] != ["mine"]
    assert query["client_id"] == ["authgres-test-client"] and query["response_type"] == ["code"]
    assert query["scope"] == ["openid email profile offline_access"]


async def test_authorize_refuses_unknown_and_disabled_providers_and_bad_challenges(oidc_client, admin):
    for provider in ("nope", "github", ""):
        response = await oidc_client.get(f"/authorize?provider={provider}", headers=API_2024, allow_redirects=False)
        assert (response.status, (await response.json())["code"]) == (400, "validation_failed")
    response = await oidc_client.get(
        "/authorize?provider=oidc&code_challenge_method=s256", headers=API_2024, allow_redirects=False
    )
    assert (response.status, (await response.json())["code"]) == (400, "validation_failed")
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 0


async def test_a_redirect_to_outside_the_allow_list_returns_to_the_site(oidc_client, oidc_provider):
    oidc_provider.set_user("hal-sub", email="hal@example.com", email_verified=True)
    location = await callback(
        oidc_client,
        await oidc_provider.log_in(await start(oidc_client, redirect_to="https://evil.example/steal"), "hal-sub"),
    )
    assert location.startswith("http://localhost:3000/#access_token=")


async def test_settings_show_the_enabled_providers(oidc_client):
    external = (await (await oidc_client.get("/settings")).json())["external"]
    assert external["oidc"] is True and external["github"] is False and external["email"] is True


async def test_an_unreachable_provider_is_a_503_not_a_client_error(make_client, admin):
    from tests.conftest import free_port

    client = await make_client(external={"oidc": oidc_config(f"http://127.0.0.1:{free_port()}")})
    response = await client.get("/authorize?provider=oidc", headers=API_2024, allow_redirects=False)
    assert response.status == 503
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 0


async def test_github_sign_in_reads_the_primary_verified_email(make_client, github, admin):
    client = await make_client(external={"github": github_config(github)})
    github.next_user = GitHubUser(
        id=4242,
        login="octo",
        name="Octo Cat",
        emails=[
            {"email": "other@example.com", "primary": False, "verified": True},
            {"email": "octo@example.com", "primary": True, "verified": True},
        ],
    )
    verifier, challenge = pair()
    location = await callback(client, await _github_authorize(client, github, **challenge))
    response = await client.post(
        "/token?grant_type=pkce", json={"auth_code": query_of(location)["code"], "code_verifier": verifier}
    )
    session = await response.json()
    assert session["user"]["email"] == "octo@example.com" and session["user"]["email_confirmed_at"]
    (identity,) = session["user"]["identities"]
    assert (identity["provider"], identity["id"]) == ("github", "4242")
    assert identity["identity_data"]["user_name"] == "octo" and identity["identity_data"]["full_name"] == "Octo Cat"
    assert session["provider_token"].startswith("gho_")
    assert github.token_requests[-1]["redirect_uri"] == "http://127.0.0.1:9/callback"


async def test_github_refusing_the_code_is_a_callback_error(make_client, github, admin):
    client = await make_client(external={"github": github_config(github)})
    github.next_user = GitHubUser(id=1, login="x", emails=[])
    provider_location = await _github_authorize(client, github)
    github.codes.clear()  # the code is no longer valid at the provider
    location = await callback(client, provider_location)
    assert query_of(location)["error_code"] == "bad_oauth_callback"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def _github_authorize(client, github, **query) -> str:
    import aiohttp

    provider_url = await start(client, "github", **query)
    assert provider_url.startswith(github.url + "/login/oauth/authorize?")
    async with aiohttp.ClientSession() as session, session.get(provider_url, allow_redirects=False) as response:
        return response.headers["Location"]


# Manual linking.


async def test_linking_needs_manual_linking_enabled(make_client, oidc_provider):
    client = await make_client(external={"oidc": oidc_config(oidc_provider.issuer)})
    session = await sign_up(client, "ivy@example.com")
    response = await client.get(
        "/user/identities/authorize?provider=oidc&skip_http_redirect=true", headers={**bearer(session), **API_2024}
    )
    assert (response.status, (await response.json())["code"]) == (404, "manual_linking_disabled")
    identity = session["user"]["identities"][0]["identity_id"]
    response = await client.delete(f"/user/identities/{identity}", headers={**bearer(session), **API_2024})
    assert (response.status, (await response.json())["code"]) == (404, "manual_linking_disabled")


async def test_link_then_unlink_an_identity(oidc_client, oidc_provider, admin):
    session = await sign_up(oidc_client, "jay@example.com")
    oidc_provider.set_user("jay-other", email="jay@elsewhere.example", email_verified=True)
    url = await start_link(oidc_client, session)
    location = await callback(oidc_client, await oidc_provider.log_in(url, "jay-other"))
    linked = fragment_of(location)
    assert claims_of(linked["access_token"])["sub"] == session["user"]["id"]
    user = await (await oidc_client.get("/user", headers=bearer(session))).json()
    assert sorted(i["provider"] for i in user["identities"]) == ["email", "oidc"]
    assert user["email"] == "jay@example.com"
    as_admin = await oidc_client.get(f"/admin/users/{user['id']}", headers=service_headers(admin))
    assert sorted(i["provider"] for i in (await as_admin.json())["identities"]) == ["email", "oidc"]

    email_identity = next(i for i in user["identities"] if i["provider"] == "email")
    response = await oidc_client.delete(f"/user/identities/{email_identity['identity_id']}", headers=bearer(session))
    assert response.status == 200
    response = await oidc_client.delete(
        "/user/identities/00000000-0000-0000-0000-000000000000", headers={**bearer(session), **API_2024}
    )
    assert (response.status, (await response.json())["code"]) == (422, "identity_not_found")
    oidc_identity = next(i for i in user["identities"] if i["provider"] == "oidc")
    response = await oidc_client.delete(
        f"/user/identities/{oidc_identity['identity_id']}", headers={**bearer(session), **API_2024}
    )
    assert (response.status, (await response.json())["code"]) == (422, "single_identity_not_deletable")
    assert admin.execute(
        "select raw_app_meta_data -> 'providers' from auth.users where id = %s", (session["user"]["id"],)
    ).fetchone()[0] == ["oidc"]


async def test_linking_an_identity_of_another_user_is_refused(oidc_client, oidc_provider, admin):
    oidc_provider.set_user("kim-sub", email="kim@example.com", email_verified=True)
    await oidc_sign_in(oidc_client, oidc_provider, "kim-sub")  # kim's own account
    session = await sign_up(oidc_client, "lee@example.com")
    response = await oidc_client.get(
        "/user/identities/authorize",
        params={"provider": "oidc", "redirect_to": APP},
        headers=bearer(session),
        allow_redirects=False,
    )
    assert response.status == 302
    location = await callback(oidc_client, await oidc_provider.log_in(response.headers["Location"], "kim-sub"))
    assert query_of(location)["error_code"] == "identity_already_exists"
    assert (
        admin.execute("select count(*) from auth.identities where user_id = %s", (session["user"]["id"],)).fetchone()[0]
        == 1
    )


async def test_a_pkce_link_is_made_at_the_code_exchange_by_the_verifiers_holder(oidc_client, oidc_provider, admin):
    # Lee starts a link and gets someone else (here, their provider account "nat-sub") through the provider.
    session = await sign_up(oidc_client, "lee@example.com")
    verifier, challenge = pair()
    url = await start_link(oidc_client, session, **challenge)
    oidc_provider.set_user("nat-sub", email="nat@example.com", email_verified=True)
    location = await callback(oidc_client, await oidc_provider.log_in(url, "nat-sub"))
    code = query_of(location)["code"]
    linked = "select count(*) from auth.identities where provider = 'oidc'"
    assert admin.execute(linked).fetchone()[0] == 0  # nothing is linked by reaching the callback

    exchange = "/token?grant_type=pkce"
    wrong = await oidc_client.post(exchange, headers=API_2024, json={"auth_code": code, "code_verifier": "x" * 43})
    assert (wrong.status, (await wrong.json())["code"]) == (400, "bad_code_verifier")
    assert admin.execute(linked).fetchone()[0] == 0
    right = await oidc_client.post(exchange, json={"auth_code": code, "code_verifier": verifier})
    assert right.status == 200
    assert claims_of((await right.json())["access_token"])["sub"] == session["user"]["id"]
    owner = "select user_id from auth.identities where provider = 'oidc' and provider_id = 'nat-sub'"
    assert str(admin.execute(owner).fetchone()[0]) == session["user"]["id"]


async def test_a_pkce_link_of_another_users_identity_is_refused_at_the_exchange(oidc_client, oidc_provider, admin):
    oidc_provider.set_user("ola-sub", email="ola@example.com", email_verified=True)
    await oidc_sign_in(oidc_client, oidc_provider, "ola-sub")  # ola's own account
    session = await sign_up(oidc_client, "pat@example.com")
    verifier, challenge = pair()
    url = await start_link(oidc_client, session, **challenge)
    location = await callback(oidc_client, await oidc_provider.log_in(url, "ola-sub"))
    response = await oidc_client.post(
        "/token?grant_type=pkce",
        headers=API_2024,
        json={"auth_code": query_of(location)["code"], "code_verifier": verifier},
    )
    assert (response.status, (await response.json())["code"]) == (422, "identity_already_exists")
    owned = "select count(*) from auth.identities where user_id = %s"
    assert admin.execute(owned, (session["user"]["id"],)).fetchone()[0] == 1


async def test_an_anonymous_user_linking_an_identity_becomes_permanent(oidc_client, oidc_provider, admin):
    response = await oidc_client.post("/signup", json={})
    anonymous = await response.json()
    assert anonymous["user"]["is_anonymous"]
    oidc_provider.set_user("max-sub", email="max@example.com", email_verified=True)
    url = await start_link(oidc_client, anonymous)
    location = await callback(oidc_client, await oidc_provider.log_in(url, "max-sub"))
    claims = claims_of(fragment_of(location)["access_token"])
    assert claims["sub"] == anonymous["user"]["id"] and claims["is_anonymous"] is False
    assert claims["email"] == "max@example.com"


async def test_the_state_is_a_flow_state_row_bound_to_its_provider(oidc_client, oidc_provider, admin):
    location = await start(oidc_client)
    state = query_of(location)["state"]
    provider, method, challenge = admin.execute(
        "select provider_type, authentication_method, code_challenge from auth.flow_state where id = %s", (state,)
    ).fetchone()
    assert (provider, method, challenge) == ("oidc", "oauth", None)
    assert hashlib.sha256(state.encode()).hexdigest()  # a UUID: 122 random bits


async def test_apple_comes_back_as_a_form_post_with_a_client_secret_signed_from_the_p8_key(make_client, issuer, admin):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    config = oidc_config(issuer.url, secret=pem.decode(), team_id="TEAM123456", key_id="KEY1234567")
    client = await make_client(external={"apple": config})
    location = await start(client, "apple")
    assert query_of(location)["response_mode"] == "form_post" and query_of(location)["scope"] == "name email"
    issuer.next_claims = {"sub": "apple-001", "email": "apple@privaterelay.example", "email_verified": "true"}
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(location, allow_redirects=False) as response:
        answer = query_of(response.headers["Location"])
    # Apple posts the code, the state and, the first time, the user's name as a form.
    form = {**answer, "user": '{"name": {"firstName": "Ann", "lastName": "Apple"}}'}
    response = await client.post("/callback", data=form, allow_redirects=False)
    assert response.status == 302
    session = fragment_of(response.headers["Location"])
    claims = claims_of(session["access_token"])
    assert claims["email"] == "apple@privaterelay.example"  # "true" as text counts as verified
    assert claims["user_metadata"]["full_name"] == "Ann Apple"
    secret = issuer.token_requests[-1]["client_secret"]
    import jwt

    decoded = jwt.decode(secret, key.public_key(), algorithms=["ES256"], audience="https://appleid.apple.com")
    assert (decoded["iss"], decoded["sub"]) == ("TEAM123456", "authgres-test-client")
    assert jwt.get_unverified_header(secret)["kid"] == "KEY1234567"
    assert admin.execute("select provider, provider_id from auth.identities").fetchall() == [("apple", "apple-001")]


async def test_a_form_post_without_a_state_goes_to_the_site_with_an_error(oidc_client):
    response = await oidc_client.post("/callback", data={"code": "x"}, allow_redirects=False)
    assert response.status == 302 and query_of(response.headers["Location"])["error_code"] == "bad_oauth_callback"
