"""The captcha settings (AUTHGRES_SECURITY_CAPTCHA_*): what is read, and what refuses to start."""

import pytest

from authgres.settings import ConfigError, Settings

BASE = {"DATABASE_URL": "postgresql:///x", "AUTHGRES_JWT_SECRET": "s" * 32}
ON = {**BASE, "AUTHGRES_SECURITY_CAPTCHA_ENABLED": "true", "AUTHGRES_SECURITY_CAPTCHA_SECRET": "0x-secret"}


def test_off_by_default_with_hcaptcha_and_ten_seconds():
    settings = Settings.from_env(BASE)
    assert (settings.captcha_enabled, settings.captcha_provider, settings.captcha_timeout) == (False, "hcaptcha", 10)
    assert settings.captcha_siteverify_url == "https://hcaptcha.com/siteverify"


def test_each_provider_has_its_siteverify_and_a_configured_url_wins():
    turnstile = Settings.from_env({**ON, "AUTHGRES_SECURITY_CAPTCHA_PROVIDER": "Turnstile"})
    assert turnstile.captcha_provider == "turnstile"
    assert turnstile.captcha_siteverify_url == "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    local = Settings.from_env({**ON, "AUTHGRES_SECURITY_CAPTCHA_VERIFY_URL": "http://127.0.0.1:8080/siteverify"})
    assert local.captcha_siteverify_url == "http://127.0.0.1:8080/siteverify"
    assert Settings.from_env({**ON, "AUTHGRES_SECURITY_CAPTCHA_TIMEOUT": "0.5"}).captcha_timeout == 0.5


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_enabled_without_a_secret_refuses_to_start(secret):
    env = {**ON, "AUTHGRES_SECURITY_CAPTCHA_SECRET": secret}
    if secret is None:
        del env["AUTHGRES_SECURITY_CAPTCHA_SECRET"]
    with pytest.raises(ConfigError, match="AUTHGRES_SECURITY_CAPTCHA_SECRET"):
        Settings.from_env(env)
    # Disabled, a missing secret is no matter.
    assert Settings.from_env({**env, "AUTHGRES_SECURITY_CAPTCHA_ENABLED": "false"}).captcha_enabled is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHGRES_SECURITY_CAPTCHA_ENABLED", "sometimes"),
        ("AUTHGRES_SECURITY_CAPTCHA_PROVIDER", "recaptcha"),
        ("AUTHGRES_SECURITY_CAPTCHA_TIMEOUT", "0"),
        ("AUTHGRES_SECURITY_CAPTCHA_TIMEOUT", "soon"),
        ("AUTHGRES_SECURITY_CAPTCHA_VERIFY_URL", "hcaptcha.com/siteverify"),
    ],
)
def test_malformed_values_refuse_to_start(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**ON, name: value})
