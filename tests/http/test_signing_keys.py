"""Signing keys: ES256 tokens signed by the service, the JWKS, rotation and revocation."""

import base64
import json

import jwt
import psycopg
import pytest

from authgres.cli import api_keys, manage_signing_keys
from authgres.signing import TokenSigner
from tests.conftest import JWT_SECRET
from tests.http.helpers import API_2024, bearer, header_of, sign_up


async def jwks(client):
    response = await client.get("/.well-known/jwks.json")
    assert response.status == 200
    return (await response.json())["keys"]


def verify_with_jwks(token, keys):
    """What a third party does: PyJWT and the published public key, nothing of ours."""
    (key,) = [k for k in keys if k["kid"] == header_of(token)["kid"]]
    return jwt.decode(token, jwt.PyJWK(key), algorithms=["ES256"], audience="authenticated")


async def status_of(client, token):
    response = await client.get("/user", headers={**API_2024, "Authorization": f"Bearer {token}"})
    return response.status, (await response.json()).get("code")


def add_and_rotate(dsn, algorithm="ES256"):
    added = json.loads(manage_signing_keys(dsn("authgres_service"), "add", algorithm=algorithm))
    rotated = json.loads(manage_signing_keys(dsn("authgres_service"), "rotate"))
    assert rotated["kid"] == added["kid"] and rotated["status"] == "current"
    return added["kid"]


async def test_an_hs256_only_server_publishes_no_keys(client):
    response = await client.get("/auth/v1/.well-known/jwks.json")
    assert await response.json() == {"keys": []}
    assert response.headers["Cache-Control"] == "public, max-age=600"
    session = await sign_up(client)
    assert header_of(session["access_token"]) == {"alg": "HS256", "typ": "JWT"}


