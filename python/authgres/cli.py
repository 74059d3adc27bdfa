"""authgres serve | migrate | keys | dev"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from authgres import logs
from authgres.localpg import LocalCluster
from authgres.settings import CommandSettings, ConfigError, Settings
from authgres.signing import generate_es256_key
from authgres.workers import run_worker, supervise

log = logging.getLogger("authgres")

TEN_YEARS = 10 * 365 * 24 * 3600


def sql_dir() -> Path:
    return Path(CommandSettings.from_env().sql_dir)


def migrate(database_url: str) -> None:
    """Applies sql/migrations with sql/migrate.sh, the same runner psql users run."""
    subprocess.run(["bash", str(sql_dir() / "migrate.sh"), database_url], check=True)


def api_keys(database_url: str, jwt_secret: str) -> dict[str, str]:
    """The anon and service_role keys: HS256 JWTs signed with the JWT secret, signed by auth.sign()."""
    now = int(time.time())
    keys = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for role in ("anon", "service_role"):
            payload = json.dumps({"role": role, "iss": "authgres", "iat": now, "exp": now + TEN_YEARS})
            row = conn.execute("select auth.sign(%s::json, %s)", (payload, jwt_secret)).fetchone()
            assert row is not None
            keys[role] = row[0]
    return keys


def manage_signing_keys(database_url: str, action: str, *, algorithm: str = "ES256", key: str = "") -> str:
    """`authgres keys add|rotate|revoke|list`: one SQL call each; ES256 key pairs are made here."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if action == "add":
            private_pem, public_jwk = generate_es256_key() if algorithm == "ES256" else (None, None)
            public = Jsonb(public_jwk) if public_jwk else None
            row = conn.execute("select auth.add_signing_key(%s, %s, %s)", (algorithm, private_pem, public)).fetchone()
        elif action == "rotate":
            row = conn.execute("select auth.rotate_signing_keys()").fetchone()
        elif action == "revoke":
            row = conn.execute("select auth.revoke_signing_key(%s)", (key,)).fetchone()
        else:
            row = conn.execute("select auth.list_signing_keys()").fetchone()
    assert row is not None
    return json.dumps(row[0], indent=2)


def serve(settings: Settings, workers: int = 1) -> None:
    if workers > 1:
        supervise(settings, workers)
    else:
        run_worker(settings, background=True, reuse_port=False)


def _print_keys(settings: Settings) -> None:
    for role, key in api_keys(settings.database_url, settings.jwt_secret).items():
        print(f"{role} key: {key}")


def _fixed_codes_hint(settings: Settings) -> str:
    if not settings.mailer_test_otp or settings.mailer_test_otp_valid_until is None:
        return (
            "Emails print here. For fixed codes and no emails, e.g. in end-to-end tests: "
            "AUTHGRES_MAILER_TEST_OTP=you@example.com:123456 AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL=2030-01-01T00:00:00Z"
        )
    listed = ", ".join(f"{address} -> {code}" for address, code in settings.mailer_test_otp.items())
    return f"Fixed email codes until {settings.mailer_test_otp_valid_until.isoformat()} (no email sent): {listed}"


def _fixed_sms_codes_hint(settings: Settings) -> str | None:
    """What `dev` says of texts: None while phone sign-in is off."""
    if not settings.external_phone_enabled:
        return None
    if not settings.sms_test_otp or settings.sms_test_otp_valid_until is None:
        where = "print here" if settings.sms_provider == "console" else f"go through {settings.sms_provider}"
        example = "AUTHGRES_SMS_TEST_OTP=15555550100:123456 AUTHGRES_SMS_TEST_OTP_VALID_UNTIL=2030-01-01T00:00:00Z"
        return f"Texts {where}. For fixed codes: {example}"
    listed = ", ".join(f"+{phone} -> {code}" for phone, code in settings.sms_test_otp.items())
    return f"Fixed SMS codes until {settings.sms_test_otp_valid_until.isoformat()} (no text sent): {listed}"


