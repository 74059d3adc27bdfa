"""Passkeys over HTTP with a software authenticator (tests/authenticator.py: real ES256 `none`
registrations and assertions): register, sign in, list, rename, delete, and every way a ceremony must
fail, with GoTrue's error codes and the database left as it was."""

import asyncio

import pytest

from tests.authenticator import Authenticator, b64url
from tests.http.helpers import API_2024, bearer, claims_of, sign_up
from tests.http.test_admin import service_headers

PASSWORD = "a good password"


@pytest.fixture
async def pk(make_client):
    """A client of a server with passkeys on (RP: localhost, origin http://localhost:3000, the site URL)."""
    return await make_client(passkey_enabled=True)


async def register(client, session, authenticator, **create):
    options = await client.post("/passkeys/registration/options", headers=bearer(session))
    assert options.status == 200, await options.text()
    started = await options.json()
    credential = authenticator.create(started["options"], **create)
    return await client.post(
        "/passkeys/registration/verify",
        headers={**bearer(session), **API_2024},
        json={"challenge_id": started["challenge_id"], "credential": credential},
    )


async def start_sign_in(client):
    response = await client.post("/passkeys/authentication/options")
    assert response.status == 200, await response.text()
    return await response.json()


async def finish_sign_in(client, started, credential):
    return await client.post(
        "/passkeys/authentication/verify",
        headers=API_2024,
        json={"challenge_id": started["challenge_id"], "credential": credential},
    )


async def sign_in(client, authenticator, **get):
    started = await start_sign_in(client)
    return await finish_sign_in(client, started, authenticator.get(started["options"], **get))


async def user_with_passkey(client, email="passkey@example.com"):
    session = await sign_up(client, email)
    authenticator = Authenticator()
    response = await register(client, session, authenticator)
    assert response.status == 200, await response.text()
    return session, authenticator, await response.json()


def actions(admin, user_id=None):
    rows = admin.execute(
        "select payload ->> 'action', payload -> 'traits' from auth.audit_log_entries order by created_at"
    ).fetchall()
    return [(action, traits) for action, traits in rows]


