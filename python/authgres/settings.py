"""Configuration, read once from the environment (every variable is documented in the README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str
    jwt_secret: str
    host: str = "127.0.0.1"
    port: int = 9999
    site_url: str = "http://localhost:3000"
    jwt_exp: int = 3600
    jwt_aud: str = "authenticated"
    jwt_issuer: str | None = None
    jwt_default_group: str = "authenticated"
    mailer_autoconfirm: bool = False
    disable_signup: bool = False
    anonymous_users_enabled: bool = False
    refresh_token_reuse_interval: int = 10
    refresh_token_replay_revokes: str = "session"
    password_min_length: int = 6
    password_required_characters: tuple[str, ...] = ()
    argon2_memory_kib: int = 19456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    hash_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    api_external_url: str = ""
    uri_allow_list: tuple[str, ...] = ()
    mailer_otp_exp: int = 3600
    mailer_otp_length: int = 6
    mailer_otp_max_attempts: int = 5
    mailer_secure_email_change: bool = True
    mailer_link_confirm_page: bool = False
    mailer_templates: str | None = None
    mailer_delivery: tuple[tuple[str, str], ...] = ()
    mailer_max_attempts: int = 8
    mailer_retry_base_seconds: float = 5.0
    mailer_sweep_seconds: float = 5.0
    smtp_max_frequency: int = 60
    rate_limit_email_per_address: int = 30
    rate_limit_email_per_ip: int = 100
    secure_password_change: bool = False
    hook_custom_access_token: str | None = None
    hook_before_user_created: str | None = None
    hook_password_verification_attempt: str | None = None
    hook_send_email: str | None = None
    db_statement_timeout_ms: int = 10000
    audit_retention_days: int = 90
    prune_interval_seconds: float = 600.0
    sessions_timebox: int | None = None
    sessions_inactivity_timeout: int | None = None
    sessions_single_per_user: bool = False
    mfa_challenge_expiry: int = 300
    mfa_max_attempts: int = 5
    mfa_max_enrolled_factors: int = 10
    mfa_email: str = "off"
    mfa_email_strict: bool = False
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_pass: str | None = None
    smtp_sender: str = "authgres@localhost"
    smtp_tls: str = "starttls"
    db_pool_min: int = 2
    # Connections beyond a couple per core only queue inside PostgreSQL: measured, 4 beat 8 and 16 here.
    db_pool_max: int = field(default_factory=lambda: max(4, 2 * (os.cpu_count() or 1)))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        database_url = env.get("DATABASE_URL", "")
        if not database_url:
            raise ConfigError("DATABASE_URL is required")
        jwt_secret = env.get("AUTHGRES_JWT_SECRET", "")
        if len(jwt_secret) < 32:
            raise ConfigError("AUTHGRES_JWT_SECRET is required and must be at least 32 characters")
        return cls(
            database_url=database_url,
            jwt_secret=jwt_secret,
            host=env.get("AUTHGRES_HOST", cls.host),
            port=_int(env, "AUTHGRES_PORT", cls.port),
            site_url=env.get("AUTHGRES_SITE_URL", cls.site_url),
            jwt_exp=_int(env, "AUTHGRES_JWT_EXP", cls.jwt_exp, minimum=1),
            jwt_aud=env.get("AUTHGRES_JWT_AUD", cls.jwt_aud),
            jwt_issuer=env.get("AUTHGRES_JWT_ISSUER") or None,
            jwt_default_group=env.get("AUTHGRES_JWT_DEFAULT_GROUP_NAME", cls.jwt_default_group),
            mailer_autoconfirm=_bool(env, "AUTHGRES_MAILER_AUTOCONFIRM", cls.mailer_autoconfirm),
            disable_signup=_bool(env, "AUTHGRES_DISABLE_SIGNUP", cls.disable_signup),
            anonymous_users_enabled=_bool(
                env, "AUTHGRES_EXTERNAL_ANONYMOUS_USERS_ENABLED", cls.anonymous_users_enabled
            ),
            refresh_token_reuse_interval=_int(
                env, "AUTHGRES_REFRESH_TOKEN_REUSE_INTERVAL", cls.refresh_token_reuse_interval
            ),
            refresh_token_replay_revokes=_choice(
                env, "AUTHGRES_REFRESH_TOKEN_REPLAY_REVOKES", cls.refresh_token_replay_revokes, ("session", "user")
            ),
            # GoTrue raises anything below 6 to 6.
            password_min_length=max(6, _int(env, "AUTHGRES_PASSWORD_MIN_LENGTH", cls.password_min_length)),
            password_required_characters=_character_sets(env.get("AUTHGRES_PASSWORD_REQUIRED_CHARACTERS", "")),
            argon2_memory_kib=_int(env, "AUTHGRES_ARGON2_MEMORY_KIB", cls.argon2_memory_kib, minimum=8),
            argon2_time_cost=_int(env, "AUTHGRES_ARGON2_TIME_COST", cls.argon2_time_cost, minimum=1),
            argon2_parallelism=_int(env, "AUTHGRES_ARGON2_PARALLELISM", cls.argon2_parallelism, minimum=1),
            hash_workers=_int(env, "AUTHGRES_HASH_WORKERS", os.cpu_count() or 1, minimum=1),
            api_external_url=env.get("AUTHGRES_API_EXTERNAL_URL", "").rstrip("/"),
            uri_allow_list=tuple(u.strip() for u in env.get("AUTHGRES_URI_ALLOW_LIST", "").split(",") if u.strip()),
            mailer_otp_exp=_int(env, "AUTHGRES_MAILER_OTP_EXP", cls.mailer_otp_exp, minimum=1),
            mailer_otp_length=_otp_length(env),
            mailer_otp_max_attempts=_int(env, "AUTHGRES_MAILER_OTP_MAX_ATTEMPTS", cls.mailer_otp_max_attempts, 1),
            mailer_secure_email_change=_bool(
                env, "AUTHGRES_MAILER_SECURE_EMAIL_CHANGE_ENABLED", cls.mailer_secure_email_change
            ),
            mailer_link_confirm_page=_bool(env, "AUTHGRES_MAILER_LINK_CONFIRM_PAGE", cls.mailer_link_confirm_page),
            mailer_templates=env.get("AUTHGRES_MAILER_TEMPLATES") or None,
            mailer_delivery=_delivery_modes(env),
            mailer_max_attempts=_int(env, "AUTHGRES_MAILER_MAX_ATTEMPTS", cls.mailer_max_attempts, minimum=1),
            smtp_max_frequency=_int(env, "AUTHGRES_SMTP_MAX_FREQUENCY", cls.smtp_max_frequency),
            rate_limit_email_per_address=_int(
                env, "AUTHGRES_RATE_LIMIT_EMAIL_PER_ADDRESS", cls.rate_limit_email_per_address
            ),
            rate_limit_email_per_ip=_int(env, "AUTHGRES_RATE_LIMIT_EMAIL_PER_IP", cls.rate_limit_email_per_ip),
            secure_password_change=_bool(env, "AUTHGRES_SECURE_PASSWORD_CHANGE", cls.secure_password_change),
            hook_custom_access_token=env.get("AUTHGRES_HOOK_CUSTOM_ACCESS_TOKEN") or None,
            hook_before_user_created=env.get("AUTHGRES_HOOK_BEFORE_USER_CREATED") or None,
            hook_password_verification_attempt=env.get("AUTHGRES_HOOK_PASSWORD_VERIFICATION_ATTEMPT") or None,
            hook_send_email=env.get("AUTHGRES_HOOK_SEND_EMAIL") or None,
            db_statement_timeout_ms=_int(env, "AUTHGRES_DB_STATEMENT_TIMEOUT_MS", cls.db_statement_timeout_ms, 1),
            audit_retention_days=_int(env, "AUTHGRES_AUDIT_RETENTION_DAYS", cls.audit_retention_days),
            sessions_timebox=_int(env, "AUTHGRES_SESSIONS_TIMEBOX", 0) or None,
            sessions_inactivity_timeout=_int(env, "AUTHGRES_SESSIONS_INACTIVITY_TIMEOUT", 0) or None,
            sessions_single_per_user=_bool(env, "AUTHGRES_SESSIONS_SINGLE_PER_USER", cls.sessions_single_per_user),
            mfa_challenge_expiry=_int(env, "AUTHGRES_MFA_CHALLENGE_EXPIRY_DURATION", cls.mfa_challenge_expiry, 1),
            mfa_max_attempts=_int(env, "AUTHGRES_MFA_MAX_ATTEMPTS", cls.mfa_max_attempts, minimum=1),
            mfa_max_enrolled_factors=_int(env, "AUTHGRES_MFA_MAX_ENROLLED_FACTORS", cls.mfa_max_enrolled_factors, 1),
            mfa_email=_choice(env, "AUTHGRES_MFA_EMAIL", cls.mfa_email, ("off", "optional", "required")),
            mfa_email_strict=_bool(env, "AUTHGRES_MFA_EMAIL_STRICT", cls.mfa_email_strict),
            smtp_host=env.get("AUTHGRES_SMTP_HOST") or None,
            smtp_port=_int(env, "AUTHGRES_SMTP_PORT", cls.smtp_port, minimum=1),
            smtp_user=env.get("AUTHGRES_SMTP_USER") or None,
            smtp_pass=env.get("AUTHGRES_SMTP_PASS") or None,
            smtp_sender=env.get("AUTHGRES_SMTP_SENDER", cls.smtp_sender),
            smtp_tls=_choice(env, "AUTHGRES_SMTP_TLS", cls.smtp_tls, ("none", "starttls", "tls")),
            db_pool_min=_int(env, "AUTHGRES_DB_POOL_MIN", cls.db_pool_min, minimum=1),
            db_pool_max=_int(env, "AUTHGRES_DB_POOL_MAX", max(4, 2 * (os.cpu_count() or 1)), minimum=1),
        )

    def sql_settings(self) -> dict[str, Any]:
        """The part of the configuration that the SQL functions read (auth.settings)."""
        return {
            "site_url": self.site_url,
            "jwt_exp": self.jwt_exp,
            "jwt_aud": self.jwt_aud,
            "jwt_issuer": self.jwt_issuer,
            "jwt_default_role": self.jwt_default_group,
            "mailer_autoconfirm": self.mailer_autoconfirm,
            "disable_signup": self.disable_signup,
            "anonymous_users_enabled": self.anonymous_users_enabled,
            "refresh_token_reuse_interval": self.refresh_token_reuse_interval,
            "refresh_token_replay_revokes": self.refresh_token_replay_revokes,
            "mailer_otp_exp": self.mailer_otp_exp,
            "mailer_otp_length": self.mailer_otp_length,
            "mailer_otp_max_attempts": self.mailer_otp_max_attempts,
            "mailer_secure_email_change": self.mailer_secure_email_change,
            "smtp_max_frequency": self.smtp_max_frequency,
            "rate_limit_email_per_address": self.rate_limit_email_per_address,
            "rate_limit_email_per_ip": self.rate_limit_email_per_ip,
            "secure_password_change": self.secure_password_change,
            "hook_custom_access_token": self.hook_custom_access_token,
            "hook_before_user_created": self.hook_before_user_created,
            "hook_password_verification_attempt": self.hook_password_verification_attempt,
            "hook_send_email": self.hook_send_email,
            "audit_retention_days": self.audit_retention_days,
            "sessions_timebox": self.sessions_timebox,
            "sessions_inactivity_timeout": self.sessions_inactivity_timeout,
            "sessions_single_per_user": self.sessions_single_per_user,
            "mfa_challenge_expiry": self.mfa_challenge_expiry,
            "mfa_max_attempts": self.mfa_max_attempts,
            "mfa_max_enrolled_factors": self.mfa_max_enrolled_factors,
            "mfa_email": self.mfa_email,
            "mfa_email_strict": self.mfa_email_strict,
        }

    @property
    def external_url(self) -> str:
        """Where email links point: AUTHGRES_API_EXTERNAL_URL, else this server's own address."""
        return self.api_external_url or f"http://{self.host}:{self.port}"

    def delivery(self, kind: str) -> str:
        """link, code or both: what the email of this kind offers."""
        return dict(self.mailer_delivery).get(kind, dict(self.mailer_delivery).get("*", "both"))


