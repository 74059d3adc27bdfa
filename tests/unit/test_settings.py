"""Configuration from the environment."""

import re
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from authgres.settings import Choice, CommandSettings, ConfigError, Integer, OptionalInteger, Settings, declarations

BASE = {"DATABASE_URL": "postgresql:///x", "AUTHGRES_JWT_SECRET": "s" * 32}


def test_defaults():
    settings = Settings.from_env(BASE)
    assert (settings.host, settings.port, settings.jwt_exp) == ("127.0.0.1", 9999, 3600)
    assert settings.refresh_token_reuse_interval == 10
    assert settings.mailer_autoconfirm is False
    assert settings.password_min_length == 6
    assert settings.sql_settings()["jwt_default_role"] == "authenticated"


@pytest.mark.parametrize("missing", ["DATABASE_URL", "AUTHGRES_JWT_SECRET"])
def test_required(missing):
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env({k: v for k, v in BASE.items() if k != missing})


def test_short_secret_is_refused():
    with pytest.raises(ConfigError):
        Settings.from_env({**BASE, "AUTHGRES_JWT_SECRET": "short"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHGRES_MAILER_AUTOCONFIRM", "maybe"),
        ("AUTHGRES_PORT", "http"),
        ("AUTHGRES_JWT_EXP", "0"),
        ("AUTHGRES_REFRESH_TOKEN_REPLAY_REVOKES", "everything"),
    ],
)
def test_malformed_values_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE, name: value})


def test_parsing():
    settings = Settings.from_env(
        {
            **BASE,
            "AUTHGRES_MAILER_AUTOCONFIRM": "TRUE",
            "AUTHGRES_PASSWORD_MIN_LENGTH": "3",
            "AUTHGRES_PASSWORD_REQUIRED_CHARACTERS": r"abc:XYZ:\:;",
            "AUTHGRES_REFRESH_TOKEN_REPLAY_REVOKES": "user",
        }
    )
    assert settings.mailer_autoconfirm is True
    assert settings.password_min_length == 6  # GoTrue's floor
    assert settings.password_required_characters == ("abc", "XYZ", ":;")
    assert settings.refresh_token_replay_revokes == "user"


@pytest.mark.parametrize(
    "name",
    [
        "AUTHGRES_MAILER_SWEEP_SECONDS",
        "AUTHGRES_MAILER_RETRY_BASE_SECONDS",
        "AUTHGRES_PRUNE_INTERVAL_SECONDS",
        "AUTHGRES_EVENTS_HEARTBEAT_SECONDS",
    ],
)
def test_intervals_are_positive_numbers_of_seconds(name):
    field = next(each.name for each in declarations(Settings) if each.env == name)
    assert getattr(Settings.from_env({**BASE, name: "0.25"}), field) == 0.25
    assert getattr(Settings.from_env({**BASE, name: " "}), field) == getattr(Settings.from_env(BASE), field)
    for value in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**BASE, name: value})


def test_special_cases():
    settings = Settings.from_env(
        {
            **BASE,
            "AUTHGRES_API_EXTERNAL_URL": "https://example.com/auth/v1/",
            "AUTHGRES_URI_ALLOW_LIST": " https://a.example.com/** ,, http://localhost:*",
            "AUTHGRES_JWT_ISSUER": "",
            "AUTHGRES_SESSIONS_TIMEBOX": "0",
            "AUTHGRES_SESSIONS_INACTIVITY_TIMEOUT": "600",
            "AUTHGRES_MAILER_DELIVERY": "Code",
            "AUTHGRES_MAILER_DELIVERY_RECOVERY": "link",
        }
    )
    assert settings.external_url == "https://example.com/auth/v1"
    assert settings.uri_allow_list == ("https://a.example.com/**", "http://localhost:*")
    assert settings.jwt_issuer is None
    assert (settings.sessions_timebox, settings.sessions_inactivity_timeout) == (None, 600)
    assert (settings.delivery("recovery"), settings.delivery("magiclink")) == ("link", "code")
    assert Settings.from_env(BASE).delivery("recovery") == "both"
    assert Settings.from_env(BASE).hash_workers >= 1
    with pytest.raises(ConfigError, match="AUTHGRES_MAILER_OTP_LENGTH must be between 6 and 10"):
        Settings.from_env({**BASE, "AUTHGRES_MAILER_OTP_LENGTH": "11"})
    with pytest.raises(ConfigError, match="AUTHGRES_MAILER_DELIVERY_INVITE must be one of"):
        Settings.from_env({**BASE, "AUTHGRES_MAILER_DELIVERY_INVITE": "carrier pigeon"})


