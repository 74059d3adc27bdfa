"""Sealing what must be kept and read back but never stored in the clear: a provider's access and
refresh tokens, between the callback of a PKCE provider sign-in and the exchange of its auth code.

AES-256-GCM under a key derived (HKDF-SHA256) from AUTHGRES_JWT_SECRET, which the database does not
hold: a copy of the database alone opens nothing. A sealed value is nonce (12 bytes) + ciphertext + tag;
the associated data names the purpose, so a value sealed for one use cannot be opened for another.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE = 12


class Sealer:
    def __init__(self, secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"authgres sealed values v1").derive(
            secret.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, value: str, purpose: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, value.encode(), purpose.encode())

    def open(self, sealed: bytes, purpose: str) -> str | None:
        """The value, or None when it was not sealed by this key for this purpose (the secret changed)."""
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], purpose.encode()).decode()
        except Exception:
            return None
