"""The command line: API keys, signing keys and the migration runner."""

import json
import subprocess

import pytest

from authgres.cli import _fixed_codes_hint, _fixed_sms_codes_hint, api_keys, main, migrate
from authgres.settings import Settings
from tests.conftest import JWT_SECRET


def test_api_keys_are_long_lived_role_tokens_that_verify(dsn, service, admin):
    keys = api_keys(dsn("authgres_service"), JWT_SECRET)
    assert set(keys) == {"anon", "service_role"}
    for role, key in keys.items():
        payload, valid = service.execute("select payload, valid from auth.verify(%s, %s)", (key, JWT_SECRET)).fetchone()
        assert valid is True
        assert payload["role"] == role
        assert payload["exp"] - payload["iat"] >= 5 * 365 * 24 * 3600
        claims = admin.execute("select auth.access_token_claims(%s)", (key,)).fetchone()[0]
        assert claims["role"] == role


def test_migrating_again_changes_nothing(dsn, admin, capfd):
    before = admin.execute("select version, applied_at from auth.schema_migrations order by version").fetchall()
    migrate(dsn())
    assert "applied" not in capfd.readouterr().out
    assert admin.execute("select version, applied_at from auth.schema_migrations order by version").fetchall() == before


def test_a_migration_applied_twice_by_hand_fails_and_changes_nothing(dsn, admin):
    from tests.conftest import ROOT

    file = sorted((ROOT / "sql" / "migrations").glob("*.sql"))[-1]
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(file), dsn()],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "schema_migrations_pkey" in result.stderr


def test_keys_add_then_rotate_from_the_command_line(dsn, service, admin, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", dsn("authgres_service"))
    monkeypatch.setenv("AUTHGRES_JWT_SECRET", JWT_SECRET)
    with pytest.raises(SystemExit, match="There is no next signing key: add one first"):
        main(["keys", "rotate"])
    main(["keys", "add", "--algorithm", "ES256"])
    added = json.loads(capsys.readouterr().out)
    main(["keys", "rotate"])
    assert json.loads(capsys.readouterr().out)["kid"] == added["kid"]
    statuses = admin.execute("select algorithm, status from auth.signing_keys order by created_at").fetchall()
    assert statuses == [("HS256", "previous"), ("ES256", "current")]


def test_dev_says_how_to_use_fixed_email_codes_and_which_are_set():
    base = {"DATABASE_URL": "postgresql:///x", "AUTHGRES_JWT_SECRET": JWT_SECRET}
    assert "AUTHGRES_MAILER_TEST_OTP=" in _fixed_codes_hint(Settings.from_env(base))
    configured = Settings.from_env(
        {
            **base,
            "AUTHGRES_MAILER_TEST_OTP": "dev@example.com:123456",
            "AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL": "2999-01-01T00:00:00Z",
        }
    )
    assert _fixed_codes_hint(configured) == (
        "Fixed email codes until 2999-01-01T00:00:00+00:00 (no email sent): dev@example.com -> 123456"
    )


def test_dev_says_where_texts_go_and_which_fixed_sms_codes_are_set():
    base = {"DATABASE_URL": "postgresql:///x", "AUTHGRES_JWT_SECRET": JWT_SECRET}
    assert _fixed_sms_codes_hint(Settings.from_env(base)) is None  # phone sign-in is off
    phone = {**base, "AUTHGRES_EXTERNAL_PHONE_ENABLED": "true"}
    assert _fixed_sms_codes_hint(Settings.from_env(phone)).startswith("Texts print here. For fixed codes: ")
    configured = Settings.from_env(
        {**phone, "AUTHGRES_SMS_TEST_OTP": "+15555550100:123456", "AUTHGRES_SMS_TEST_OTP_VALID_UNTIL": "2999-01-01"}
    )
    assert _fixed_sms_codes_hint(configured) == (
        "Fixed SMS codes until 2999-01-01T00:00:00+00:00 (no text sent): +15555550100 -> 123456"
    )