def test_sql_settings_follow_the_declarations():
    settings = Settings.from_env(
        {**BASE, "AUTHGRES_JWT_DEFAULT_GROUP_NAME": "member", "AUTHGRES_MFA_EMAIL": "optional"}
    )
    sql = settings.sql_settings()
    assert (sql["jwt_default_role"], sql["mfa_email"]) == ("member", "optional")
    assert "jwt_default_group" not in sql
    assert "jwt_secret" not in sql and "smtp_pass" not in sql


def test_command_settings():
    commands = CommandSettings.from_env({"AUTHGRES_SQL_DIR": ""})
    assert (Path(commands.sql_dir) / "migrate.sh").exists()
    assert (commands.log_level, commands.dev_pg_port, commands.migrate_database_url) == ("INFO", 54329, "")
    assert CommandSettings.from_env(BASE).migrate_database_url == BASE["DATABASE_URL"]
    assert CommandSettings.from_env(
        {**BASE, "AUTHGRES_MIGRATE_DATABASE_URL": "postgresql:///y"}
    ).migrate_database_url == ("postgresql:///y")
    with pytest.raises(ConfigError, match="AUTHGRES_DEV_PG_PORT"):
        CommandSettings.from_env({"AUTHGRES_DEV_PG_PORT": "pg"})


# The README's Configuration table, one row per setting (or a few, separated by " / ").
README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"\| (?P<variables>[^|]+) \| (?P<default>[^|]+) \| [^|]+ \|")


def documented_defaults(readme: str) -> dict[str, str]:
    """Each variable in the README's Configuration table, with its default as written there."""
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # after the header
    defaults: dict[str, str] = {}
    for row in rows:
        match = ROW.fullmatch(row)
        assert match, f"README: a row not of three cells: {row}"
        names = re.split(r" / |, ", match["variables"])
        assert all(re.fullmatch(r"`[A-Z][A-Z0-9_<>]+`", name) for name in names), f"README: {row}"
        values = match["default"].split(" / ")
        values = values * len(names) if len(values) == 1 else values
        assert len(values) == len(names), f"README: as many defaults as variables, or one for all: {row}"
        for name, value in zip(names, values, strict=True):
            assert name.strip("`") not in defaults, f"README: {name} documented twice"
            defaults[name.strip("`")] = value
    return defaults


def readme_disagreements(readme: str) -> list[str]:
    """Where the README's Configuration table and the declarations differ."""
    every = [*declarations(Settings), *declarations(CommandSettings)]
    shown = {variable: each.shown for each in every for variable in each.variables}
    assert len(shown) == sum(len(each.variables) for each in every), "a variable is declared twice"
    documented = documented_defaults(readme)
    problems = [f"{name} is not documented" for name in shown.keys() - documented.keys()]
    problems += [f"{name} is not declared" for name in documented.keys() - shown.keys()]
    for name in shown.keys() & documented.keys():
        # Backticks aside, the README shows the declared default, perhaps followed by a remark in brackets.
        written = documented[name].replace("`", "")
        if written != shown[name] and not written.startswith(f"{shown[name]} ("):
            problems.append(f"{name}: the README's default is {written!r}, the declared one {shown[name]!r}")
    return problems


def test_the_readme_documents_every_variable_with_its_default():
    assert readme_disagreements(README.read_text()) == []


@pytest.mark.parametrize(
    ("correct", "wrong"),
    [
        ("| `AUTHGRES_JWT_EXP` | `3600` |", "| `AUTHGRES_JWT_EXP` | `7200` |"),
        ("| `AUTHGRES_JWT_ISSUER` | the API's external URL", "| `AUTHGRES_JWT_ISSUER` | `authgres`"),
        ("| `AUTHGRES_HASH_WORKERS` | CPU count |", "| `AUTHGRES_HASH_WORKERS` | `4` |"),
        (
            "| `AUTHGRES_MAILER_DELIVERY`, `AUTHGRES_MAILER_DELIVERY_<KIND>` | `both` |",
            "| `AUTHGRES_MAILER_DELIVERY` | `both` |",
        ),
        ("`AUTHGRES_SMTP_PORT` / `AUTHGRES_SMTP_TLS`", "`AUTHGRES_SMTP_PORT` / `AUTHGRES_SMTP_TLZ`"),
        ("`587` / `starttls`", "`587` / `tls`"),
        ("| `AUTHGRES_PRUNE_INTERVAL_SECONDS` |", "| `AUTHGRES_PRUNE_INTERVALS` |"),
        ("`.authgres` / `54329`", "`.authgres` / `5432`"),
        ("| `AUTHGRES_MIGRATE_DATABASE_URL` | `DATABASE_URL` |", "| `AUTHGRES_MIGRATE_DATABASE_URL` | unset |"),
    ],
)
def test_the_readme_check_can_fail(correct, wrong):
    readme = README.read_text()
    assert correct in readme
    assert readme_disagreements(readme.replace(correct, wrong)) != []


