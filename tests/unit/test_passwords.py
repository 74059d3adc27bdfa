"""Password hashing and policy, with real argon2 and bcrypt; which argon2 build runs."""

import importlib.metadata
import logging
import sys

import argon2
import bcrypt
import pytest

from authgres.argon2_build import _elf_section, build_info, code_path
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


# Hashes made by another implementation (OpenSSL 3's argon2id, through cryptography), with the service's
# parameters and with others (several lanes).
OPENSSL_HASHES = [
    (
        "$argon2id$v=19$m=19456,t=2,p=1$YXV0aGdyZXMta25vd24tc2FsdA$8P5hxhh/Am3lyi4YtXAeseJgoDGLQDrWiknDe3BFuAg",
        "correct horse battery staple",
    ),
    (
        "$argon2id$v=19$m=4096,t=3,p=4$aW50ZXJvcC1zYWx0LTEyMw$z8BMs5klgJmcf1RUKFIwEmtTfVPQI4FHgVO1a3HSQpo",
        "hunter2 hunter2",
    ),
]


@pytest.mark.parametrize(("stored", "password"), OPENSSL_HASHES)
async def test_hashes_made_elsewhere_verify_with_the_installed_build(passwords, stored, password):
    assert argon2.PasswordHasher().verify(stored, password)
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        argon2.PasswordHasher().verify(stored, password + "!")
    result = await passwords.verify(stored, password)
    assert result.ok  # (and rehashed: their parameters or salt lengths are not the service's)
    assert (await passwords.verify(stored, password[:-1])).ok is False


def test_the_installed_build_and_openssl_agree_both_ways():
    kdf = pytest.importorskip("cryptography.hazmat.primitives.kdf.argon2")
    ours = argon2.PasswordHasher(time_cost=2, memory_cost=8192, parallelism=2).hash("interop password")
    kdf.Argon2id.verify_phc_encoded(b"interop password", ours)
    salt = b"sixteen byte salt"
    theirs = kdf.Argon2id(salt=salt, length=32, iterations=2, lanes=2, memory_cost=8192).derive(b"interop password")
    raw = argon2.low_level.hash_secret_raw(
        b"interop password", salt, time_cost=2, memory_cost=8192, parallelism=2, hash_len=32, type=argon2.Type.ID
    )
    assert raw == theirs


def test_build_info_describes_the_imported_bindings():
    info = build_info()
    assert info.version == importlib.metadata.version("argon2-cffi-bindings")
    assert info.origin in {"wheel", "source"}
    assert info.code in {"AVX-512", "AVX2", "SSSE3", "SSE2", "portable C", "unknown"}
    assert info.version in info.describe() and info.code in info.describe()
    if info.origin == "wheel":
        assert info.switches is None and "wheel" in info.describe()
    elif info.switches:  # a build made by `make install` records what the compiler targeted
        assert info.march and f"-march={info.march}" in info.describe()
        assert info.code == code_path(info.switches)


@pytest.mark.parametrize(
    ("switches", "code"),
    [
        ("GNU C17 12.2.0 -march=znver3 -mmmx -mssse3 -mavx -mavx2 -mno-avx512f -mtune=znver3 -msse2 -O3", "AVX2"),
        ("GNU C17 12.2.0 -march=sapphirerapids -mavx2 -mavx512f -mtune=sapphirerapids -O3", "AVX-512"),
        ("GNU C17 12.2.0 -march=x86-64-v3 -O3", "AVX2"),
        ("GNU C17 12.2.0 -mavx2 -march=x86-64-v2 -O3", "AVX2"),
        ("GNU C17 12.2.0 -march=x86-64-v4 -mno-avx512f -O3", "AVX2"),
        ("GNU C17 12.2.0 -march=x86-64-v2", "SSSE3"),
        ("GNU C17 12.2.0 -msse2 -O3 -fPIC", "SSE2"),
        ("clang -march=native -O3", "unknown"),
    ],
)
def test_code_path_follows_libargon2s_choice(switches, code):
    assert code_path(switches) == code


def test_elf_sections_are_read_from_elf_files_only(tmp_path):
    text = tmp_path / "not-elf.so"
    text.write_text("GNU C17 -march=znver3")
    assert _elf_section(str(text), b".GCC.command.line") is None
    assert _elf_section(str(tmp_path / "missing.so"), b".GCC.command.line") is None
    assert _elf_section(sys.executable, b".no-such-section") is None
    assert _elf_section(sys.executable, b".shstrtab")  # the section names themselves


def test_the_build_is_logged_from_a_hashing_thread(caplog):
    caplog.set_level(logging.INFO, logger="authgres")
    passwords = Passwords(
        Settings.from_env({**BASE, "AUTHGRES_ARGON2_MEMORY_KIB": "64", "AUTHGRES_ARGON2_TIME_COST": "1"})
    )
    passwords.log_build()
    passwords.executor.shutdown(wait=True)
    [record] = [r for r in caplog.records if "argon2id" in r.getMessage()]
    assert record.threadName.startswith("argon2")
    assert build_info().describe() in record.getMessage() and "t=1 m=64 KiB p=1" in record.getMessage()