async def test_register_sign_in_list_rename_and_delete(pk, admin):
    session = await sign_up(pk, "alice@example.com")
    user_id = session["user"]["id"]
    options = await (await pk.post("/passkeys/registration/options", headers=bearer(session))).json()
    public_key = options["options"]
    assert public_key["rp"] == {"id": "localhost", "name": "authgres"}
    assert public_key["user"]["id"] == b64url(user_id.encode())  # the user handle is the user's id
    assert public_key["user"]["name"] == "alice@example.com"
    assert public_key["authenticatorSelection"]["residentKey"] == "required"
    assert public_key["authenticatorSelection"]["userVerification"] == "required"
    assert public_key["attestation"] == "none"
    assert public_key["excludeCredentials"] == []
    assert isinstance(options["expires_at"], int)

    authenticator = Authenticator()
    credential = authenticator.create(public_key)
    created = await pk.post(
        "/passkeys/registration/verify",
        headers=bearer(session),
        json={"challenge_id": options["challenge_id"], "credential": credential},
    )
    assert created.status == 200, await created.text()
    passkey = await created.json()
    assert passkey["friendly_name"] == "Passkey" and set(passkey) == {"id", "friendly_name", "created_at"}
    stored = admin.execute(
        "select user_id, credential_id, sign_count, aaguid, transports, factor_id from auth.webauthn_credentials"
    ).fetchall()
    assert [(str(r[0]), bytes(r[1]), r[2], str(r[3]), r[4], r[5]) for r in stored] == [
        (
            user_id,
            authenticator.credentials[0].credential_id,
            0,
            "00000000-0000-0000-0000-000000000000",
            ["internal"],
            None,
        )
    ]
    # The next registration excludes it.
    again = await (await pk.post("/passkeys/registration/options", headers=bearer(session))).json()
    assert [each["id"] for each in again["options"]["excludeCredentials"]] == [credential["id"]]

    # Signing in: no session, a discoverable credential.
    started = await start_sign_in(pk)
    assert started["options"]["rpId"] == "localhost"
    assert started["options"].get("allowCredentials", []) == []
    assert started["options"]["userVerification"] == "required"
    signed_in = await finish_sign_in(pk, started, authenticator.get(started["options"]))
    assert signed_in.status == 200, await signed_in.text()
    tokens = await signed_in.json()
    assert tokens["user"]["id"] == user_id and tokens["refresh_token"]
    claims = claims_of(tokens["access_token"])
    assert [each["method"] for each in claims["amr"]] == ["passkey"] and claims["aal"] == "aal1"
    assert admin.execute("select sign_count from auth.webauthn_credentials").fetchone()[0] == 1
    # The session works.
    assert (await pk.get("/user", headers=bearer(tokens))).status == 200

    listed = await (await pk.get("/passkeys", headers=bearer(tokens))).json()
    assert [(each["id"], each["friendly_name"]) for each in listed] == [(passkey["id"], "Passkey")]
    assert listed[0]["last_used_at"]

    renamed = await pk.patch(f"/passkeys/{passkey['id']}", headers=bearer(tokens), json={"friendly_name": "Laptop"})
    assert renamed.status == 200 and (await renamed.json())["friendly_name"] == "Laptop"
    listed = await (await pk.get("/passkeys", headers=bearer(tokens))).json()
    assert [each["friendly_name"] for each in listed] == ["Laptop"]

    deleted = await pk.delete(f"/passkeys/{passkey['id']}", headers=bearer(tokens))
    assert deleted.status == 204
    assert await (await pk.get("/passkeys", headers=bearer(tokens))).json() == []
    # Gone: it signs in no more.
    refused = await sign_in(pk, authenticator)
    assert refused.status == 400 and refused.headers["x-sb-error-code"] == "webauthn_verification_failed"

    audited = [(action, traits) for action, traits in actions(admin) if "passkey" in action or action == "login"]
    assert [action for action, _ in audited] == [
        "login",  # the sign-up's
        "passkey_created",
        "login",
        "passkey_updated",
        "passkey_deleted",
    ]
    assert audited[2][1] == {"provider": "passkey", "passkey_id": passkey["id"]}
    assert all(traits["passkey_id"] == passkey["id"] for _, traits in audited[1:] if traits)


async def test_settings_tell_and_a_disabled_server_refuses(client, pk):
    assert (await (await client.get("/settings")).json())["passkeys_enabled"] is False
    assert (await (await pk.get("/settings")).json())["passkeys_enabled"] is True
    session = await sign_up(client)
    for method, path in (
        ("post", "/passkeys/authentication/options"),
        ("post", "/passkeys/registration/options"),
        ("get", "/passkeys"),
    ):
        response = await getattr(client, method)(path, headers=bearer(session))
        assert response.status == 404 and response.headers["x-sb-error-code"] == "passkey_disabled"


async def test_wrong_origin_and_wrong_rp_id_are_refused(pk, admin):
    session = await sign_up(pk)
    for create in ({"origin": "https://evil.example"}, {"rp_id": "evil.example"}):
        response = await register(pk, session, Authenticator(), **create)
        assert response.status == 400 and response.headers["x-sb-error-code"] == "webauthn_verification_failed"
    assert admin.execute("select count(*) from auth.webauthn_credentials").fetchone()[0] == 0

    _, authenticator, _ = await user_with_passkey(pk, "origin@example.com")
    for get in ({"origin": "https://evil.example"}, {"origin": "http://localhost:3001"}, {"rp_id": "evil.example"}):
        response = await sign_in(pk, authenticator, **get)
        assert response.status == 400 and response.headers["x-sb-error-code"] == "webauthn_verification_failed"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 2  # the two sign-ups'


