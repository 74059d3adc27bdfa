"""The command line: API keys and the migration runner."""

import subprocess

from authgres.cli import api_keys, migrate
from tests.conftest import JWT_SECRET


def test_api_keys_are_long_lived_role_tokens_that_verify(dsn, service):
    keys = api_keys(dsn("authgres_service"), JWT_SECRET)
    assert set(keys) == {"anon", "service_role"}
    for role, key in keys.items():
        payload, valid = service.execute("select payload, valid from auth.verify(%s, %s)", (key, JWT_SECRET)).fetchone()
        assert valid is True
        assert payload["role"] == role
        assert payload["exp"] - payload["iat"] >= 5 * 365 * 24 * 3600
        claims = service.execute("select auth.access_token_claims(%s)", (key,)).fetchone()[0]
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
