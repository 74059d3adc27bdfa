"""Passkeys and the WebAuthn MFA factor through @supabase/auth-js (tests/node/run.mjs): its passkey.*,
admin.passkey.* and mfa.webauthn.* methods against the live server. A browser's navigator.credentials is
replaced by the test's software authenticator, whose answers auth-js sends as a browser's
PublicKeyCredential.toJSON() (tests/browser does the same ceremonies with Chromium's authenticator)."""

import jwt
import pytest

from tests.authenticator import Authenticator, b64url
from tests.compat.test_auth_js_pkce import Browser
from tests.conftest import JWT_SECRET

PASSWORD = "a good password"
SERVICE_KEY = jwt.encode({"role": "service_role", "iss": "supabase"}, JWT_SECRET, algorithm="HS256")


@pytest.fixture
async def pk(make_client):
    return await make_client(passkey_enabled=True, mfa_web_authn_enabled=True)


@pytest.fixture
def browser(pk, tmp_path):
    return Browser(pk, tmp_path / "browser.json")


def ok(result):
    assert result["error"] is None, result
    return result["data"]


async def test_register_sign_in_list_rename_delete_through_auth_js(browser, pk, tmp_path):
    user = ok(await browser.run("signUp", email="js@example.com", password=PASSWORD))["user"]
    started = ok(await browser.run("passkeyStartRegistration"))
    authenticator = Authenticator()
    credential = authenticator.create(started["options"])
    passkey = ok(
        await browser.run("passkeyVerifyRegistration", challenge_id=started["challenge_id"], credential=credential)
    )
    assert passkey["friendly_name"] == "Passkey"

    # Another browser, no session: the passkey alone signs in, and auth-js keeps the session.
    other = Browser(pk, tmp_path / "other.json")
    started = ok(await other.run("passkeyStartAuthentication"))
    signed_in = await other.run(
        "passkeyVerifyAuthentication",
        challenge_id=started["challenge_id"],
        credential=authenticator.get(started["options"]),
    )
    session = ok(signed_in)["session"]
    assert session["user"]["id"] == user["id"] and signed_in["events"][-1] == "SIGNED_IN"
    assert [
        each["method"] for each in jwt.decode(session["access_token"], options={"verify_signature": False})["amr"]
    ] == ["passkey"]
    assert ok(await other.run("getUser"))["user"]["id"] == user["id"]

    # A replayed challenge comes back as auth-js's error with GoTrue's code.
    replayed = await other.run(
        "passkeyVerifyAuthentication",
        challenge_id=started["challenge_id"],
        credential=authenticator.get(started["options"]),
    )
    assert replayed["error"]["code"] == "webauthn_challenge_not_found" and replayed["error"]["status"] == 400

    listed = ok(await other.run("passkeyList"))
    assert [each["id"] for each in listed] == [passkey["id"]]
    renamed = ok(await other.run("passkeyUpdate", passkey_id=passkey["id"], friendly_name="Phone"))
    assert renamed["friendly_name"] == "Phone"
    admin_listed = ok(await browser.run("adminListPasskeys", key=SERVICE_KEY, user_id=user["id"]))
    assert [(each["id"], each["friendly_name"]) for each in admin_listed] == [(passkey["id"], "Phone")]
    await other.run("passkeyDelete", passkey_id=passkey["id"])
    assert ok(await other.run("passkeyList")) == []


async def test_admin_deletes_a_passkey_through_auth_js(browser):
    user = ok(await browser.run("signUp", email="admin-js@example.com", password=PASSWORD))["user"]
    started = ok(await browser.run("passkeyStartRegistration"))
    credential = Authenticator().create(started["options"])
    passkey = ok(
        await browser.run("passkeyVerifyRegistration", challenge_id=started["challenge_id"], credential=credential)
    )
    ok(await browser.run("adminDeletePasskey", key=SERVICE_KEY, user_id=user["id"], passkey_id=passkey["id"]))
    assert ok(await browser.run("adminListPasskeys", key=SERVICE_KEY, user_id=user["id"])) == []


async def test_the_webauthn_factor_through_mfa_webauthn(browser):
    ok(await browser.run("signUp", email="mfa-js@example.com", password=PASSWORD))
    factor = ok(await browser.run("mfaWebauthnEnroll", friendly_name="Key"))
    assert factor["type"] == "webauthn" and factor["friendly_name"] == "Key"
    client_rp = {"rpId": "localhost", "rpOrigins": ["http://localhost:3000"]}
    challenged = ok(await browser.run("mfaChallenge", factor_id=factor["id"], webauthn=client_rp))
    assert challenged["webauthn"]["type"] == "create"
    public_key = challenged["webauthn"]["credential_options"]["publicKey"]  # auth-js deserialised it
    authenticator = Authenticator()
    credential = authenticator.create(public_key)
    verified = await browser.run(
        "mfaWebauthnVerify", factor_id=factor["id"], challenge_id=challenged["id"], type="create", credential=credential
    )
    assert ok(verified)["user"]["factors"][0]["status"] == "verified"
    assert verified["events"][-1] == "MFA_CHALLENGE_VERIFIED"
    aal = ok(await browser.run("mfaAal"))
    assert aal["currentLevel"] == "aal2" and "mfa/webauthn" in [
        each["method"] for each in aal["currentAuthenticationMethods"]
    ]
    factors = ok(await browser.run("mfaListFactors"))
    assert [each["id"] for each in factors["webauthn"]] == [factor["id"]]

    # A new sign-in steps up with a request challenge for the registered credential.
    ok(await browser.run("signInWithPassword", email="mfa-js@example.com", password=PASSWORD))
    assert ok(await browser.run("mfaAal"))["nextLevel"] == "aal2"
    challenged = ok(await browser.run("mfaChallenge", factor_id=factor["id"], webauthn=client_rp))
    options = challenged["webauthn"]["credential_options"]["publicKey"]
    assert challenged["webauthn"]["type"] == "request"
    assert [each["id"] for each in options["allowCredentials"]] == [b64url(authenticator.credentials[0].credential_id)]
    stepped = await browser.run(
        "mfaWebauthnVerify",
        factor_id=factor["id"],
        challenge_id=challenged["id"],
        type="request",
        credential=authenticator.get(options),
    )
    ok(stepped)
    assert ok(await browser.run("mfaAal"))["currentLevel"] == "aal2"
    # The same answer again: GoTrue's code through auth-js.
    again = await browser.run(
        "mfaWebauthnVerify",
        factor_id=factor["id"],
        challenge_id=challenged["id"],
        type="request",
        credential=authenticator.get(options),
    )
    assert again["error"]["code"] == "mfa_challenge_expired"
