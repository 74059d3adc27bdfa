"""Password hashing and policy, with real argon2 and bcrypt."""

import argon2
import bcrypt
import pytest

from authgres.passwords import Passwords
from authgres.settings import Settings

BASE = {"DATABASE_URL": "postgresql:///x", "AUTHGRES_JWT_SECRET": "s" * 32}


@pytest.fixture
def passwords():
    hasher = Passwords(Settings.from_env(BASE))
    yield hasher
    hasher.close()


async def test_hashes_with_owasp_argon2id_parameters_by_default(passwords):
    stored = await passwords.hash("hunter2 hunter2")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await passwords.verify(stored, "hunter2 hunter2")).ok
    assert (await passwords.verify(stored, "hunter2 hunter3")).ok is False


@pytest.mark.parametrize("stored", [None, "", "plain-text", "$1$md5$hash", "$argon2id$garbage"])
async def test_missing_or_unknown_hashes_never_verify(passwords, stored):
    assert (await passwords.verify(stored, "anything")).ok is False


async def test_bcrypt_from_gotrue_verifies_and_is_rehashed(passwords):
    imported = bcrypt.hashpw(b"gotrue password", bcrypt.gensalt(rounds=4)).decode()
    result = await passwords.verify(imported, "gotrue password")
    assert result.ok
    assert result.rehash and result.rehash.startswith("$argon2id$")
    assert (await passwords.verify(result.rehash, "gotrue password")).ok
    assert (await passwords.verify(imported, "wrong")).ok is False
    assert (await passwords.verify(imported, "x" * 100)).ok is False


async def test_outdated_argon2_parameters_are_upgraded(passwords):
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("pw pw pw")
    result = await passwords.verify(weak, "pw pw pw")
    assert result.ok and result.rehash and "m=19456,t=2" in result.rehash
    current = await passwords.hash("pw pw pw")
    assert (await passwords.verify(current, "pw pw pw")).rehash is None


def test_policy_reasons():
    policy = Passwords(
        Settings.from_env(
            {
                **BASE,
                "AUTHGRES_PASSWORD_MIN_LENGTH": "8",
                "AUTHGRES_PASSWORD_REQUIRED_CHARACTERS": "abc:0123456789",
                "AUTHGRES_ARGON2_MEMORY_KIB": "64",
                "AUTHGRES_ARGON2_TIME_COST": "1",
            }
        )
    )
    try:
        assert policy.weakness("abcdefgh1") is None
        short = policy.weakness("a1")
        assert short and short.reasons == ["length"]
        assert short.message == "Password should be at least 8 characters."
        plain = policy.weakness("xxxxxxxxxx")
        assert plain and plain.reasons == ["characters"]
        both = policy.weakness("x")
        assert both and both.reasons == ["length", "characters"]
    finally:
        policy.close()
