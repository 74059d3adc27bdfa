"""WebAuthn as an MFA factor over HTTP, with the bodies auth-js's mfa.webauthn methods send: enroll,
challenge (create, then request), verify (aal2, amr mfa/webauthn), and the ways an answer must fail."""

import asyncio

import pytest

from tests.authenticator import Authenticator, b64url
from tests.http.helpers import API_2024, bearer, claims_of, sign_up

PASSWORD = "a good password"
# What auth-js adds to the challenge and verify bodies (window.location): ignored, the RP is configured.
CLIENT_RP = {"rpId": "evil.example", "rpOrigins": ["https://evil.example"]}


@pytest.fixture
async def mfa(make_client):
    return await make_client(mfa_web_authn_enabled=True, passkey_enabled=True)


async def challenge(client, session, factor_id):
    response = await client.post(
        f"/factors/{factor_id}/challenge", headers=bearer(session), json={"webauthn": CLIENT_RP}
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def verify(client, session, factor_id, challenged, credential):
    return await client.post(
        f"/factors/{factor_id}/verify",
        headers={**bearer(session), **API_2024},
        json={
            "challenge_id": challenged["id"],
            "webauthn": {"type": challenged["webauthn"]["type"], "credential_response": credential, **CLIENT_RP},
        },
    )


async def password_session(client, email):
    response = await client.post("/token?grant_type=password", json={"email": email, "password": PASSWORD})
    assert response.status == 200, await response.text()
    return await response.json()


async def enrolled(client, email="mfa@example.com"):
    """A user with a verified WebAuthn factor: their aal2 session, the factor and its authenticator."""
    session = await sign_up(client, email)
    factor = await (
        await client.post("/factors", headers=bearer(session), json={"factor_type": "webauthn", "friendly_name": "Key"})
    ).json()
    created = await challenge(client, session, factor["id"])
    authenticator = Authenticator()
    response = await verify(
        client,
        session,
        factor["id"],
        created,
        authenticator.create(created["webauthn"]["credential_options"]["publicKey"]),
    )
    assert response.status == 200, await response.text()
    return await response.json(), factor, authenticator


async def test_enroll_register_and_sign_in_with_the_factor(mfa, admin):
    session = await sign_up(mfa, "alice@example.com")
    response = await mfa.post(
        "/factors", headers=bearer(session), json={"factor_type": "webauthn", "friendly_name": "Security key"}
    )
    assert response.status == 200, await response.text()
    factor = await response.json()
    assert factor["type"] == "webauthn" and factor["friendly_name"] == "Security key"

    created = await challenge(mfa, session, factor["id"])
    assert created["type"] == "webauthn" and isinstance(created["expires_at"], int)
    assert created["webauthn"]["type"] == "create"
    public_key = created["webauthn"]["credential_options"]["publicKey"]
    assert public_key["rp"]["id"] == "localhost"  # the configured RP, not the client's rpId
    assert public_key["user"]["name"] == "alice@example.com"

    authenticator = Authenticator()
    verified = await verify(mfa, session, factor["id"], created, authenticator.create(public_key))
    assert verified.status == 200, await verified.text()
    raised = await verified.json()
    claims = claims_of(raised["access_token"])
    assert claims["aal"] == "aal2" and "mfa/webauthn" in [each["method"] for each in claims["amr"]]
    row = admin.execute(
        "select f.status, c.factor_id = f.id, c.sign_count from auth.mfa_factors f "
        "join auth.webauthn_credentials c on c.factor_id = f.id"
    ).fetchone()
    assert row == ("verified", True, 0)
    user = await (await mfa.get("/user", headers=bearer(raised))).json()
    assert [(f["factor_type"], f["status"]) for f in user["factors"]] == [("webauthn", "verified")]

    # A later sign-in steps up with the factor: the challenge now asks for the registered credential.
    later = await password_session(mfa, "alice@example.com")
    requested = await challenge(mfa, later, factor["id"])
    assert requested["webauthn"]["type"] == "request"
    options = requested["webauthn"]["credential_options"]["publicKey"]
    assert [each["id"] for each in options["allowCredentials"]] == [b64url(authenticator.credentials[0].credential_id)]
    stepped = await verify(mfa, later, factor["id"], requested, authenticator.get(options))
    assert stepped.status == 200, await stepped.text()
    assert claims_of((await stepped.json())["access_token"])["aal"] == "aal2"
    assert admin.execute("select sign_count from auth.webauthn_credentials").fetchone()[0] == 1
    # The factor's credential is not a passkey: it neither lists nor signs in alone.
    assert await (await mfa.get("/passkeys", headers=bearer(later))).json() == []
    started = await (await mfa.post("/passkeys/authentication/options")).json()
    alone = await mfa.post(
        "/passkeys/authentication/verify",
        json={"challenge_id": started["challenge_id"], "credential": authenticator.get(started["options"])},
    )
    assert alone.status == 400 and alone.headers["x-sb-error-code"] == "webauthn_verification_failed"


async def test_disabled_factor_is_refused(client):
    session = await sign_up(client)
    response = await client.post("/factors", headers=bearer(session), json={"factor_type": "webauthn"})
    assert response.status == 422 and response.headers["x-sb-error-code"] == "mfa_webauthn_enroll_not_enabled"


async def test_a_replayed_challenge_is_refused(mfa):
    _, factor, authenticator = await enrolled(mfa)
    later = await password_session(mfa, "mfa@example.com")
    requested = await challenge(mfa, later, factor["id"])
    options = requested["webauthn"]["credential_options"]["publicKey"]
    assert (await verify(mfa, later, factor["id"], requested, authenticator.get(options))).status == 200
    replayed = await verify(mfa, later, factor["id"], requested, authenticator.get(options))
    assert replayed.status == 422 and replayed.headers["x-sb-error-code"] == "mfa_challenge_expired"


async def test_an_expired_challenge_is_refused(mfa, admin):
    _, factor, authenticator = await enrolled(mfa)
    later = await password_session(mfa, "mfa@example.com")
    requested = await challenge(mfa, later, factor["id"])
    admin.execute("update auth.mfa_challenges set expires_at = now() - interval '1 second'")
    options = requested["webauthn"]["credential_options"]["publicKey"]
    response = await verify(mfa, later, factor["id"], requested, authenticator.get(options))
    assert response.status == 422 and response.headers["x-sb-error-code"] == "mfa_challenge_expired"
    assert claims_of(later["access_token"])["aal"] == "aal1"


@pytest.mark.parametrize(
    "wrong", [{"origin": "https://evil.example"}, {"rp_id": "evil.example"}, {"tamper": True}, "another challenge"]
)
async def test_wrong_answers_are_refused(mfa, admin, wrong):
    _, factor, authenticator = await enrolled(mfa)
    later = await password_session(mfa, "mfa@example.com")
    requested = await challenge(mfa, later, factor["id"])
    options = requested["webauthn"]["credential_options"]["publicKey"]
    if wrong == "another challenge":  # the right answer to another challenge
        other = await challenge(mfa, later, factor["id"])
        answer = authenticator.get(other["webauthn"]["credential_options"]["publicKey"])
    else:
        answer = authenticator.get(options, **wrong)
    response = await verify(mfa, later, factor["id"], requested, answer)
    assert response.status == 422 and response.headers["x-sb-error-code"] == "mfa_verification_failed"
    session_aal = admin.execute("select aal from auth.sessions order by created_at desc limit 1").fetchone()[0]
    assert session_aal == "aal1"


async def test_a_sign_count_regression_is_refused_and_audited(mfa, admin):
    _, factor, authenticator = await enrolled(mfa)
    later = await password_session(mfa, "mfa@example.com")
    for count, status in ((4, 200), (4, 422), (2, 422)):
        requested = await challenge(mfa, later, factor["id"])
        options = requested["webauthn"]["credential_options"]["publicKey"]
        response = await verify(mfa, later, factor["id"], requested, authenticator.get(options, sign_count=count))
        assert response.status == status, await response.text()
        if status == 200:
            later = await password_session(mfa, "mfa@example.com")
    regressions = admin.execute(
        "select payload -> 'traits' from auth.audit_log_entries "
        "where payload ->> 'action' = 'passkey_sign_count_regression' order by created_at"
    ).fetchall()
    assert [row[0]["sign_count"] for row in regressions] == [4, 2]
    assert admin.execute("select sign_count from auth.webauthn_credentials").fetchone()[0] == 4


async def test_a_credential_of_another_user_is_refused(mfa):
    _, factor, _ = await enrolled(mfa, "alice@example.com")
    _, _, bob_key = await enrolled(mfa, "bob@example.com")
    alice = await password_session(mfa, "alice@example.com")
    requested = await challenge(mfa, alice, factor["id"])
    options = requested["webauthn"]["credential_options"]["publicKey"]
    response = await verify(mfa, alice, factor["id"], requested, bob_key.get(options))
    assert response.status == 422 and response.headers["x-sb-error-code"] == "mfa_verification_failed"


async def test_a_code_does_not_verify_a_webauthn_factor(mfa):
    _, factor, _ = await enrolled(mfa)
    later = await password_session(mfa, "mfa@example.com")
    requested = await challenge(mfa, later, factor["id"])
    response = await mfa.post(
        f"/factors/{factor['id']}/verify",
        headers=bearer(later),
        json={"challenge_id": requested["id"], "code": "123456"},
    )
    assert response.status == 400 and response.headers["x-sb-error-code"] == "validation_failed"


async def test_concurrent_answers_to_one_challenge_raise_one_session(mfa):
    _, factor, authenticator = await enrolled(mfa)
    later = await password_session(mfa, "mfa@example.com")
    requested = await challenge(mfa, later, factor["id"])
    answer = authenticator.get(requested["webauthn"]["credential_options"]["publicKey"])
    responses = await asyncio.gather(*(verify(mfa, later, factor["id"], requested, answer) for _ in range(10)))
    assert sorted(response.status for response in responses) == [200] + [422] * 9


async def test_unenrolling_removes_the_credential(mfa, admin):
    raised, factor, _ = await enrolled(mfa)
    response = await mfa.delete(f"/factors/{factor['id']}", headers=bearer(raised))
    assert response.status == 200
    assert admin.execute("select count(*) from auth.webauthn_credentials").fetchone()[0] == 0
