"""Configuration, read once from the environment.

Each setting is declared once, as a field of Settings: its type and default, and through `setting` the
environment variable that sets it, how that is read and bounded, and the auth.settings column when the
SQL functions read it. from_env and sql_settings are derived from the declarations; tests check the
README's Configuration table and the auth.settings columns against them. CommandSettings declares the
few variables that only the commands read, the same way.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar, overload
from urllib.parse import urlsplit

T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

EMAIL_KINDS = (
    "confirmation",
    "invite",
    "magiclink",
    "recovery",
    "email_change_current",
    "email_change_new",
    "reauthentication",
)

# Each SMS provider and the base URL of its HTTP API (python/authgres/sms.py speaks to them).
SMS_PROVIDER_API = {
    "console": "",
    "twilio": "https://api.twilio.com",
    "twilio_verify": "https://verify.twilio.com",
    "vonage": "https://rest.nexmo.com",
    "messagebird": "https://rest.messagebird.com",
    "textlocal": "https://api.textlocal.in",
}

# Each captcha provider and the URL its tokens are checked at (GoTrue's two).
CAPTCHA_SITEVERIFY = {
    "hcaptcha": "https://hcaptcha.com/siteverify",
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
}


# What each SMS provider needs set (Settings fields).
SMS_PROVIDER_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "console": (),
    "twilio": ("sms_twilio_account_sid", "sms_twilio_auth_token", "sms_twilio_message_service_sid"),
    "twilio_verify": (
        "sms_twilio_verify_account_sid",
        "sms_twilio_verify_auth_token",
        "sms_twilio_verify_message_service_sid",
    ),
    "vonage": ("sms_vonage_api_key", "sms_vonage_api_secret", "sms_vonage_from"),
    "messagebird": ("sms_messagebird_access_key", "sms_messagebird_originator"),
    "textlocal": ("sms_textlocal_api_key", "sms_textlocal_sender"),
}


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


class Reader:
    """Reads one setting from the environment. An unset variable gives the default; a set one goes to
    `parse`, which raises ConfigError naming the variable when its text is malformed or out of bounds."""

    def __call__(self, env: Mapping[str, str], name: str, default: Any) -> Any:
        raw = env.get(name)
        return default if raw is None else self.parse(raw, name, default)

    def parse(self, raw: str, name: str, default: Any) -> Any:
        return raw

    def variables(self, name: str) -> tuple[str, ...]:
        """The variables it reads, as the README names them."""
        return (name,)

    def show(self, default: Any) -> str:
        """The default as the README shows it."""
        if default is None or default in ("", ()):
            return "unset"
        if isinstance(default, bool):
            return "true" if default else "false"
        if isinstance(default, float):
            return f"{default:g}"
        return str(default)


class Text(Reader):
    """A string as it is (set but empty stays empty)."""


class OptionalText(Reader):
    """A string; empty is unset (the default)."""

    def parse(self, raw: str, name: str, default: Any) -> Any:
        return raw or default


@dataclass(frozen=True)
class OrElse(Reader):
    """A string; unset or empty, another variable's value (the default when that is unset too)."""

    other: str

    def __call__(self, env: Mapping[str, str], name: str, default: Any) -> Any:
        return env.get(name) or env.get(self.other) or default

    def show(self, default: Any) -> str:
        return self.other


@dataclass(frozen=True)
class Required(Reader):
    """A string that must be set, at least min_length characters long."""

    min_length: int = 1

    def __call__(self, env: Mapping[str, str], name: str, default: Any) -> str:
        value = env.get(name, "")
        if len(value) < self.min_length:
            needs = f" and must be at least {self.min_length} characters" if self.min_length > 1 else ""
            raise ConfigError(f"{name} is required{needs}")
        return value

    def show(self, default: Any) -> str:
        return "—"


@dataclass(frozen=True)
class OptionalSecret(Reader):
    """A string that may be unset (or empty), and when set is at least min_length characters long."""

    min_length: int = 1

    def parse(self, raw: str, name: str, default: Any) -> Any:
        if raw and len(raw) < self.min_length:
            raise ConfigError(f"{name} must be at least {self.min_length} characters")
        return raw or default


class Url(Reader):
    """A base URL, kept without its trailing slash."""

    def parse(self, raw: str, name: str, default: Any) -> str:
        return raw.rstrip("/")


class Flag(Reader):
    """true or false (also 1/0, yes/no, on/off); set but empty is false."""

    def parse(self, raw: str, name: str, default: Any) -> bool:
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}")


@dataclass(frozen=True)
class Integer(Reader):
    """A whole number from minimum up to maximum; blank is unset. Values below raised_to count as it."""

    minimum: int = 0
    maximum: int | None = None
    raised_to: int | None = None

    def parse(self, raw: str, name: str, default: Any) -> Any:
        if not raw.strip():
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
        if self.maximum is not None and not self.minimum <= value <= self.maximum:
            raise ConfigError(f"{name} must be between {self.minimum} and {self.maximum}")
        if value < self.minimum:
            raise ConfigError(f"{name} must be at least {self.minimum}")
        return value if self.raised_to is None else max(self.raised_to, value)