EMAIL_KINDS = (
    "confirmation",
    "invite",
    "magiclink",
    "recovery",
    "email_change_current",
    "email_change_new",
    "reauthentication",
)


def _otp_length(env: Mapping[str, str]) -> int:
    length = _int(env, "AUTHGRES_MAILER_OTP_LENGTH", 6)
    if not 6 <= length <= 10:
        raise ConfigError("AUTHGRES_MAILER_OTP_LENGTH must be between 6 and 10")
    return length


def _delivery_modes(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """AUTHGRES_MAILER_DELIVERY for every kind, AUTHGRES_MAILER_DELIVERY_<KIND> for one."""
    modes = [("*", _choice(env, "AUTHGRES_MAILER_DELIVERY", "both", ("both", "link", "code")))]
    for kind in EMAIL_KINDS:
        name = f"AUTHGRES_MAILER_DELIVERY_{kind.upper()}"
        if name in env:
            modes.append((kind, _choice(env, name, "both", ("both", "link", "code"))))
    return tuple(modes)


def _character_sets(raw: str) -> tuple[str, ...]:
    """GoTrue's format: sets separated by ':', with '\\:' standing for a literal colon."""
    if not raw:
        return ()
    placeholder = "\x00"
    return tuple(part.replace(placeholder, ":") for part in raw.replace("\\:", placeholder).split(":") if part)