async def test_configured_origins_and_rp_id_are_the_only_ones(make_client):
    client = await make_client(
        passkey_enabled=True,
        webauthn_rp_id="example.com",
        webauthn_rp_origins=("https://app.example.com", "https://www.example.com"),
    )
    session = await sign_up(client)
    ok = await register(client, session, Authenticator(origin="https://www.example.com"))
    assert ok.status == 200, await ok.text()
    site = await register(client, session, Authenticator(origin="http://localhost:3000"))
    assert site.status == 400 and site.headers["x-sb-error-code"] == "webauthn_verification_failed"


async def test_a_replayed_challenge_is_refused(pk, admin):
    session, authenticator, _ = await user_with_passkey(pk)
    started = await start_sign_in(pk)
    first = await finish_sign_in(pk, started, authenticator.get(started["options"]))
    assert first.status == 200
    # The same answer again, and a fresh signature over the same challenge: both find it spent.
    for credential in (authenticator.get(started["options"], sign_count=1), authenticator.get(started["options"])):
        replayed = await finish_sign_in(pk, started, credential)
        assert replayed.status == 400 and replayed.headers["x-sb-error-code"] == "webauthn_challenge_not_found"

    options = await (await pk.post("/passkeys/registration/options", headers=bearer(session))).json()
    body = {"challenge_id": options["challenge_id"], "credential": Authenticator().create(options["options"])}
    assert (await pk.post("/passkeys/registration/verify", headers=bearer(session), json=body)).status == 200
    body["credential"] = Authenticator().create(options["options"])
    again = await pk.post("/passkeys/registration/verify", headers=bearer(session), json=body)
    assert again.status == 400 and again.headers["x-sb-error-code"] == "webauthn_challenge_not_found"
    assert admin.execute("select count(*) from auth.webauthn_credentials").fetchone()[0] == 2


async def test_an_expired_challenge_is_refused(pk, admin):
    session, authenticator, _ = await user_with_passkey(pk)
    started = await start_sign_in(pk)
    options = await (await pk.post("/passkeys/registration/options", headers=bearer(session))).json()
    admin.execute("update auth.webauthn_challenges set expires_at = now() - interval '1 second'")
    expired = await finish_sign_in(pk, started, authenticator.get(started["options"]))
    assert expired.status == 400 and expired.headers["x-sb-error-code"] == "webauthn_challenge_expired"
    body = {"challenge_id": options["challenge_id"], "credential": Authenticator().create(options["options"])}
    late = await pk.post("/passkeys/registration/verify", headers=bearer(session), json=body)
    assert late.status == 400 and late.headers["x-sb-error-code"] == "webauthn_challenge_expired"
    assert admin.execute("select count(*) from auth.webauthn_credentials").fetchone()[0] == 1
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1


async def test_a_tampered_signature_is_refused_and_changes_nothing(pk, admin):
    _, authenticator, _ = await user_with_passkey(pk)
    started = await start_sign_in(pk)
    tampered = await finish_sign_in(pk, started, authenticator.get(started["options"], tamper=True))
    assert tampered.status == 400 and tampered.headers["x-sb-error-code"] == "webauthn_verification_failed"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1
    assert admin.execute("select sign_count from auth.webauthn_credentials").fetchone()[0] == 0
    # A signature over another challenge does not answer this one either.
    other = await start_sign_in(pk)
    crossed = await finish_sign_in(pk, started, authenticator.get(other["options"]))
    assert crossed.status == 400 and crossed.headers["x-sb-error-code"] == "webauthn_verification_failed"
    # The challenge was left as it was: the genuine answer still signs in.
    genuine = await finish_sign_in(pk, started, authenticator.get(started["options"]))
    assert genuine.status == 200