def test_sql_settings_are_the_columns_of_auth_settings_with_their_defaults(admin):
    """Declared defaults against what SQL puts in a row written with none (the test fixture's settings differ:
    smtp_max_frequency=0 there, for one)."""
    with admin.transaction(force_rollback=True):
        admin.execute("delete from auth.settings")
        (row,) = admin.execute(
            "insert into auth.settings as s default values returning to_jsonb(s) - 'singleton' - 'updated_at'"
        ).fetchone()
    declared = Settings(database_url="postgresql:///x", jwt_secret="s" * 32).sql_settings()
    # The one default resolved at start-up: unset, the issuer is the API's external URL.
    assert declared["jwt_issuer"] == "http://127.0.0.1:9999"
    declared["jwt_issuer"] = None
    assert set(declared) == set(row)
    assert declared == row


def test_sql_checks_the_bounds_that_from_env_checks(admin):
    """Each bounded SQL setting: SQL takes the values that from_env can give, and refuses the nearest others."""
    for each in declarations(Settings):
        if not each.column:
            continue
        read = each.read
        if isinstance(read, Choice):
            accepted, refused = list(read.choices), ["nonsense"]
        elif isinstance(read, OptionalInteger):  # 0 arrives as None
            accepted, refused = [None, max(1, read.minimum)], [0]
        elif isinstance(read, Integer):
            accepted, refused = [read.minimum], [read.minimum - 1]
            if read.maximum is not None:
                accepted.append(read.maximum)
                refused.append(read.maximum + 1)
        else:
            continue
        update = sql.SQL("update auth.settings set {} = %s").format(sql.Identifier(each.column))
        for value in accepted:
            with admin.transaction(force_rollback=True):
                admin.execute(update, (value,))
        for value in refused:
            with pytest.raises(psycopg.errors.CheckViolation), admin.transaction(force_rollback=True):
                admin.execute(update, (value,))


def test_fixed_email_codes_need_a_valid_until_in_the_future():
    codes = {"AUTHGRES_MAILER_TEST_OTP": "Dev@Example.com:123456, qa@example.com:0000000"}
    for until in ({}, {"AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL": "2020-01-01T00:00:00Z"}):
        with pytest.raises(ConfigError, match="AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL"):
            Settings.from_env({**BASE, **codes, **until})
    settings = Settings.from_env({**BASE, **codes, "AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL": "2999-01-01T00:00:00"})
    assert settings.mailer_test_otp == {"dev@example.com": "123456", "qa@example.com": "0000000"}
    assert settings.sql_settings()["mailer_test_otp_valid_until"] == "2999-01-01T00:00:00+00:00"
    for malformed in ("dev@example.com", "dev@example.com:12ab56", ":123456", "dev@example.com:12345"):
        with pytest.raises(ConfigError, match="AUTHGRES_MAILER_TEST_OTP"):
            Settings.from_env(
                {
                    **BASE,
                    "AUTHGRES_MAILER_TEST_OTP": malformed,
                    "AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL": "2999-01-01T00:00:00Z",
                }
            )
    with pytest.raises(ConfigError, match="ISO 8601"):
        Settings.from_env({**BASE, "AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL": "tomorrow"})


def test_the_webauthn_relying_party_comes_from_the_settings():
    default = Settings.from_env({**BASE, "AUTHGRES_SITE_URL": "https://app.example.com:8443/welcome"})
    assert (default.rp_id, default.rp_origins) == ("app.example.com", ("https://app.example.com:8443",))
    configured = Settings.from_env(
        {
            **BASE,
            "AUTHGRES_WEBAUTHN_RP_ID": "example.com",
            "AUTHGRES_WEBAUTHN_RP_ORIGINS": "https://app.example.com/, https://www.example.com",
        }
    )
    assert configured.rp_id == "example.com"
    assert configured.rp_origins == ("https://app.example.com", "https://www.example.com")
    for wrong in ("example.com", "https://example.com/login", "ftp://example.com", "https://"):
        with pytest.raises(ConfigError, match="AUTHGRES_WEBAUTHN_RP_ORIGINS"):
            Settings.from_env({**BASE, "AUTHGRES_WEBAUTHN_RP_ORIGINS": wrong})
