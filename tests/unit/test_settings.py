"""Configuration from the environment."""

import pytest

from authgres.settings import ConfigError, Settings

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
    with pytest.raises(ConfigError):
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
    with pytest.raises(ConfigError):
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