async def test_a_sign_count_regression_is_refused_and_audited(pk, admin):
    _, authenticator, passkey = await user_with_passkey(pk)
    assert (await sign_in(pk, authenticator, sign_count=5)).status == 200
    for count in (5, 3):  # a clone replays or lags the counter
        started = await start_sign_in(pk)
        cloned = await finish_sign_in(pk, started, authenticator.get(started["options"], sign_count=count))
        assert cloned.status == 400 and cloned.headers["x-sb-error-code"] == "webauthn_verification_failed"
        # The challenge was spent with the refusal.
        again = await finish_sign_in(pk, started, authenticator.get(started["options"], sign_count=9))
        assert again.status == 400 and again.headers["x-sb-error-code"] == "webauthn_challenge_not_found"
    assert admin.execute("select sign_count from auth.webauthn_credentials").fetchone()[0] == 5
    regressions = [traits for action, traits in actions(admin) if action == "passkey_sign_count_regression"]
    assert regressions == [
        {"passkey_id": passkey["id"], "stored_sign_count": 5, "sign_count": 5},
        {"passkey_id": passkey["id"], "stored_sign_count": 5, "sign_count": 3},
    ]
    assert (await sign_in(pk, authenticator, sign_count=6)).status == 200


async def test_an_authenticator_without_a_counter_signs_in_every_time(pk):
    session = await sign_up(pk)
    authenticator = Authenticator(counter_step=0)
    assert (await register(pk, session, authenticator)).status == 200
    for _ in range(3):
        assert (await sign_in(pk, authenticator)).status == 200


async def test_user_verification_is_required(pk, admin):
    session = await sign_up(pk)
    unverified = await register(pk, session, Authenticator(), user_verified=False)
    assert unverified.status == 400 and unverified.headers["x-sb-error-code"] == "webauthn_verification_failed"
    _, authenticator, _ = await user_with_passkey(pk, "uv@example.com")
    response = await sign_in(pk, authenticator, user_verified=False)
    assert response.status == 400 and response.headers["x-sb-error-code"] == "webauthn_verification_failed"
    assert admin.execute("select count(*) from auth.webauthn_credentials").fetchone()[0] == 1


async def test_a_credential_of_another_user_is_refused(pk, admin):
    alice, alice_key, alice_passkey = await user_with_passkey(pk, "alice@example.com")
    bob, _, _ = await user_with_passkey(pk, "bob@example.com")
    # Alice's credential presented with Bob's user handle.
    response = await sign_in(pk, alice_key, user_handle=bob["user"]["id"].encode())
    assert response.status == 400 and response.headers["x-sb-error-code"] == "webauthn_verification_failed"
    # Bob cannot see, rename or delete Alice's passkey.
    assert [each["id"] for each in await (await pk.get("/passkeys", headers=bearer(bob))).json()] != [
        alice_passkey["id"]
    ]
    for method, extra in (("patch", {"json": {"friendly_name": "mine"}}), ("delete", {})):
        refused = await getattr(pk, method)(f"/passkeys/{alice_passkey['id']}", headers=bearer(bob), **extra)
        assert refused.status == 404 and refused.headers["x-sb-error-code"] == "validation_failed"
    # Nor register her credential as his.
    options = await (await pk.post("/passkeys/registration/options", headers=bearer(bob))).json()
    stolen = alice_key.create(options["options"], credential_id=alice_key.credentials[0].credential_id)
    body = {"challenge_id": options["challenge_id"], "credential": stolen}
    taken = await pk.post("/passkeys/registration/verify", headers=bearer(bob), json=body)
    assert taken.status == 422 and taken.headers["x-sb-error-code"] == "webauthn_credential_exists"
    # Nor finish a registration Alice started.
    options = await (await pk.post("/passkeys/registration/options", headers=bearer(alice))).json()
    body = {"challenge_id": options["challenge_id"], "credential": Authenticator().create(options["options"])}
    crossed = await pk.post("/passkeys/registration/verify", headers=bearer(bob), json=body)
    assert crossed.status == 400 and crossed.headers["x-sb-error-code"] == "webauthn_challenge_not_found"
    owners = admin.execute(
        "select u.email, c.friendly_name from auth.webauthn_credentials c join auth.users u on u.id = c.user_id "
        "order by u.email"
    ).fetchall()
    assert owners == [("alice@example.com", "Passkey"), ("bob@example.com", "Passkey")]