def dev(env: Mapping[str, str]) -> None:
    """Local PostgreSQL (in AUTHGRES_DEV_DIR) unless DATABASE_URL is set; migrate; serve."""
    env = dict(env)
    # Phone sign-in is on in development unless turned off: its texts print here (the console provider) as
    # emails do.
    env.setdefault("AUTHGRES_EXTERNAL_PHONE_ENABLED", "true")
    command_settings = CommandSettings.from_env(env)
    state = Path(command_settings.dev_dir).resolve()
    cluster = None
    if env.get("DATABASE_URL"):
        migrate(command_settings.migrate_database_url)
    else:
        cluster = LocalCluster(state / "pg", port=command_settings.dev_pg_port, listen_tcp=True)
        cluster.start()
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            if conn.execute("select 1 from pg_database where datname = 'authgres'").fetchone() is None:
                conn.execute("create database authgres")
        migrate(cluster.url("postgres", "authgres"))
        env["DATABASE_URL"] = cluster.url("authgres_service", "authgres")
        print(f"PostgreSQL: {cluster.url('postgres', 'authgres')} (also 127.0.0.1:{cluster.port})")
    if not env.get("AUTHGRES_JWT_SECRET"):
        secret_file = state / "jwt_secret"
        if not secret_file.exists():
            state.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_urlsafe(48))
            secret_file.chmod(0o600)
        env["AUTHGRES_JWT_SECRET"] = secret_file.read_text().strip()
    try:
        settings = Settings.from_env(env)
        _print_keys(settings)
        print(_fixed_codes_hint(settings))
        if sms_hint := _fixed_sms_codes_hint(settings):
            print(sms_hint)
        print(f"authgres listening on http://{settings.host}:{settings.port} (and under /auth/v1)")
        serve(settings)
    finally:
        if cluster:
            cluster.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="authgres", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="serve the HTTP API (DATABASE_URL, AUTHGRES_JWT_SECRET)")
    serve_command.add_argument(
        "--workers", type=int, default=None, help="processes on one port (default: AUTHGRES_WORKERS, else CPU count)"
    )
    commands.add_parser("migrate", help="apply sql/migrations (AUTHGRES_MIGRATE_DATABASE_URL or DATABASE_URL)")
    keys = commands.add_parser(
        "keys",
        help="print the anon and service_role API keys; or manage signing keys",
        description="Without an action: print the anon and service_role API keys (signed with AUTHGRES_JWT_SECRET). "
        "add: a next signing key, published in the JWKS but not signing yet; rotate: the next key signs, the "
        "current one keeps verifying; revoke KID: a next or previous key stops verifying; list: every key.",
    )
    keys.add_argument("action", nargs="?", choices=["add", "rotate", "revoke", "list"])
    keys.add_argument("key", nargs="?", default="", help="for revoke: the key's kid (or id)")
    keys.add_argument("--algorithm", default="ES256", choices=["ES256", "HS256", "HS384", "HS512"])
    commands.add_parser("dev", help="local PostgreSQL when DATABASE_URL is unset, migrate, then serve")
    args = parser.parse_args(argv)
    try:
        # JSON lines for a log collector; `dev` writes text for the terminal unless told otherwise.
        env = {"AUTHGRES_LOG_FORMAT": "text", **os.environ} if args.command == "dev" else os.environ
        command_settings = CommandSettings.from_env(env)
        logs.configure(command_settings.log_level, command_settings.log_format)
        if args.command == "migrate":
            if not command_settings.migrate_database_url:
                raise ConfigError("DATABASE_URL (or AUTHGRES_MIGRATE_DATABASE_URL) is required")
            migrate(command_settings.migrate_database_url)
        elif args.command == "dev":
            dev(os.environ)
        else:
            settings = Settings.from_env()
            if args.command == "keys" and args.action:
                print(manage_signing_keys(settings.database_url, args.action, algorithm=args.algorithm, key=args.key))
            elif args.command == "keys":
                _print_keys(settings)
            else:
                workers = args.workers if args.workers is not None else command_settings.workers
                if workers < 1:
                    raise ConfigError("--workers must be at least 1")
                serve(settings, workers)
    except ConfigError as error:
        sys.exit(f"authgres: {error}")
    except psycopg.Error as error:
        sys.exit(f"authgres: {error.diag.message_primary or error}")
    except subprocess.CalledProcessError as error:
        sys.exit(f"authgres: {error}")
