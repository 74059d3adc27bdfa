"""The providers' settings: AUTHGRES_EXTERNAL_<PROVIDER>_* for every provider, declared once."""

import pytest

from authgres.providers import PRESETS
from authgres.settings import EXTERNAL_PROVIDERS, ConfigError, ExternalProvider, Settings

BASE = {"DATABASE_URL": "postgresql:///x", "AUTHGRES_JWT_SECRET": "s" * 32}


def test_every_provider_is_read_and_disabled_by_default():
    settings = Settings.from_env(BASE)
    assert set(settings.external) == set(EXTERNAL_PROVIDERS) == set(PRESETS)
    assert not any(provider.enabled for provider in settings.external.values())
    assert settings.manual_linking_enabled is False


def test_a_provider_from_its_variables():
    settings = Settings.from_env(
        {
            **BASE,
            "AUTHGRES_EXTERNAL_GOOGLE_ENABLED": "true",
            "AUTHGRES_EXTERNAL_GOOGLE_CLIENT_ID": "web.apps, ios.apps ,",
            "AUTHGRES_EXTERNAL_GOOGLE_SECRET": "shh",
            "AUTHGRES_EXTERNAL_GOOGLE_REDIRECT_URI": "https://api.example.com/auth/v1/callback",
            "AUTHGRES_EXTERNAL_KEYCLOAK_URL": "https://sso.example.com/realms/main/",
            "AUTHGRES_EXTERNAL_APPLE_TEAM_ID": "TEAM",
            "AUTHGRES_SECURITY_MANUAL_LINKING_ENABLED": "true",
        }
    )
    assert settings.provider("google") == ExternalProvider(
        enabled=True,
        client_ids=("web.apps", "ios.apps"),
        secret="shh",
        redirect_uri="https://api.example.com/auth/v1/callback",
    )
    assert settings.provider("keycloak").url == "https://sso.example.com/realms/main"
    assert settings.provider("apple").team_id == "TEAM"
    assert settings.manual_linking_enabled and settings.sql_settings()["manual_linking_enabled"] is True


@pytest.mark.parametrize(
    ("name", "value"),
    [("AUTHGRES_EXTERNAL_GITHUB_ENABLED", "true"), ("AUTHGRES_EXTERNAL_OIDC_URL", "ftp://issuer.example")],
)
def test_a_provider_enabled_without_a_client_id_or_with_a_bad_url_is_refused(name, value):
    with pytest.raises(ConfigError, match="AUTHGRES_EXTERNAL_"):
        Settings.from_env({**BASE, name: value})