async def test_twenty_concurrent_verifications_of_one_challenge_give_one_session(pk, admin):
    _, authenticator, _ = await user_with_passkey(pk)
    started = await start_sign_in(pk)
    credential = authenticator.get(started["options"])
    before = admin.execute("select count(*) from auth.sessions").fetchone()[0]
    responses = await asyncio.gather(*(finish_sign_in(pk, started, credential) for _ in range(20)))
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] + [400] * 19
    codes = {response.headers.get("x-sb-error-code") for response in responses if response.status == 400}
    assert codes == {"webauthn_challenge_not_found"}
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == before + 1
    passkey_sessions = admin.execute(
        "select count(*) from auth.mfa_amr_claims where authentication_method = 'passkey'"
    ).fetchone()[0]
    assert passkey_sessions == 1


async def test_anonymous_users_and_api_keys_cannot_register(pk):
    anonymous = await (await pk.post("/signup", json={})).json()
    response = await pk.post("/passkeys/registration/options", headers=bearer(anonymous))
    assert response.status == 403 and response.headers["x-sb-error-code"] == "no_authorization"
    assert (await pk.post("/passkeys/registration/options")).status == 401


async def test_the_number_of_passkeys_is_limited(make_client, admin):
    client = await make_client(passkey_enabled=True, passkey_max_per_user=1)
    session = await sign_up(client)
    assert (await register(client, session, Authenticator())).status == 200
    response = await client.post("/passkeys/registration/options", headers=bearer(session))
    assert response.status == 422 and response.headers["x-sb-error-code"] == "too_many_passkeys"
    assert admin.execute("select count(*) from auth.webauthn_challenges").fetchone()[0] == 0


async def test_the_last_way_to_sign_in_cannot_be_deleted(pk, admin):
    session, _, passkey = await user_with_passkey(pk)
    user_id = session["user"]["id"]
    # An account whose only way in is this passkey: no password, no identity.
    admin.execute("update auth.users set encrypted_password = null where id = %s", (user_id,))
    admin.execute("delete from auth.identities where user_id = %s", (user_id,))
    refused = await pk.delete(f"/passkeys/{passkey['id']}", headers=bearer(session))
    assert refused.status == 422 and refused.headers["x-sb-error-code"] == "single_identity_not_deletable"
    assert admin.execute("select count(*) from auth.webauthn_credentials").fetchone()[0] == 1
    # With a second passkey, either may go, but not both.
    second = await register(pk, session, Authenticator())
    assert second.status == 200
    assert (await pk.delete(f"/passkeys/{passkey['id']}", headers=bearer(session))).status == 204
    last = await pk.delete(f"/passkeys/{(await second.json())['id']}", headers=bearer(session))
    assert last.status == 422 and last.headers["x-sb-error-code"] == "single_identity_not_deletable"


async def test_managing_passkeys_needs_aal2_once_mfa_is_on(pk, admin):
    session, _, passkey = await user_with_passkey(pk)
    admin.execute(
        "insert into auth.mfa_factors (user_id, factor_type, status, secret) values (%s, 'totp', 'verified', '\\x00')",
        (session["user"]["id"],),
    )
    for method, path in (
        ("post", "/passkeys/registration/options"),
        ("delete", f"/passkeys/{passkey['id']}"),
    ):
        response = await getattr(pk, method)(path, headers=bearer(session))
        assert response.status == 403 and response.headers["x-sb-error-code"] == "insufficient_aal"