@dataclass(frozen=True)
class OptionalInteger(Integer):
    """A whole number where 0, like unset, means none (None)."""

    def parse(self, raw: str, name: str, default: Any) -> int | None:
        return super().parse(raw, name, default) or None


@dataclass(frozen=True)
class Number(Reader):
    """A finite number greater than `above`; blank is unset."""

    above: float = 0.0

    def parse(self, raw: str, name: str, default: Any) -> Any:
        if not raw.strip():
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}") from None
        if not (math.isfinite(value) and value > self.above):
            raise ConfigError(f"{name} must be a number greater than {self.above:g}")
        return value


class Choice(Reader):
    """One of a few words, in any case; blank is unset."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def parse(self, raw: str, name: str, default: Any) -> str:
        value = raw.strip().lower() or default
        if value not in self.choices:
            raise ConfigError(f"{name} must be one of {', '.join(self.choices)}")
        return str(value)


class CommaList(Reader):
    """Comma-separated items, blank ones dropped."""

    def parse(self, raw: str, name: str, default: Any) -> tuple[str, ...]:
        return tuple(item.strip() for item in raw.split(",") if item.strip())


class Networks(Reader):
    """Comma-separated IP networks in CIDR notation (an address alone is a network of one)."""

    def parse(self, raw: str, name: str, default: Any) -> tuple[IPNetwork, ...]:
        try:
            return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in raw.split(",") if item.strip())
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None


class FixedCodes(Reader):
    """Comma-separated `recipient:code` pairs (GoTrue's SMS_TEST_OTP format), codes of 6 to 10 digits."""

    _CODE = re.compile(r"^[0-9]{6,10}$")

    def parse(self, raw: str, name: str, default: Any) -> dict[str, str]:
        codes = {}
        for item in filter(None, (part.strip() for part in raw.split(","))):
            recipient, _, code = item.rpartition(":")
            if not recipient or not self._CODE.match(code.strip()):
                raise ConfigError(f"{name}: {item!r} is not recipient:code with a code of 6 to 10 digits")
            codes[recipient.strip().lower()] = code.strip()
        return codes

    def show(self, default: Any) -> str:
        return "unset"


class PhoneCodes(FixedCodes):
    """FixedCodes whose recipients are phone numbers, kept as E.164 digits (+, spaces and dashes dropped)."""

    _PHONE = re.compile(r"^[1-9][0-9]{1,14}$")

    def parse(self, raw: str, name: str, default: Any) -> dict[str, str]:
        codes = {}
        for recipient, code in super().parse(raw, name, default).items():
            number = re.sub(r"[+\s-]", "", recipient)
            if not self._PHONE.match(number):
                raise ConfigError(f"{name}: {recipient!r} is not a phone number in E.164 format")
            codes[number] = code
        return codes


class Timestamp(Reader):
    """An ISO 8601 date and time (UTC unless it says otherwise); blank is unset."""

    def parse(self, raw: str, name: str, default: Any) -> Any:
        if not raw.strip():
            return default
        try:
            value = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be an ISO 8601 date and time, not {raw!r}") from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class CharacterSets(Reader):
    """GoTrue's format: sets separated by ':', with '\\:' standing for a literal colon."""

    def parse(self, raw: str, name: str, default: Any) -> tuple[str, ...]:
        placeholder = "\x00"
        return tuple(part.replace(placeholder, ":") for part in raw.replace("\\:", placeholder).split(":") if part)


class DeliveryModes(Reader):
    """NAME for every kind of email, NAME_<KIND> for one: (kind, mode) pairs, '*' standing for every kind."""

    fallback = "both"
    mode = Choice("both", "link", "code")

    def __call__(self, env: Mapping[str, str], name: str, default: Any) -> tuple[tuple[str, str], ...]:
        modes = [("*", self.mode(env, name, self.fallback))]
        for kind in EMAIL_KINDS:
            variable = f"{name}_{kind.upper()}"
            if variable in env:
                modes.append((kind, self.mode(env, variable, self.fallback)))
        return tuple(modes)

    def variables(self, name: str) -> tuple[str, ...]:
        return (name, f"{name}_<KIND>")

    def show(self, default: Any) -> str:
        return self.fallback


# Third-party sign-in: each provider's name. Every one is configured by the same variables
# (ExternalProviders); providers.py holds what each is (endpoints, scopes, how it names its users).
EXTERNAL_PROVIDERS = ("apple", "azure", "discord", "github", "gitlab", "google", "keycloak", "oidc")


@dataclass(frozen=True)
class ExternalProvider:
    """One provider's AUTHGRES_EXTERNAL_<PROVIDER>_* variables."""

    enabled: bool = False
    client_ids: tuple[str, ...] = ()  # the first is the one /authorize uses; ID tokens may be for any
    secret: str = ""
    redirect_uri: str = ""  # unset: the API's external URL + /callback
    url: str = ""  # unset: the provider's own (a base URL, or for OIDC providers the issuer)
    team_id: str = ""  # Apple only, with key_id: SECRET is then the .p8 key, and the client secret is made from it
    key_id: str = ""


class ExternalProviders(Reader):
    """AUTHGRES_EXTERNAL_<PROVIDER>_ENABLED, _CLIENT_ID (a comma list), _SECRET, _REDIRECT_URI and _URL for
    every provider of EXTERNAL_PROVIDERS (Apple also _TEAM_ID and _KEY_ID), read into one ExternalProvider
    each. An enabled provider needs a client id."""

    _SUFFIXES = ("ENABLED", "CLIENT_ID", "SECRET", "REDIRECT_URI", "URL")
    _APPLE = ("TEAM_ID", "KEY_ID")

    def __call__(self, env: Mapping[str, str], name: str, default: Any) -> dict[str, ExternalProvider]:
        providers = {}
        for provider in EXTERNAL_PROVIDERS:
            prefix = f"{name}_{provider.upper()}_"
            enabled = Flag()(env, prefix + "ENABLED", False)
            client_ids = CommaList()(env, prefix + "CLIENT_ID", ())
            if enabled and not client_ids:
                raise ConfigError(f"{prefix}ENABLED needs {prefix}CLIENT_ID")
            url = Url()(env, prefix + "URL", "")
            if url and not url.startswith(("https://", "http://")):
                raise ConfigError(f"{prefix}URL must be an http:// or https:// URL")
            providers[provider] = ExternalProvider(
                enabled=enabled,
                client_ids=client_ids,
                secret=env.get(prefix + "SECRET", ""),
                redirect_uri=env.get(prefix + "REDIRECT_URI", ""),
                url=url,
                team_id=env.get(prefix + "TEAM_ID", "") if provider == "apple" else "",
                key_id=env.get(prefix + "KEY_ID", "") if provider == "apple" else "",
            )
        return providers

    def variables(self, name: str) -> tuple[str, ...]:
        return (
            *(f"{name}_<PROVIDER>_{suffix}" for suffix in self._SUFFIXES),
            *(f"{name}_APPLE_{suffix}" for suffix in self._APPLE),
        )

    def show(self, default: Any) -> str:
        return "unset"


@overload
def setting(default: T, *, env: str, read: Reader, sql: bool | str = ..., shown: str | None = ...) -> T: ...
@overload
def setting(
    *, default_factory: Callable[[], T], env: str, read: Reader, sql: bool | str = ..., shown: str | None = ...
) -> T: ...
@overload
def setting(*, env: str, read: Reader) -> Any: ...
def setting(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    env: str,
    read: Reader,
    sql: bool | str = False,
    shown: str | None = None,
) -> Any:
    """A dataclass field declaring one setting: its default, the environment variable read by `read`,
    and sql, when the SQL functions read it: True for the auth.settings column of the field's name, or
    that column's name. shown: the default as the README shows it, when the reader cannot tell (a
    default computed at start-up)."""
    metadata = {"env": env, "read": read, "sql": sql, "shown": shown}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Declaration:
    """One setting as declared: field, environment variable, reader, default and auth.settings column."""

    name: str  # the dataclass field
    env: str
    read: Reader
    default: Any  # None when the setting is required
    column: str | None
    shown: str  # the default as the README shows it

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable the setting is read from, as the README names them."""
        return self.read.variables(self.env)

    def from_env(self, env: Mapping[str, str]) -> Any:
        return self.read(env, self.env, self.default)


def declarations(cls: type[Any]) -> Iterator[Declaration]:
    """The settings a dataclass declares with `setting`, in field order."""
    for each in fields(cls):
        meta = each.metadata
        if each.default_factory is not MISSING:
            default = each.default_factory()
        else:
            default = None if each.default is MISSING else each.default
        column = each.name if meta["sql"] is True else meta["sql"] or None
        shown = meta["read"].show(default) if meta["shown"] is None else meta["shown"]
        yield Declaration(each.name, meta["env"], meta["read"], default, column, shown)


class _FromEnvironment:
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Every declared setting from the environment (os.environ by default)."""
        env = os.environ if env is None else env
        return cls(**{each.name: each.from_env(env) for each in declarations(cls)})


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _pool_max() -> int:
    # Connections beyond a couple per core only queue inside PostgreSQL: measured, 4 beat 8 and 16 here.
    return max(4, 2 * _cpu_count())


def _checkout_sql() -> str:
    return str(Path(__file__).resolve().parents[2] / "sql")


@dataclass(frozen=True)
class Settings(_FromEnvironment):
    """What the service reads from the environment; sql= marks what auth.configure writes to auth.settings."""

    database_url: str = setting(env="DATABASE_URL", read=Required())
    jwt_secret: str = setting(env="AUTHGRES_JWT_SECRET", read=Required(min_length=32))
    host: str = setting("127.0.0.1", env="AUTHGRES_HOST", read=Text())
    port: int = setting(9999, env="AUTHGRES_PORT", read=Integer())
    site_url: str = setting("http://localhost:3000", env="AUTHGRES_SITE_URL", read=Text(), sql=True)
    jwt_exp: int = setting(3600, env="AUTHGRES_JWT_EXP", read=Integer(minimum=1), sql=True)
    jwt_aud: str = setting("authenticated", env="AUTHGRES_JWT_AUD", read=Text(), sql=True)
    # Unset: the API's external URL, as GoTrue deployments set it (sql_settings resolves it).
    jwt_issuer: str | None = setting(
        None, env="AUTHGRES_JWT_ISSUER", read=OptionalText(), sql=True, shown="the API's external URL"
    )
    jwt_default_group: str = setting(
        "authenticated", env="AUTHGRES_JWT_DEFAULT_GROUP_NAME", read=Text(), sql="jwt_default_role"
    )
    mailer_autoconfirm: bool = setting(False, env="AUTHGRES_MAILER_AUTOCONFIRM", read=Flag(), sql=True)
    disable_signup: bool = setting(False, env="AUTHGRES_DISABLE_SIGNUP", read=Flag(), sql=True)
    signup_deferred: bool = setting(False, env="AUTHGRES_SIGNUP_DEFERRED", read=Flag(), sql=True)
    account_deletion: str = setting("hard", env="AUTHGRES_ACCOUNT_DELETION", read=Choice("hard", "soft"), sql=True)
    anonymous_users_enabled: bool = setting(
        False, env="AUTHGRES_EXTERNAL_ANONYMOUS_USERS_ENABLED", read=Flag(), sql=True
    )
    # Each anonymous sign-in makes a user and needs nothing but a request: bounded per client IP, as GoTrue's.
    rate_limit_anonymous_users: int = setting(
        30, env="AUTHGRES_RATE_LIMIT_ANONYMOUS_USERS", read=Integer(minimum=1), sql=True
    )
    refresh_token_reuse_interval: int = setting(
        10, env="AUTHGRES_REFRESH_TOKEN_REUSE_INTERVAL", read=Integer(), sql=True
    )
    refresh_token_replay_revokes: str = setting(
        "session", env="AUTHGRES_REFRESH_TOKEN_REPLAY_REVOKES", read=Choice("session", "user"), sql=True
    )
    # GoTrue raises anything below 6 to 6.
    password_min_length: int = setting(6, env="AUTHGRES_PASSWORD_MIN_LENGTH", read=Integer(raised_to=6))
    password_required_characters: tuple[str, ...] = setting(
        (), env="AUTHGRES_PASSWORD_REQUIRED_CHARACTERS", read=CharacterSets()
    )
    argon2_memory_kib: int = setting(19456, env="AUTHGRES_ARGON2_MEMORY_KIB", read=Integer(minimum=8))
    argon2_time_cost: int = setting(2, env="AUTHGRES_ARGON2_TIME_COST", read=Integer(minimum=1))
    argon2_parallelism: int = setting(1, env="AUTHGRES_ARGON2_PARALLELISM", read=Integer(minimum=1))
    hash_workers: int = setting(
        default_factory=_cpu_count, env="AUTHGRES_HASH_WORKERS", read=Integer(minimum=1), shown="CPU count"
    )
    # Unset: this server's own address (external_url).
    api_external_url: str = setting("", env="AUTHGRES_API_EXTERNAL_URL", read=Url(), shown="http://HOST:PORT")
    uri_allow_list: tuple[str, ...] = setting((), env="AUTHGRES_URI_ALLOW_LIST", read=CommaList())
    trusted_proxies: tuple[IPNetwork, ...] = setting((), env="AUTHGRES_TRUSTED_PROXIES", read=Networks())
    mailer_otp_exp: int = setting(3600, env="AUTHGRES_MAILER_OTP_EXP", read=Integer(minimum=1), sql=True)
    mailer_otp_length: int = setting(6, env="AUTHGRES_MAILER_OTP_LENGTH", read=Integer(minimum=6, maximum=10), sql=True)
    mailer_otp_max_attempts: int = setting(5, env="AUTHGRES_MAILER_OTP_MAX_ATTEMPTS", read=Integer(minimum=1), sql=True)
    mailer_secure_email_change: bool = setting(
        True, env="AUTHGRES_MAILER_SECURE_EMAIL_CHANGE_ENABLED", read=Flag(), sql=True
    )
    flow_state_expiry: int = setting(300, env="AUTHGRES_FLOW_STATE_EXPIRY_DURATION", read=Integer(minimum=1), sql=True)
    # Checked in __post_init__: fixed codes need a valid-until in the future.
    mailer_test_otp: dict[str, str] = setting(
        default_factory=dict, env="AUTHGRES_MAILER_TEST_OTP", read=FixedCodes(), sql=True
    )
    mailer_test_otp_valid_until: datetime | None = setting(
        None, env="AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL", read=Timestamp(), sql=True
    )
    mailer_link_confirm_page: bool = setting(False, env="AUTHGRES_MAILER_LINK_CONFIRM_PAGE", read=Flag())
    mailer_templates: str | None = setting(None, env="AUTHGRES_MAILER_TEMPLATES", read=OptionalText())
    mailer_delivery: tuple[tuple[str, str], ...] = setting((), env="AUTHGRES_MAILER_DELIVERY", read=DeliveryModes())
    mailer_max_attempts: int = setting(8, env="AUTHGRES_MAILER_MAX_ATTEMPTS", read=Integer(minimum=1))
    mailer_retry_base_seconds: float = setting(5.0, env="AUTHGRES_MAILER_RETRY_BASE_SECONDS", read=Number())
    mailer_sweep_seconds: float = setting(5.0, env="AUTHGRES_MAILER_SWEEP_SECONDS", read=Number())
    smtp_max_frequency: int = setting(60, env="AUTHGRES_SMTP_MAX_FREQUENCY", read=Integer(), sql=True)
    rate_limit_email_per_address: int = setting(
        30, env="AUTHGRES_RATE_LIMIT_EMAIL_PER_ADDRESS", read=Integer(), sql=True
    )
    rate_limit_email_per_ip: int = setting(100, env="AUTHGRES_RATE_LIMIT_EMAIL_PER_IP", read=Integer(), sql=True)
    secure_password_change: bool = setting(False, env="AUTHGRES_SECURE_PASSWORD_CHANGE", read=Flag(), sql=True)
    hook_custom_access_token: str | None = setting(
        None, env="AUTHGRES_HOOK_CUSTOM_ACCESS_TOKEN", read=OptionalText(), sql=True
    )
    hook_before_user_created: str | None = setting(
        None, env="AUTHGRES_HOOK_BEFORE_USER_CREATED", read=OptionalText(), sql=True
    )
    hook_password_verification_attempt: str | None = setting(
        None, env="AUTHGRES_HOOK_PASSWORD_VERIFICATION_ATTEMPT", read=OptionalText(), sql=True
    )
    hook_send_email: str | None = setting(None, env="AUTHGRES_HOOK_SEND_EMAIL", read=OptionalText(), sql=True)
    hook_before_user_deleted: str | None = setting(
        None, env="AUTHGRES_HOOK_BEFORE_USER_DELETED", read=OptionalText(), sql=True
    )
    db_statement_timeout_ms: int = setting(10000, env="AUTHGRES_DB_STATEMENT_TIMEOUT_MS", read=Integer(minimum=1))
    db_prepared_statements: str = setting(
        "auto", env="AUTHGRES_DB_PREPARED_STATEMENTS", read=Choice("auto", "on", "off")
    )
    db_listen_url: str | None = setting(None, env="AUTHGRES_DB_LISTEN_URL", read=OptionalText())
    events_heartbeat_seconds: float = setting(15.0, env="AUTHGRES_EVENTS_HEARTBEAT_SECONDS", read=Number())
    audit_retention_days: int = setting(90, env="AUTHGRES_AUDIT_RETENTION_DAYS", read=Integer(), sql=True)
    prune_interval_seconds: float = setting(600.0, env="AUTHGRES_PRUNE_INTERVAL_SECONDS", read=Number())
    sessions_timebox: int | None = setting(None, env="AUTHGRES_SESSIONS_TIMEBOX", read=OptionalInteger(), sql=True)
    sessions_inactivity_timeout: int | None = setting(
        None, env="AUTHGRES_SESSIONS_INACTIVITY_TIMEOUT", read=OptionalInteger(), sql=True
    )
    sessions_single_per_user: bool = setting(False, env="AUTHGRES_SESSIONS_SINGLE_PER_USER", read=Flag(), sql=True)
    mfa_challenge_expiry: int = setting(
        300, env="AUTHGRES_MFA_CHALLENGE_EXPIRY_DURATION", read=Integer(minimum=1), sql=True
    )
    mfa_max_attempts: int = setting(5, env="AUTHGRES_MFA_MAX_ATTEMPTS", read=Integer(minimum=1), sql=True)
    mfa_max_enrolled_factors: int = setting(
        10, env="AUTHGRES_MFA_MAX_ENROLLED_FACTORS", read=Integer(minimum=1), sql=True
    )
    mfa_web_authn_enabled: bool = setting(False, env="AUTHGRES_MFA_WEB_AUTHN_ENABLED", read=Flag(), sql=True)
    mfa_recovery_codes_enroll_enabled: bool = setting(
        True, env="AUTHGRES_MFA_RECOVERY_CODES_ENROLL_ENABLED", read=Flag(), sql=True
    )
    mfa_recovery_codes_verify_enabled: bool = setting(
        True, env="AUTHGRES_MFA_RECOVERY_CODES_VERIFY_ENABLED", read=Flag(), sql=True
    )
    # Off for apps that call auth-js's mfa.recoveryCodes.generate() after the first factor, as on Supabase.
    mfa_recovery_codes_with_first_factor: bool = setting(
        True, env="AUTHGRES_MFA_RECOVERY_CODES_WITH_FIRST_FACTOR", read=Flag(), sql=True
    )
    # Passkeys and WebAuthn: the relying party comes from here only, never from a client.
    passkey_enabled: bool = setting(False, env="AUTHGRES_PASSKEY_ENABLED", read=Flag())
    passkey_max_per_user: int = setting(
        10, env="AUTHGRES_PASSKEY_MAX_PASSKEYS_PER_USER", read=Integer(minimum=1), sql=True
    )
    webauthn_rp_id: str | None = setting(
        None, env="AUTHGRES_WEBAUTHN_RP_ID", read=OptionalText(), shown="the host of AUTHGRES_SITE_URL"
    )
    webauthn_rp_display_name: str = setting("authgres", env="AUTHGRES_WEBAUTHN_RP_DISPLAY_NAME", read=Text())
    webauthn_rp_origins: tuple[str, ...] = setting(
        (), env="AUTHGRES_WEBAUTHN_RP_ORIGINS", read=CommaList(), shown="the origin of AUTHGRES_SITE_URL"
    )
    webauthn_challenge_expiry: int = setting(
        300, env="AUTHGRES_WEBAUTHN_CHALLENGE_EXPIRY_DURATION", read=Integer(minimum=1), sql=True
    )
    # Passkey sign-in's options need no session and store a challenge: bounded per client IP, as GoTrue's.
    rate_limit_passkey: int = setting(30, env="AUTHGRES_RATE_LIMIT_PASSKEY", read=Integer(minimum=1), sql=True)
    mfa_email: str = setting("off", env="AUTHGRES_MFA_EMAIL", read=Choice("off", "optional", "required"), sql=True)
    mfa_email_strict: bool = setting(False, env="AUTHGRES_MFA_EMAIL_STRICT", read=Flag(), sql=True)
    smtp_host: str | None = setting(None, env="AUTHGRES_SMTP_HOST", read=OptionalText())
    smtp_port: int = setting(587, env="AUTHGRES_SMTP_PORT", read=Integer(minimum=1))
    smtp_user: str | None = setting(None, env="AUTHGRES_SMTP_USER", read=OptionalText())
    smtp_pass: str | None = setting(None, env="AUTHGRES_SMTP_PASS", read=OptionalText())
    smtp_sender: str = setting("authgres@localhost", env="AUTHGRES_SMTP_SENDER", read=Text())
    smtp_tls: str = setting("starttls", env="AUTHGRES_SMTP_TLS", read=Choice("none", "starttls", "tls"))
    db_pool_min: int = setting(2, env="AUTHGRES_DB_POOL_MIN", read=Integer(minimum=1))
    db_pool_max: int = setting(
        default_factory=_pool_max, env="AUTHGRES_DB_POOL_MAX", read=Integer(minimum=1), shown="max(4, 2 * CPUs)"
    )
    # GET /metrics on the API's port needs this token; the separate metrics port needs none (metrics.py).
    metrics_token: str | None = setting(None, env="AUTHGRES_METRICS_TOKEN", read=OptionalSecret(min_length=16))
    metrics_port: int | None = setting(None, env="AUTHGRES_METRICS_PORT", read=OptionalInteger(maximum=65535))
    metrics_host: str = setting("127.0.0.1", env="AUTHGRES_METRICS_HOST", read=Text())
    # Checked in __post_init__: enabled needs a secret and an http(s) verify URL (captcha.py calls it).
    captcha_enabled: bool = setting(False, env="AUTHGRES_SECURITY_CAPTCHA_ENABLED", read=Flag())
    captcha_provider: str = setting(
        "hcaptcha", env="AUTHGRES_SECURITY_CAPTCHA_PROVIDER", read=Choice(*CAPTCHA_SITEVERIFY)
    )
    captcha_secret: str | None = setting(None, env="AUTHGRES_SECURITY_CAPTCHA_SECRET", read=OptionalText())
    # Unset: the provider's own (captcha_siteverify_url); tests point it at a loopback stand-in.
    captcha_verify_url: str | None = setting(
        None, env="AUTHGRES_SECURITY_CAPTCHA_VERIFY_URL", read=OptionalText(), shown="the provider's siteverify URL"
    )
    captcha_timeout: float = setting(10.0, env="AUTHGRES_SECURITY_CAPTCHA_TIMEOUT", read=Number())
    # Phone: sign-up and sign-in by texted code (SMS or WhatsApp), phone change, phone MFA (sms.py, phone.sql).
    external_phone_enabled: bool = setting(False, env="AUTHGRES_EXTERNAL_PHONE_ENABLED", read=Flag(), sql=True)
    sms_autoconfirm: bool = setting(False, env="AUTHGRES_SMS_AUTOCONFIRM", read=Flag(), sql=True)
    sms_otp_length: int = setting(6, env="AUTHGRES_SMS_OTP_LENGTH", read=Integer(minimum=6, maximum=10), sql=True)
    sms_otp_exp: int = setting(60, env="AUTHGRES_SMS_OTP_EXP", read=Integer(minimum=1), sql=True)
    sms_max_frequency: int = setting(60, env="AUTHGRES_SMS_MAX_FREQUENCY", read=Integer(), sql=True)
    rate_limit_sms_sent: int = setting(30, env="AUTHGRES_RATE_LIMIT_SMS_SENT", read=Integer(), sql=True)
    sms_template: str = setting("Your code is {{ .Code }}", env="AUTHGRES_SMS_TEMPLATE", read=Text())
    # Checked in __post_init__: fixed codes need a valid-until in the future.
    sms_test_otp: dict[str, str] = setting(
        default_factory=dict, env="AUTHGRES_SMS_TEST_OTP", read=PhoneCodes(), sql=True
    )
    sms_test_otp_valid_until: datetime | None = setting(
        None, env="AUTHGRES_SMS_TEST_OTP_VALID_UNTIL", read=Timestamp(), sql=True
    )
    hook_send_sms: str | None = setting(None, env="AUTHGRES_HOOK_SEND_SMS", read=OptionalText(), sql=True)
    # Checked in __post_init__: each provider needs its credentials.
    sms_provider: str = setting("console", env="AUTHGRES_SMS_PROVIDER", read=Choice(*SMS_PROVIDER_API))
    sms_max_attempts: int = setting(8, env="AUTHGRES_SMS_MAX_ATTEMPTS", read=Integer(minimum=1))
    sms_retry_base_seconds: float = setting(5.0, env="AUTHGRES_SMS_RETRY_BASE_SECONDS", read=Number())
    sms_timeout: float = setting(10.0, env="AUTHGRES_SMS_TIMEOUT", read=Number())
    sms_twilio_account_sid: str | None = setting(None, env="AUTHGRES_SMS_TWILIO_ACCOUNT_SID", read=OptionalText())
    sms_twilio_auth_token: str | None = setting(None, env="AUTHGRES_SMS_TWILIO_AUTH_TOKEN", read=OptionalText())
    sms_twilio_message_service_sid: str | None = setting(
        None, env="AUTHGRES_SMS_TWILIO_MESSAGE_SERVICE_SID", read=OptionalText()
    )
    sms_twilio_api_url: str = setting(SMS_PROVIDER_API["twilio"], env="AUTHGRES_SMS_TWILIO_API_URL", read=Url())
    sms_twilio_verify_account_sid: str | None = setting(
        None, env="AUTHGRES_SMS_TWILIO_VERIFY_ACCOUNT_SID", read=OptionalText()
    )
    sms_twilio_verify_auth_token: str | None = setting(
        None, env="AUTHGRES_SMS_TWILIO_VERIFY_AUTH_TOKEN", read=OptionalText()
    )
    sms_twilio_verify_message_service_sid: str | None = setting(
        None, env="AUTHGRES_SMS_TWILIO_VERIFY_MESSAGE_SERVICE_SID", read=OptionalText()
    )
    sms_twilio_verify_api_url: str = setting(
        SMS_PROVIDER_API["twilio_verify"], env="AUTHGRES_SMS_TWILIO_VERIFY_API_URL", read=Url()
    )
    sms_vonage_api_key: str | None = setting(None, env="AUTHGRES_SMS_VONAGE_API_KEY", read=OptionalText())
    sms_vonage_api_secret: str | None = setting(None, env="AUTHGRES_SMS_VONAGE_API_SECRET", read=OptionalText())
    sms_vonage_from: str | None = setting(None, env="AUTHGRES_SMS_VONAGE_FROM", read=OptionalText())
    sms_vonage_api_url: str = setting(SMS_PROVIDER_API["vonage"], env="AUTHGRES_SMS_VONAGE_API_URL", read=Url())
    sms_messagebird_access_key: str | None = setting(
        None, env="AUTHGRES_SMS_MESSAGEBIRD_ACCESS_KEY", read=OptionalText()
    )
    sms_messagebird_originator: str | None = setting(
        None, env="AUTHGRES_SMS_MESSAGEBIRD_ORIGINATOR", read=OptionalText()
    )
    sms_messagebird_api_url: str = setting(
        SMS_PROVIDER_API["messagebird"], env="AUTHGRES_SMS_MESSAGEBIRD_API_URL", read=Url()
    )
    sms_textlocal_api_key: str | None = setting(None, env="AUTHGRES_SMS_TEXTLOCAL_API_KEY", read=OptionalText())
    sms_textlocal_sender: str | None = setting(None, env="AUTHGRES_SMS_TEXTLOCAL_SENDER", read=OptionalText())
    sms_textlocal_api_url: str = setting(
        SMS_PROVIDER_API["textlocal"], env="AUTHGRES_SMS_TEXTLOCAL_API_URL", read=Url()
    )
    mfa_phone_enroll_enabled: bool = setting(False, env="AUTHGRES_MFA_PHONE_ENROLL_ENABLED", read=Flag(), sql=True)
    mfa_phone_verify_enabled: bool = setting(False, env="AUTHGRES_MFA_PHONE_VERIFY_ENABLED", read=Flag(), sql=True)
    # Third-party sign-in (providers.py, routes/external.py).
    external: dict[str, ExternalProvider] = setting(
        default_factory=dict, env="AUTHGRES_EXTERNAL", read=ExternalProviders()
    )
    external_timeout: float = setting(10.0, env="AUTHGRES_EXTERNAL_TIMEOUT", read=Number())
    manual_linking_enabled: bool = setting(False, env="AUTHGRES_SECURITY_MANUAL_LINKING_ENABLED", read=Flag(), sql=True)
    # Sign in with a wallet (web3.py, POST /token?grant_type=web3); the chains are off unless enabled.
    web3_solana_enabled: bool = setting(False, env="AUTHGRES_EXTERNAL_WEB3_SOLANA_ENABLED", read=Flag())
    web3_ethereum_enabled: bool = setting(False, env="AUTHGRES_EXTERNAL_WEB3_ETHEREUM_ENABLED", read=Flag())
    web3_maximum_validity: int = setting(
        600, env="AUTHGRES_EXTERNAL_WEB3_MAXIMUM_VALIDITY_DURATION", read=Integer(minimum=1)
    )
    # Each wallet sign-in may make a user and needs only a key pair: bounded per client IP, as GoTrue's.
    rate_limit_web3: int = setting(30, env="AUTHGRES_RATE_LIMIT_WEB3", read=Integer(minimum=1), sql=True)

    def __post_init__(self) -> None:
        if self.mailer_test_otp and not (
            self.mailer_test_otp_valid_until and self.mailer_test_otp_valid_until > datetime.now(UTC)
        ):
            raise ConfigError(
                "AUTHGRES_MAILER_TEST_OTP needs AUTHGRES_MAILER_TEST_OTP_VALID_UNTIL, a time in the future"
            )
        if self.sms_test_otp and not (
            self.sms_test_otp_valid_until and self.sms_test_otp_valid_until > datetime.now(UTC)
        ):
            raise ConfigError("AUTHGRES_SMS_TEST_OTP needs AUTHGRES_SMS_TEST_OTP_VALID_UNTIL, a time in the future")
        if self.sms_provider == "twilio_verify" and self.mfa_phone_verify_enabled:
            # Twilio Verify makes the code; a phone factor's challenge keeps its own.
            raise ConfigError("AUTHGRES_MFA_PHONE_VERIFY_ENABLED is not supported with Twilio Verify")
        needed = SMS_PROVIDER_CREDENTIALS[self.sms_provider]
        missing = [f"AUTHGRES_{each.upper()}" for each in needed if not getattr(self, each)]
        if missing:
            raise ConfigError(f"AUTHGRES_SMS_PROVIDER={self.sms_provider} needs {', '.join(missing)}")
        if self.captcha_enabled and not (self.captcha_secret or "").strip():
            raise ConfigError("AUTHGRES_SECURITY_CAPTCHA_ENABLED needs AUTHGRES_SECURITY_CAPTCHA_SECRET")
        if self.captcha_enabled and not self.captcha_siteverify_url.startswith(("https://", "http://")):
            raise ConfigError("AUTHGRES_SECURITY_CAPTCHA_VERIFY_URL must be an http:// or https:// URL")
        for origin in self.webauthn_rp_origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.path.strip("/") or parts.query:
                raise ConfigError(f"AUTHGRES_WEBAUTHN_RP_ORIGINS: {origin!r} is not an origin (https://host[:port])")

    def sql_settings(self) -> dict[str, Any]:
        """The part of the configuration that the SQL functions read (auth.settings), by column."""
        values = {each.column: getattr(self, each.name) for each in declarations(Settings) if each.column}
        values = {column: v.isoformat() if isinstance(v, datetime) else v for column, v in values.items()}
        return {**values, "jwt_issuer": self.issuer}

    @property
    def issuer(self) -> str:
        """The iss of access tokens: AUTHGRES_JWT_ISSUER, else the API's external URL."""
        return self.jwt_issuer or self.external_url

    @property
    def external_url(self) -> str:
        """Where email links point: AUTHGRES_API_EXTERNAL_URL, else this server's own address."""
        return self.api_external_url or f"http://{self.host}:{self.port}"

    @property
    def rp_id(self) -> str:
        """The WebAuthn relying party id: AUTHGRES_WEBAUTHN_RP_ID, else the site URL's host."""
        return self.webauthn_rp_id or urlsplit(self.site_url).hostname or "localhost"

    @property
    def rp_origins(self) -> tuple[str, ...]:
        """The origins WebAuthn ceremonies may come from: AUTHGRES_WEBAUTHN_RP_ORIGINS, else the site URL's."""
        if self.webauthn_rp_origins:
            return tuple(origin.rstrip("/") for origin in self.webauthn_rp_origins)
        parts = urlsplit(self.site_url)
        return (f"{parts.scheme}://{parts.netloc}",)

    @property
    def captcha_siteverify_url(self) -> str:
        """Where captcha tokens are checked: AUTHGRES_SECURITY_CAPTCHA_VERIFY_URL, else the provider's."""
        return self.captcha_verify_url or CAPTCHA_SITEVERIFY[self.captcha_provider]

    def provider(self, name: str) -> ExternalProvider:
        """A provider's configuration (disabled when nothing configures it)."""
        return self.external.get(name) or ExternalProvider()

    def delivery(self, kind: str) -> str:
        """link, code or both: what the email of this kind offers."""
        modes = dict(self.mailer_delivery)
        return modes.get(kind, modes.get("*", DeliveryModes.fallback))


@dataclass(frozen=True)
class CommandSettings(_FromEnvironment):
    """What the commands read besides Settings (`migrate` and `dev` run without a JWT secret)."""

    migrate_database_url: str = setting("", env="AUTHGRES_MIGRATE_DATABASE_URL", read=OrElse("DATABASE_URL"))
    log_level: str = setting("INFO", env="AUTHGRES_LOG_LEVEL", read=Text())
    # `authgres dev` reads it with text as the default (cli.py).
    log_format: str = setting("json", env="AUTHGRES_LOG_FORMAT", read=Choice("json", "text"))
    sql_dir: str = setting(
        default_factory=_checkout_sql, env="AUTHGRES_SQL_DIR", read=OptionalText(), shown="sql/ of the checkout"
    )
    dev_dir: str = setting(".authgres", env="AUTHGRES_DEV_DIR", read=Text())
    dev_pg_port: int = setting(54329, env="AUTHGRES_DEV_PG_PORT", read=Integer(minimum=1))
    workers: int = setting(
        default_factory=lambda: os.cpu_count() or 1, env="AUTHGRES_WORKERS", read=Integer(minimum=1), shown="CPU count"
    )
