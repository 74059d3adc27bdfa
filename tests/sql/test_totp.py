"""TOTP computed in SQL: RFC 6238 appendix B, and agreement with pyotp."""

import base64
import secrets
import time

import pyotp
import pytest

SHA1_KEY = b"12345678901234567890"
SHA256_KEY = b"12345678901234567890123456789012"
SHA512_KEY = b"1234567890123456789012345678901234567890123456789012345678901234"

# (time, SHA1, SHA256, SHA512), RFC 6238 appendix B, 8 digits, 30 s steps.
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc_6238_appendix_b(service, at, sha1, sha256, sha512):
    for key, algorithm, expected in (
        (SHA1_KEY, "sha1", sha1),
        (SHA256_KEY, "sha256", sha256),
        (SHA512_KEY, "sha512", sha512),
    ):
        code = service.execute("select auth.totp(%s, to_timestamp(%s), 8, 30, %s)", (key, at, algorithm)).fetchone()[0]
        assert code == expected, (at, algorithm)


def test_codes_agree_with_pyotp(service):
    for _ in range(20):
        key = secrets.token_bytes(20)
        totp = pyotp.TOTP(base64.b32encode(key).decode())
        at = secrets.randbelow(4_000_000_000)
        assert service.execute("select auth.totp(%s, to_timestamp(%s))", (key, at)).fetchone()[0] == totp.at(at)
    key = secrets.token_bytes(20)
    now = service.execute("select auth.totp(%s), extract(epoch from now())", (key,)).fetchone()
    assert now[0] == pyotp.TOTP(base64.b32encode(key).decode()).at(int(now[1]))
    assert abs(float(now[1]) - time.time()) < 60
