"""The service's ES256 signer: which strings it signs, and when it fetches keys."""

import base64
import json

import jwt
import pytest

from authgres.signing import TokenSigner, generate_es256_key, has_unsigned_tokens


def b64(value):
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


PEM, PUBLIC_JWK = generate_es256_key()
KID = PUBLIC_JWK["kid"]
UNSIGNED = f"{b64({'alg': 'ES256', 'kid': KID, 'typ': 'JWT'})}.{b64({'sub': 'someone', 'exp': 4102444800})}."


class Loader:
    def __init__(self, rows):
        self.rows, self.calls = rows, 0

    async def __call__(self):
        self.calls += 1
        return self.rows


async def test_unsigned_tokens_are_signed_and_nothing_else_changes():
    loader = Loader([{"kid": KID, "algorithm": "ES256", "private_key": PEM}])
    signer = TokenSigner(loader)
    text = json.dumps({"access_token": UNSIGNED, "user": {"bio": "Ends with a dot."}, "refresh_token": "abc"})
    assert has_unsigned_tokens(text)
    signed = json.loads(await signer.sign_tokens(text))
    claims = jwt.decode(signed["access_token"], jwt.PyJWK(PUBLIC_JWK), algorithms=["ES256"])
    assert claims["sub"] == "someone"
    assert signed["user"] == {"bio": "Ends with a dot."} and signed["refresh_token"] == "abc"
    assert not has_unsigned_tokens(json.dumps(signed))
    await signer.sign_tokens(text)
    assert loader.calls == 1  # keys are fetched again only for a kid not seen before


async def test_a_kid_without_a_private_key_is_an_error_not_an_unsigned_token():
    signer = TokenSigner(Loader([]))
    with pytest.raises(RuntimeError, match=KID):
        await signer.sign_tokens(json.dumps({"access_token": UNSIGNED}))


def test_the_generated_public_jwk_has_no_private_member():
    assert set(PUBLIC_JWK) == {"kty", "crv", "x", "y", "kid", "alg", "use", "key_ops"}