async def test_a_next_key_is_published_before_it_signs(client, dsn):
    added = json.loads(manage_signing_keys(dsn("authgres_service"), "add"))
    (published,) = await jwks(client)
    assert published["kid"] == added["kid"]
    assert {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"}.items() <= published.items()
    assert "d" not in published  # the private half stays in the database
    session = await sign_up(client)
    assert header_of(session["access_token"])["alg"] == "HS256"


async def test_after_rotation_tokens_are_es256_and_verify_with_the_jwks(client, dsn):
    before = await sign_up(client, "before@example.com")
    kid = add_and_rotate(dsn)

    session = await sign_up(client, "after@example.com")
    token = session["access_token"]
    assert header_of(token)["alg"] == "ES256" and header_of(token)["kid"] == kid
    claims = verify_with_jwks(token, await jwks(client))
    assert claims["sub"] == session["user"]["id"] and claims["session_id"]
    assert await status_of(client, token) == (200, None)

    # Signed before the rotation, by the key that is now previous: valid until it expires.
    assert await status_of(client, before["access_token"]) == (200, None)
    # The anon and service_role keys are signed with AUTHGRES_JWT_SECRET, which still verifies.
    service_role = api_keys(dsn("authgres_service"), JWT_SECRET)["service_role"]
    assert (await client.get("/admin/users", headers={"Authorization": f"Bearer {service_role}"})).status == 200

    refreshed = await client.post("/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]})
    assert refreshed.status == 200
    assert verify_with_jwks((await refreshed.json())["access_token"], await jwks(client))["sub"] == claims["sub"]


async def test_a_token_of_the_previous_key_verifies_until_expiry_or_revocation(client, dsn):
    first = add_and_rotate(dsn)
    old = await sign_up(client, "old@example.com")
    second = add_and_rotate(dsn)
    assert header_of(old["access_token"])["kid"] == first

    published = await jwks(client)
    assert [k["kid"] for k in published] == [second, first]  # current, then previous
    assert verify_with_jwks(old["access_token"], published)["email"] == "old@example.com"
    assert await status_of(client, old["access_token"]) == (200, None)

    manage_signing_keys(dsn("authgres_service"), "revoke", key=first)
    assert [k["kid"] for k in await jwks(client)] == [second]
    assert await status_of(client, old["access_token"]) == (403, "bad_jwt")


async def test_an_expired_token_of_the_previous_key_fails(client, dsn):
    first = add_and_rotate(dsn)
    session = await sign_up(client, "late@example.com")
    add_and_rotate(dsn)
    claims = verify_with_jwks(session["access_token"], await jwks(client))
    expired = await mint_under(dsn, first, {**claims, "iat": claims["iat"] - 7200, "exp": claims["iat"] - 3600})
    assert header_of(expired)["kid"] == first
    response = await client.get("/user", headers={**API_2024, **bearer({"access_token": expired})})
    body = await response.json()
    assert (response.status, body["code"]) == (403, "bad_jwt")
    assert "token is expired" in body["message"]


def private_key(dsn, kid):
    with psycopg.connect(dsn()) as conn:
        return conn.execute("select secret from auth.signing_keys where kid = %s", (kid,)).fetchone()[0]


async def mint_under(dsn, kid, claims):
    """A token for `claims` minted exactly as the server mints one, but under key `kid`."""
    with psycopg.connect(dsn()) as conn:
        conn.execute("set role authgres_owner")
        conn.execute("update auth.signing_keys set status = 'next' where status = 'current'")
        conn.execute("update auth.signing_keys set status = 'current' where kid = %s", (kid,))
        (unsigned,) = conn.execute("select auth._sign_claims(%s::jsonb)", (json.dumps(claims),)).fetchone()
        conn.rollback()

    async def load():
        return [{"kid": kid, "algorithm": "ES256", "private_key": private_key(dsn, kid)}]

    signed = await TokenSigner(load).sign_tokens(json.dumps({"access_token": unsigned}))
    return json.loads(signed)["access_token"]


@pytest.mark.parametrize(
    "forgery",
    [
        "claims changed",
        "mac changed",
        "signature stripped",
        "signed with the private key but not minted by the database",
        "header alg changed to HS256",
    ],
)
async def test_forged_es256_tokens_fail(client, dsn, forgery):
    kid = add_and_rotate(dsn)
    victim = await sign_up(client, "victim@example.com")
    attacker = await sign_up(client, "attacker@example.com")
    header_segment, payload_segment, signature = attacker["access_token"].split(".")
    header = header_of(attacker["access_token"])
    claims = jwt.decode(attacker["access_token"], options={"verify_signature": False})

    def encode(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    if forgery == "claims changed":
        token = f"{header_segment}.{encode({**claims, 'sub': victim['user']['id']})}.{signature}"
    elif forgery == "mac changed":
        token = f"{encode({**header, 'mac': header['mac'][::-1]})}.{payload_segment}.{signature}"
    elif forgery == "signature stripped":
        token = f"{header_segment}.{payload_segment}."
    elif forgery == "signed with the private key but not minted by the database":
        token = jwt.encode({**claims, "sub": victim["user"]["id"]}, private_key(dsn, kid), "ES256", {"kid": kid})
    else:
        token = f"{encode({**header, 'alg': 'HS256'})}.{payload_segment}.{signature}"
    assert await status_of(client, token) == (403, "bad_jwt")
    assert await status_of(client, attacker["access_token"]) == (200, None)


async def test_auth_authenticate_accepts_an_es256_token_for_rls(client, dsn, app_conn):
    add_and_rotate(dsn)
    alice = await sign_up(client, "alice@example.com")
    bob = await sign_up(client, "bob@example.com")
    for person in (alice, bob):
        assert header_of(person["access_token"])["alg"] == "ES256"
        with app_conn.transaction():
            app_conn.execute("select auth.authenticate(%s)", (person["access_token"],))
            app_conn.execute("insert into public.notes (body) values (%s)", (person["user"]["email"],))
    with app_conn.transaction():
        claims = app_conn.execute("select auth.authenticate(%s)", (alice["access_token"],)).fetchone()[0]
        assert claims["sub"] == alice["user"]["id"]
        assert app_conn.execute("select body from public.notes").fetchall() == [("alice@example.com",)]


async def test_key_management_refuses_what_would_break_signing(dsn, service):
    url = dsn("authgres_service")
    with pytest.raises(psycopg.Error, match="no next signing key"):
        manage_signing_keys(url, "rotate")
    manage_signing_keys(url, "add")
    with pytest.raises(psycopg.Error, match="already exists"):
        manage_signing_keys(url, "add", algorithm="HS256")
    kid = json.loads(manage_signing_keys(url, "rotate"))["kid"]
    with pytest.raises(psycopg.Error, match="cannot be revoked"):
        manage_signing_keys(url, "revoke", key=kid)
    with pytest.raises(psycopg.Error, match="No next or previous"):
        manage_signing_keys(url, "revoke", key="no-such-kid")
    listed = json.loads(manage_signing_keys(url, "list"))
    assert [(k["algorithm"], k["status"]) for k in listed] == [("HS256", "previous"), ("ES256", "current")]
    assert all("secret" not in k and "private_key" not in k for k in listed)


async def test_rotating_to_a_new_hmac_key_keeps_older_tokens_valid(client, dsn):
    before = await sign_up(client, "hmac-before@example.com")
    kid = add_and_rotate(dsn, algorithm="HS256")
    after = await sign_up(client, "hmac-after@example.com")
    assert header_of(after["access_token"]) == {"alg": "HS256", "kid": kid, "typ": "JWT"}
    assert await jwks(client) == []  # secret keys are never published
    assert await status_of(client, after["access_token"]) == (200, None)
    assert await status_of(client, before["access_token"]) == (200, None)
    # A kid names exactly one key: the new token's signature does not verify under another kid.
    _, payload, signature = after["access_token"].split(".")
    relabelled = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    assert await status_of(client, f"{relabelled}.{payload}.{signature}") == (403, "bad_jwt")
