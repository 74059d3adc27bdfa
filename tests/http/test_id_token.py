"""POST /token?grant_type=id_token against an OpenID issuer on the loopback whose tokens the tests shape:
a valid token signs in (and again, as the same user), and a wrong audience, a wrong issuer, an expired
token, a bad signature, a missing or wrong nonce are refused with nothing changed; keys are fetched
again when a token names a new one, and not for a key id already known to be unknown."""

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.http.helpers import API_2024, bearer, claims_of, sign_up
from tests.http.identity_providers import CLIENT_ID, nonce_pair, oidc_config


@pytest.fixture
async def client(make_client, issuer):
    return await make_client(
        external={"oidc": oidc_config(issuer.url, client_ids=(CLIENT_ID, "ios-client"), secret="")},
        manual_linking_enabled=True,
    )


async def grant(client, **body):
    return await client.post("/token?grant_type=id_token", headers=API_2024, json={"provider": "oidc", **body})


async def refused(response, status=400):
    body = await response.json()
    assert response.status == status, body
    return body["code"]


async def test_a_valid_token_signs_in_and_again_as_the_same_user(client, issuer, admin):
    nonce, hashed = nonce_pair()
    token = issuer.token("sub-1", email="idt@example.com", email_verified=True, name="Id Token", nonce=hashed)
    response = await grant(client, id_token=token, nonce=nonce)
    assert response.status == 200, await response.text()
    session = await response.json()
    claims = claims_of(session["access_token"])
    assert claims["amr"][0]["method"] == "id_token" and claims["email"] == "idt@example.com"
    (identity,) = session["user"]["identities"]
    assert (identity["provider"], identity["id"]) == ("oidc", "sub-1")
    assert "nonce" not in identity["identity_data"] and "aud" not in identity["identity_data"]
    # A token for the second client id (a mobile app), without a nonce: the same user.
    again = await grant(client, id_token=issuer.token("sub-1", aud="ios-client", email="idt@example.com"))
    assert (await again.json())["user"]["id"] == session["user"]["id"]
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("shape", "code"),
    [
        ({"aud": "someone-else"}, "unexpected_audience"),
        ({"iss": "https://other.example"}, "bad_jwt"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "bad_jwt"),
        ({"sub": None}, "bad_jwt"),
    ],
    ids=["wrong audience", "wrong issuer", "expired", "no subject"],
)
async def test_a_token_that_fails_a_check_is_refused(client, issuer, admin, shape, code):
    response = await grant(client, id_token=issuer.token(**shape))
    assert await refused(response) == code
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_a_bad_signature_is_refused(client, issuer, admin):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await refused(await grant(client, id_token=issuer.token(key=stranger))) == "bad_jwt"
    # Someone else's key under a key id we do not know: also no.
    assert await refused(await grant(client, id_token=issuer.token(key=stranger, kid="made-up"))) == "bad_jwt"
    # Not a JWT, an HS256 token signed with anything, an unsigned one.
    assert await refused(await grant(client, id_token="not.a.jwt")) == "bad_jwt"
    import jwt

    forged = jwt.encode({"iss": issuer.url, "sub": "x", "aud": CLIENT_ID, "exp": time.time() + 60}, "secret" * 6)
    assert await refused(await grant(client, id_token=forged)) == "bad_jwt"
    unsigned = jwt.encode({"iss": issuer.url, "sub": "x", "aud": CLIENT_ID}, None, algorithm="none")
    assert await refused(await grant(client, id_token=unsigned)) == "bad_jwt"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_the_nonce_rules(client, issuer, admin):
    nonce, hashed = nonce_pair()
    # The token has one, the request none; the request one, the token none; a different one.
    assert await refused(await grant(client, id_token=issuer.token(nonce=hashed))) == "validation_failed"
    assert await refused(await grant(client, id_token=issuer.token(), nonce=nonce)) == "validation_failed"
    other, _ = nonce_pair()
    assert await refused(await grant(client, id_token=issuer.token(nonce=hashed), nonce=other)) == "validation_failed"
    # The raw nonce in the token (not its digest) is wrong too.
    assert await refused(await grant(client, id_token=issuer.token(nonce=nonce), nonce=nonce)) == "validation_failed"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


async def test_missing_fields_and_unknown_providers(client, issuer):
    assert await refused(await grant(client)) == "validation_failed"
    response = await client.post(
        "/token?grant_type=id_token", headers=API_2024, json={"provider": "google", "id_token": issuer.token()}
    )
    assert await refused(response) == "validation_failed"  # not enabled
    response = await client.post(
        "/token?grant_type=id_token", headers=API_2024, json={"provider": "github", "id_token": issuer.token()}
    )
    assert await refused(response) == "validation_failed"


async def test_a_rotated_key_is_fetched_once_and_an_unknown_kid_is_not_fetched_again(client, issuer):
    assert (await grant(client, id_token=issuer.token("rot"))).status == 200
    assert issuer.jwks_fetches == 1
    assert (await grant(client, id_token=issuer.token("rot"))).status == 200
    assert issuer.jwks_fetches == 1  # cached
    issuer.rotate()
    assert (await grant(client, id_token=issuer.token("rot"))).status == 200  # a new kid: fetched again
    assert issuer.jwks_fetches == 2
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(3):
        assert await refused(await grant(client, id_token=issuer.token(key=stranger, kid="nobody"))) == "bad_jwt"
    assert issuer.jwks_fetches == 3  # once for the unknown kid, not once per token


async def test_link_identity_adds_it_to_the_signed_in_user(client, issuer, admin):
    session = await sign_up(client, "linker@example.com")
    response = await client.post(
        "/token?grant_type=id_token",
        headers={**bearer(session), **API_2024},
        json={
            "provider": "oidc",
            "id_token": issuer.token("link-sub", email="x@elsewhere.example"),
            "link_identity": True,
        },
    )
    assert response.status == 200, await response.text()
    user = (await response.json())["user"]
    assert user["id"] == session["user"]["id"]
    assert sorted(i["provider"] for i in user["identities"]) == ["email", "oidc"]
    # Linking it to someone else now: refused.
    other = await sign_up(client, "other@example.com")
    response = await client.post(
        "/token?grant_type=id_token",
        headers={**bearer(other), **API_2024},
        json={"provider": "oidc", "id_token": issuer.token("link-sub"), "link_identity": True},
    )
    assert await refused(response, 422) == "identity_already_exists"