async def test_a_banned_or_unconfirmed_user_does_not_sign_in(pk, admin):
    _, authenticator, _ = await user_with_passkey(pk)
    admin.execute("update auth.users set banned_until = now() + interval '1 hour'")
    banned = await sign_in(pk, authenticator)
    assert banned.status == 400 and banned.headers["x-sb-error-code"] == "user_banned"
    admin.execute("update auth.users set banned_until = null, email_confirmed_at = null")
    unconfirmed = await sign_in(pk, authenticator)
    assert unconfirmed.status == 400 and unconfirmed.headers["x-sb-error-code"] == "email_not_confirmed"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1


async def test_admin_lists_and_deletes_a_users_passkeys(pk, admin, service):
    session, _, passkey = await user_with_passkey(pk)
    user_id = session["user"]["id"]
    key = service_headers(service)
    listed = await pk.get(f"/admin/users/{user_id}/passkeys", headers=key)
    assert listed.status == 200 and [each["id"] for each in await listed.json()] == [passkey["id"]]
    assert (await pk.get(f"/admin/users/{user_id}/passkeys", headers=bearer(session))).status == 403
    deleted = await pk.delete(f"/admin/users/{user_id}/passkeys/{passkey['id']}", headers=key)
    assert deleted.status == 204
    again = await pk.delete(f"/admin/users/{user_id}/passkeys/{passkey['id']}", headers=key)
    assert again.status == 404
    assert await (await pk.get(f"/admin/users/{user_id}/passkeys", headers=key)).json() == []
    entry = admin.execute(
        "select payload from auth.audit_log_entries where payload ->> 'action' = 'passkey_deleted'"
    ).fetchone()[0]
    assert entry["log_type"] == "admin" and entry["traits"]["passkey_id"] == passkey["id"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"challenge_id": "not-a-uuid", "credential": {}},
        {"challenge_id": "00000000-0000-0000-0000-000000000000"},
        {"challenge_id": "00000000-0000-0000-0000-000000000000", "credential": {}},
        {"challenge_id": "00000000-0000-0000-0000-000000000000", "credential": {"id": 1, "rawId": [], "response": 2}},
        {
            "challenge_id": "00000000-0000-0000-0000-000000000000",
            "credential": {"id": "a", "rawId": "!!", "response": {}},
        },
        {
            "challenge_id": "00000000-0000-0000-0000-000000000000",
            "credential": {"id": "AA", "rawId": "AA", "type": "public-key", "response": {"clientDataJSON": "e30"}},
        },
    ],
)
async def test_malformed_answers_are_refused_with_4xx(pk, body):
    session = await sign_up(pk)
    for path, headers in (
        ("/passkeys/authentication/verify", {}),
        ("/passkeys/registration/verify", bearer(session)),
    ):
        response = await pk.post(path, headers=headers, json=body)
        assert 400 <= response.status < 500, await response.text()
        assert response.headers["x-sb-error-code"] in ("validation_failed", "webauthn_verification_failed")


async def test_a_deleted_account_s_passkey_signs_in_no_more(pk, admin, service):
    for soft in (True, False):
        session, authenticator, _ = await user_with_passkey(pk, f"gone-{soft}@example.com")
        deleted = await pk.delete(
            f"/admin/users/{session['user']['id']}",
            headers=service_headers(service),
            json={"should_soft_delete": soft},
        )
        assert deleted.status == 200, await deleted.text()
        response = await sign_in(pk, authenticator)
        assert response.status == 400 and response.headers["x-sb-error-code"] == "webauthn_verification_failed"
    assert admin.execute("select count(*) from auth.webauthn_credentials").fetchone()[0] == 0


async def test_sign_in_challenges_are_limited_per_client_ip(make_client, admin):
    client = await make_client(passkey_enabled=True, rate_limit_passkey=2)
    for _ in range(2):
        await start_sign_in(client)
    refused = await client.post("/passkeys/authentication/options", headers=API_2024)
    assert refused.status == 429
    assert (await refused.json())["code"] == "over_request_rate_limit"
    assert admin.execute("select count(*) from auth.webauthn_challenges").fetchone()[0] == 2
