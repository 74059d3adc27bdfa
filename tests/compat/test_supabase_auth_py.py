"""The official Python client (PyPI supabase-auth), unmodified, against the live server."""

import json

import pytest
from supabase_auth.errors import AuthApiError, AuthInvalidJwtError, AuthWeakPasswordError

from authgres.cli import manage_signing_keys


async def test_sign_up_sign_in_and_read_the_user(gotrue):
    signed_up = await gotrue.sign_up(
        {"email": "Ada@Example.com", "password": "correct horse", "options": {"data": {"name": "Ada"}}}
    )
    assert signed_up.session is not None
    assert signed_up.user.email == "ada@example.com"
    assert signed_up.user.user_metadata["name"] == "Ada"
    assert [identity.provider for identity in signed_up.user.identities] == ["email"]

    await gotrue.sign_out({"scope": "local"})
    signed_in = await gotrue.sign_in_with_password({"email": "ada@example.com", "password": "correct horse"})
    assert signed_in.session.token_type == "bearer"
    assert signed_in.session.expires_in == 3600

    fetched = await gotrue.get_user()
    assert fetched.user.id == signed_up.user.id
    claims = (await gotrue.get_claims())["claims"]
    assert claims["sub"] == signed_up.user.id
    assert claims["aal"] == "aal1"
    assert claims["amr"][0]["method"] == "password"
    assert claims["session_id"]


async def test_update_user_metadata_and_password(gotrue):
    await gotrue.sign_up({"email": "grace@example.com", "password": "first password"})
    updated = await gotrue.update_user({"data": {"team": "navy", "rank": "admiral"}})
    assert updated.user.user_metadata["team"] == "navy"
    updated = await gotrue.update_user({"data": {"rank": None}})
    assert "rank" not in updated.user.user_metadata
    assert updated.user.user_metadata["team"] == "navy"

    await gotrue.update_user({"password": "second password"})
    await gotrue.sign_out({"scope": "local"})
    with pytest.raises(AuthApiError) as raised:
        await gotrue.sign_in_with_password({"email": "grace@example.com", "password": "first password"})
    assert raised.value.code == "invalid_credentials"
    session = await gotrue.sign_in_with_password({"email": "grace@example.com", "password": "second password"})
    assert session.session is not None


async def test_refresh_session_rotates_the_refresh_token(gotrue):
    first = (await gotrue.sign_up({"email": "alan@example.com", "password": "enigma machine"})).session
    refreshed = await gotrue.refresh_session()
    assert refreshed.session.refresh_token != first.refresh_token
    assert refreshed.user.id == first.user.id
    assert (await gotrue.get_user()).user.id == first.user.id


async def test_anonymous_sign_in(gotrue):
    response = await gotrue.sign_in_anonymously({"options": {"data": {"theme": "dark"}}})
    assert response.user.is_anonymous is True
    assert response.user.identities == []
    assert response.user.user_metadata == {"theme": "dark"}
    claims = (await gotrue.get_claims())["claims"]
    assert claims["is_anonymous"] is True
    assert claims["amr"][0]["method"] == "anonymous"


async def test_sign_out_scopes(server, gotrue):
    from supabase_auth import AsyncGoTrueClient

    url = str(server.make_url("/auth/v1"))
    devices = [AsyncGoTrueClient(url=url, auto_refresh_token=False) for _ in range(3)]
    try:
        await gotrue.sign_up({"email": "kay@example.com", "password": "smalltalk80"})
        for device in devices:
            await device.sign_in_with_password({"email": "kay@example.com", "password": "smalltalk80"})

        # others: the caller stays signed in, every other device is out.
        await devices[0].sign_out({"scope": "others"})
        assert (await devices[0].get_user()).user.email == "kay@example.com"
        for device in (gotrue, devices[1]):
            with pytest.raises(AuthApiError) as raised:
                await device.get_user()
            assert raised.value.code == "session_not_found"

        # local: only this device.
        await devices[2].sign_in_with_password({"email": "kay@example.com", "password": "smalltalk80"})
        await devices[2].sign_out({"scope": "local"})
        assert await devices[2].get_session() is None
        assert (await devices[0].get_user()).user.email == "kay@example.com"

        # global: everything.
        await devices[1].sign_in_with_password({"email": "kay@example.com", "password": "smalltalk80"})
        await devices[1].sign_out()
        with pytest.raises(AuthApiError) as raised:
            await devices[0].get_user()
        assert raised.value.code == "session_not_found"
        assert await devices[1].get_session() is None
    finally:
        for device in devices:
            await device.close()


async def test_wrong_password(gotrue):
    await gotrue.sign_up({"email": "eve@example.com", "password": "right password"})
    with pytest.raises(AuthApiError) as raised:
        await gotrue.sign_in_with_password({"email": "eve@example.com", "password": "wrong password"})
    assert (raised.value.status, raised.value.code) == (400, "invalid_credentials")
    with pytest.raises(AuthApiError) as raised:
        await gotrue.sign_in_with_password({"email": "nobody@example.com", "password": "wrong password"})
    assert (raised.value.status, raised.value.code) == (400, "invalid_credentials")


async def test_weak_password(gotrue):
    with pytest.raises(AuthWeakPasswordError) as raised:
        await gotrue.sign_up({"email": "weak@example.com", "password": "123"})
    assert raised.value.code == "weak_password"
    assert raised.value.status == 422
    assert raised.value.reasons == ["length"]


async def test_duplicate_email(gotrue):
    await gotrue.sign_up({"email": "twice@example.com", "password": "first signup"})
    with pytest.raises(AuthApiError) as raised:
        await gotrue.sign_up({"email": "TWICE@example.com", "password": "second signup"})
    assert (raised.value.status, raised.value.code) == (422, "user_already_exists")


async def test_replayed_refresh_token(gotrue, admin):
    first = (await gotrue.sign_up({"email": "replay@example.com", "password": "rotate me"})).session
    await gotrue.refresh_session()
    await gotrue.refresh_session()
    admin.execute("update auth.refresh_tokens set updated_at = now() - interval '1 minute' where generation = 0")
    with pytest.raises(AuthApiError) as raised:
        await gotrue.refresh_session(first.refresh_token)
    assert (raised.value.status, raised.value.code) == (400, "refresh_token_already_used")
    # The replay ended the session the thief and the owner shared.
    with pytest.raises(AuthApiError):
        await gotrue.get_user(first.access_token)


async def test_get_claims_verifies_es256_tokens_with_the_jwks(gotrue, dsn):
    manage_signing_keys(dsn("authgres_service"), "add")
    kid = json.loads(manage_signing_keys(dsn("authgres_service"), "rotate"))["kid"]
    signed_up = await gotrue.sign_up({"email": "ecdsa@example.com", "password": "a good password"})
    # For an ES256 token with a kid the client fetches /.well-known/jwks.json and checks the signature
    # itself (PyJWT), without asking the server.
    verified = await gotrue.get_claims()
    assert verified["headers"]["alg"] == "ES256" and verified["headers"]["kid"] == kid
    assert verified["claims"]["sub"] == signed_up.user.id
    token = signed_up.session.access_token
    head, payload, signature = token.split(".")
    forged_signature = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    with pytest.raises(AuthInvalidJwtError):
        await gotrue.get_claims(jwt=f"{head}.{payload}.{forged_signature}")
    assert (await gotrue.get_user(token)).user.id == signed_up.user.id
