"""PKCE (RFC 7636) for the email flows over HTTP, with a real SMTP server: the emailed link answers an
auth code, POST /token?grant_type=pkce exchanges it with the verifier, and everything that should fail
does, with GoTrue's error codes. tests/compat/test_auth_js_pkce.py drives the same through auth-js."""

import asyncio
import base64
import hashlib
import secrets
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from authgres.app import create_app
from tests.conftest import free_port
from tests.http.helpers import API_2024, bearer
from tests.http.mail import code_in, fragment, link_in, token_hash_in

PASSWORD = "a good password"


def pair(method: str = "s256") -> tuple[str, dict[str, str]]:
    """A fresh verifier, and the body members that carry its challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = verifier
    if method.lower() == "s256":
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, {"code_challenge": challenge, "code_challenge_method": method}


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def follow(client, message) -> str:
    """Follows the emailed link as a browser would; the Location it answers."""
    response = await client.get(link_in(message), allow_redirects=False)
    assert response.status == 303
    return response.headers["Location"]


async def exchange(client, code: str, verifier: str):
    return await client.post(
        "/token?grant_type=pkce", headers=API_2024, json={"auth_code": code, "code_verifier": verifier}
    )


async def magic_link(client, inbox, address: str, index: int = 0, method: str = "s256", redirect: str = ""):
    verifier, challenge = pair(method)
    query = f"?redirect_to={redirect}" if redirect else ""
    response = await client.post(f"/otp{query}", json={"email": address, **challenge})
    assert response.status == 200 and await response.json() == {}
    return verifier, await inbox.next_to(address, index)


async def test_a_magic_link_answers_a_code_that_the_verifier_exchanges_once(mail_client, inbox, admin):
    verifier, message = await magic_link(
        mail_client, inbox, "pkce@example.com", redirect="http://localhost:3000/callback%3Fnext%3D%252Fhome"
    )
    assert link_in(message).startswith("/verify?token=pkce_")
    location = await follow(mail_client, message)
    target = urlsplit(location)
    assert (target.scheme, target.netloc, target.path) == ("http", "localhost:3000", "/callback")
    assert not target.fragment  # no session in the URL
    parameters = query_of(location)
    assert parameters["next"] == "/home"  # the redirect's own query is kept
    code = parameters["code"]
    # Only the code's digest is kept; the user is known and confirmed already.
    digest, user_id, method = admin.execute(
        "select auth_code_digest, user_id, authentication_method from auth.flow_state"
    ).fetchone()
    assert bytes(digest) == hashlib.sha256(code.encode()).digest()
    assert admin.execute("select email_confirmed_at is not null from auth.users where id = %s", (user_id,)).fetchone()[
        0
    ]
    assert method == "email/signup"  # a new address: /otp signs it up
    # The session is made at the exchange, not at the click.
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 0

    response = await exchange(mail_client, code, verifier)
    session = await response.json()
    assert response.status == 200, session
    assert set(session) >= {"access_token", "refresh_token", "expires_in", "expires_at", "token_type", "user"}
    assert session["user"]["id"] == str(user_id) and session["user"]["email"] == "pkce@example.com"
    me = await mail_client.get("/user", headers=bearer(session))
    assert me.status == 200
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 0

    again = await exchange(mail_client, code, verifier)
    assert again.status == 404
    assert (await again.json())["code"] == "flow_state_not_found"
    # The link itself was spent: following it again is an error, in the query too (PKCE clients read it).
    replay = await follow(mail_client, message)
    assert query_of(replay)["error_code"] == fragment(replay)["error_code"] == "otp_expired"


async def test_a_wrong_verifier_is_refused_and_leaves_the_code_usable(mail_client, inbox):
    verifier, message = await magic_link(mail_client, inbox, "wrong@example.com")
    code = query_of(await follow(mail_client, message))["code"]
    wrong = await exchange(mail_client, code, secrets.token_urlsafe(48))
    assert wrong.status == 400
    assert (await wrong.json())["code"] == "bad_code_verifier"
    right = await exchange(mail_client, code, verifier)
    assert right.status == 200


async def test_a_code_dies_with_its_account(mail_client, inbox, admin):
    verifier, message = await magic_link(mail_client, inbox, "gone@example.com")
    code = query_of(await follow(mail_client, message))["code"]
    admin.execute("update auth.users set deleted_at = now()")  # soft-deleted in between
    response = await exchange(mail_client, code, verifier)
    assert response.status == 404
    assert (await response.json())["code"] == "flow_state_not_found"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 0


async def test_the_plain_method_in_any_case(mail_client, inbox):
    verifier, message = await magic_link(mail_client, inbox, "plain@example.com", method="PLAIN")
    code = query_of(await follow(mail_client, message))["code"]
    # plain: the challenge is the verifier itself, so a hashed one does not match.
    hashed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert (await exchange(mail_client, code, hashed)).status == 400
    assert (await exchange(mail_client, code, verifier)).status == 200


async def test_a_code_expires_counted_from_the_click_not_the_email(mail_client, inbox, admin):
    verifier, message = await magic_link(mail_client, inbox, "late@example.com")
    # The email is an hour old when it is opened: that does not matter.
    admin.execute("update auth.flow_state set created_at = now() - interval '1 hour'")
    admin.execute("update auth.one_time_tokens set created_at = now() - interval '50 minutes'")
    code = query_of(await follow(mail_client, message))["code"]
    # The code, issued at the click, lives AUTHGRES_FLOW_STATE_EXPIRY_DURATION (300) seconds.
    admin.execute("update auth.flow_state set auth_code_issued_at = now() - interval '301 seconds'")
    expired = await exchange(mail_client, code, verifier)
    assert expired.status == 422
    assert (await expired.json())["code"] == "flow_state_expired"
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 1
    assert admin.execute("select auth.prune()").fetchone()[0] >= 1
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 0


async def test_a_shorter_code_lifetime_is_a_setting(mail_settings, aiohttp_client, inbox, admin):
    client = await aiohttp_client(create_app(replace(mail_settings, flow_state_expiry=60)))
    verifier, message = await magic_link(client, inbox, "short@example.com")
    code = query_of(await follow(client, message))["code"]
    admin.execute("update auth.flow_state set auth_code_issued_at = now() - interval '61 seconds'")
    assert (await (await exchange(client, code, verifier)).json())["code"] == "flow_state_expired"


async def test_concurrent_exchanges_of_one_code_give_one_session(mail_client, inbox, admin):
    verifier, message = await magic_link(mail_client, inbox, "race@example.com")
    code = query_of(await follow(mail_client, message))["code"]
    answers = await asyncio.gather(*(exchange(mail_client, code, verifier) for _ in range(4)))
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [200, 404, 404, 404]
    for answer in answers:
        if answer.status == 404:
            assert (await answer.json())["code"] == "flow_state_not_found"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1


async def test_an_older_link_still_works_after_a_newer_one_was_sent(mail_client, inbox, admin):
    first_verifier, first = await magic_link(mail_client, inbox, "twice@example.com")
    second_verifier, second = await magic_link(mail_client, inbox, "twice@example.com", index=1)
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 2
    # Each link is bound to its own flow: the older one's code answers the older verifier only.
    code = query_of(await follow(mail_client, first))["code"]
    assert (await exchange(mail_client, code, second_verifier)).status == 400
    assert (await exchange(mail_client, code, first_verifier)).status == 200
    # Signing in spent the other sign-in links of the user, as without PKCE.
    assert "error_code" in query_of(await follow(mail_client, second))


async def test_a_new_implicit_link_does_not_replace_a_pkce_one(mail_client, inbox):
    verifier, first = await magic_link(mail_client, inbox, "mixed@example.com")
    await mail_client.post("/otp", json={"email": "mixed@example.com"})  # no PKCE
    second = await inbox.next_to("mixed@example.com", 1)
    assert "pkce_" not in link_in(second)
    code = query_of(await follow(mail_client, first))["code"]
    assert (await exchange(mail_client, code, verifier)).status == 200


async def test_token_hash_of_a_pkce_link_still_signs_in_directly_on_another_device(mail_client, inbox, admin):
    _, message = await magic_link(mail_client, inbox, "device@example.com")
    token_hash = token_hash_in(message)
    assert token_hash.startswith("pkce_")
    response = await mail_client.post("/verify", json={"type": "email", "token_hash": token_hash})
    session = await response.json()
    assert response.status == 200, session
    assert session["user"]["email"] == "device@example.com"
    # Its flow has no token left and will never issue a code: the next pruning removes it.
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 1
    admin.execute("select auth.prune()")
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 0


async def test_the_code_by_email_still_signs_in_without_the_verifier(mail_client, inbox):
    _, message = await magic_link(mail_client, inbox, "typed@example.com")
    response = await mail_client.post(
        "/verify", json={"type": "email", "email": "typed@example.com", "token": code_in(message)}
    )
    assert response.status == 200


async def test_signup_recovery_and_resend_links_are_pkce_flows(mail_client, inbox, admin):
    verifier, challenge = pair()
    response = await mail_client.post("/signup", json={"email": "new@example.com", "password": PASSWORD, **challenge})
    assert response.status == 200 and "access_token" not in await response.json()
    # A resend with another challenge: a second flow, and both links stay live.
    resend_verifier, resend_challenge = pair()
    response = await mail_client.post(
        "/resend", json={"type": "signup", "email": "new@example.com", **resend_challenge}
    )
    assert response.status == 200
    first, resent = await inbox.next_to("new@example.com"), await inbox.next_to("new@example.com", 1)
    assert link_in(first) != link_in(resent)
    code = query_of(await follow(mail_client, first))["code"]
    assert (await exchange(mail_client, code, resend_verifier)).status == 400  # the resent link's flow
    assert (await exchange(mail_client, code, verifier)).status == 200

    recovery_verifier, recovery_challenge = pair()
    response = await mail_client.post("/recover", json={"email": "new@example.com", **recovery_challenge})
    assert response.status == 200
    recovery = await inbox.next_to("new@example.com", 2)
    code = query_of(await follow(mail_client, recovery))["code"]
    assert (
        admin.execute(
            "select authentication_method from auth.flow_state where auth_code_issued_at is not null"
        ).fetchone()[0]
        == "recovery"
    )
    session = await (await exchange(mail_client, code, recovery_verifier)).json()
    changed = await mail_client.put("/user", headers=bearer(session), json={"password": "another good one"})
    assert changed.status == 200
    login = await mail_client.post(
        "/token?grant_type=password", json={"email": "new@example.com", "password": "another good one"}
    )
    assert login.status == 200


async def test_an_email_change_confirmed_by_pkce_links(mail_client, inbox, admin):
    response = await mail_client.post("/signup", json={"email": "old@example.com", "password": PASSWORD})
    assert response.status == 200
    confirmation = await inbox.next_to("old@example.com")
    session = fragment(await follow(mail_client, confirmation))
    verifier, challenge = pair()
    response = await mail_client.put(
        "/user", headers=bearer(session), json={"email": "changed@example.com", **challenge}
    )
    assert response.status == 200
    assert (await response.json())["new_email"] == "changed@example.com"
    # Secure email change: both addresses confirm; the first link says so, the second answers the code.
    current = await inbox.next_to("old@example.com", 1)
    new = await inbox.next_to("changed@example.com")
    assert "message" in fragment(await follow(mail_client, current))
    code = query_of(await follow(mail_client, new))["code"]
    response = await exchange(mail_client, code, verifier)
    changed = await response.json()
    assert response.status == 200, changed
    assert changed["user"]["email"] == "changed@example.com"


async def test_a_deferred_signup_with_pkce(mail_settings, aiohttp_client, inbox, admin):
    client = await aiohttp_client(create_app(replace(mail_settings, signup_deferred=True)))
    verifier, challenge = pair()
    response = await client.post("/signup", json={"email": "later@example.com", "password": PASSWORD, **challenge})
    assert response.status == 200
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    assert admin.execute("select user_id from auth.flow_state").fetchone()[0] is None  # not known yet
    code = query_of(await follow(client, await inbox.next_to("later@example.com")))["code"]
    response = await exchange(client, code, verifier)
    session = await response.json()
    assert response.status == 200, session
    assert session["user"]["email"] == "later@example.com" and session["user"]["email_confirmed_at"]
    login = await client.post("/token?grant_type=password", json={"email": "later@example.com", "password": PASSWORD})
    assert login.status == 200


@pytest.mark.parametrize(
    "members",
    [
        {"code_challenge": "a" * 43},  # no method
        {"code_challenge_method": "s256"},  # no challenge
        {"code_challenge": "a" * 42, "code_challenge_method": "s256"},  # too short
        {"code_challenge": "a" * 129, "code_challenge_method": "s256"},  # too long
        {"code_challenge": "a" * 42 + "/", "code_challenge_method": "s256"},  # outside the alphabet
        {"code_challenge": "a" * 43, "code_challenge_method": "sha1"},  # no such method
    ],
)
async def test_malformed_pkce_members_are_refused_before_anything_is_sent(mail_client, admin, members):
    assert (await mail_client.post("/signup", json={"email": "shape@example.com", "password": PASSWORD})).status == 200
    admin.execute("update auth.users set email_confirmed_at = now()")
    login = await mail_client.post(
        "/token?grant_type=password", json={"email": "shape@example.com", "password": PASSWORD}
    )
    session = await login.json()
    requests = [
        ("POST", "/signup", {"email": "other@example.com", "password": PASSWORD}, {}),
        ("POST", "/otp", {"email": "shape@example.com"}, {}),
        ("POST", "/magiclink", {"email": "shape@example.com"}, {}),
        ("POST", "/recover", {"email": "shape@example.com"}, {}),
        ("POST", "/resend", {"type": "signup", "email": "shape@example.com"}, {}),
        ("PUT", "/user", {"email": "elsewhere@example.com"}, bearer(session)),
    ]
    queued = admin.execute("select count(*) from auth.email_outbox").fetchone()[0]
    for method, path, body, headers in requests:
        response = await mail_client.request(method, path, headers={**API_2024, **headers}, json={**body, **members})
        assert response.status == 400, (path, await response.text())
        assert (await response.json())["code"] == "validation_failed", path
    assert admin.execute("select count(*) from auth.email_outbox").fetchone()[0] == queued
    assert admin.execute("select count(*) from auth.flow_state").fetchone()[0] == 0


async def test_null_pkce_members_mean_no_pkce(mail_client, inbox):
    response = await mail_client.post(
        "/otp", json={"email": "null@example.com", "code_challenge": None, "code_challenge_method": None}
    )
    assert response.status == 200
    assert "pkce_" not in link_in(await inbox.next_to("null@example.com"))


@pytest.mark.parametrize(
    "body", [{}, {"auth_code": "x"}, {"code_verifier": "x"}, {"auth_code": "", "code_verifier": ""}]
)
async def test_the_pkce_grant_needs_both_members(client, body):
    response = await client.post("/token?grant_type=pkce", headers=API_2024, json=body)
    assert response.status == 400
    assert (await response.json())["code"] == "validation_failed"


async def test_an_unknown_code_is_not_found(client):
    response = await exchange(client, "00000000-0000-4000-8000-000000000000", "v" * 43)
    assert response.status == 404
    assert (await response.json())["code"] == "flow_state_not_found"


async def test_the_pkce_grant_needs_no_captcha(mail_settings, aiohttp_client, inbox):
    # Captcha on, with a siteverify that cannot be reached: any request that asked it would fail (503).
    unreachable = f"http://127.0.0.1:{free_port()}/siteverify"
    client = await aiohttp_client(
        create_app(replace(mail_settings, captcha_enabled=True, captcha_secret="s", captcha_verify_url=unreachable))
    )
    verifier, challenge = pair()
    # Sending the link needs the captcha, as in GoTrue (the service_role key skips it here)...
    refused = await client.post("/otp", json={"email": "bot@example.com", **challenge})
    assert refused.status == 400 and (await refused.json())["error_code"] == "captcha_failed"
    # ...the exchange does not: the code was earned by the link.
    response = await exchange(client, "00000000-0000-4000-8000-000000000000", verifier)
    assert response.status == 404
