"""ES256 signatures for the access tokens SQL mints (sql/migrations/0010 says why SQL cannot make them).

SQL returns an ES256 token up to its signature: `header.payload.` with the key's kid in the header.
The service signs every such token in a result before it leaves the database layer, with the private
key it fetched for that kid (fetched again when a rotation brings a kid it has not seen).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

# An unsigned token as a JSON string: a header (always `{"...` in base64url), a payload, a bare dot.
_UNSIGNED_TOKEN = re.compile(r'"(eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+)\."')
_ES256 = ECAlgorithm(ECAlgorithm.SHA256)

KeyLoader = Callable[[], Awaitable[list[dict[str, Any]]]]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _kid(signing_input: str) -> str:
    segment = signing_input.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))["kid"])


def _private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("An ES256 signing key must be an elliptic-curve private key")
    return key


def has_unsigned_tokens(text: str) -> bool:
    return '"access_token"' in text and _UNSIGNED_TOKEN.search(text) is not None


class TokenSigner:
    def __init__(self, load_keys: KeyLoader) -> None:
        self._load_keys = load_keys
        self._keys: dict[str, ec.EllipticCurvePrivateKey] = {}

    async def _key(self, kid: str) -> ec.EllipticCurvePrivateKey:
        if kid not in self._keys:
            self._keys = {
                row["kid"]: _private_key(row["private_key"])
                for row in await self._load_keys()
                if row["algorithm"] == "ES256"
            }
        try:
            return self._keys[kid]
        except KeyError:
            raise RuntimeError(f"No private key for signing key {kid}: was it revoked while in use?") from None

    async def sign_tokens(self, text: str) -> str:
        """`text` with each unsigned token in it signed."""
        signatures = {}
        for signing_input in set(_UNSIGNED_TOKEN.findall(text)):
            key = await self._key(_kid(signing_input))
            signatures[signing_input] = _b64url(_ES256.sign(signing_input.encode(), key))
        return _UNSIGNED_TOKEN.sub(lambda match: f'"{match[1]}.{signatures[match[1]]}"', text)


def generate_es256_key() -> tuple[str, dict[str, Any]]:
    """A new P-256 key pair: the PKCS#8 PEM private key, and the public JWK as the JWKS lists it."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    public_jwk.update(kid=str(uuid.uuid4()), alg="ES256", use="sig", key_ops=["verify"])
    return pem, public_jwk
