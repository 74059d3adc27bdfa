"""Errors in GoTrue's wire format, and the one table from SQLSTATE to (HTTP status, error_code)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from authgres.logs import REQUEST_ID

log = logging.getLogger("authgres")

API_VERSION_HEADER = "X-Supabase-Api-Version"
API_VERSION_2024 = "2024-01-01"

# The SQLSTATEs sql/functions raise (class AU), and what the client is told. AUXnn are server faults
# (a missing signing key): deliberately absent, so they are logged and answered 500 unexpected_failure.
# tests/sql/test_seam.py checks that this table and the SQL agree.
SQLSTATE_ERRORS: dict[str, tuple[int, str]] = {
    "AUV01": (400, "validation_failed"),
    "AUV02": (422, "validation_failed"),
    "AUJ01": (403, "bad_jwt"),
    "AUJ02": (400, "bad_jwt"),
    "AUJ03": (403, "user_not_found"),
    "AUJ04": (403, "session_not_found"),
    "AUJ05": (403, "user_banned"),
    "AUJ06": (403, "unexpected_audience"),
    "AUR01": (400, "refresh_token_not_found"),
    "AUR02": (400, "refresh_token_already_used"),
    "AUR03": (400, "session_not_found"),
    "AUR04": (400, "session_expired"),
    "AUR05": (400, "user_banned"),
    "AUR06": (400, "validation_failed"),
    "AUS01": (422, "user_already_exists"),
    "AUS02": (422, "signup_disabled"),
    "AUS03": (422, "anonymous_provider_disabled"),
    "AUS04": (400, "email_not_confirmed"),
    "AUS05": (400, "invalid_credentials"),
    "AUS06": (400, "user_banned"),
    "AUO01": (403, "otp_expired"),
    "AUL01": (429, "over_email_send_rate_limit"),
    "AUL02": (429, "over_request_rate_limit"),
    "AUE01": (422, "email_exists"),
    "AUE02": (400, "reauthentication_needed"),
    "AUE03": (422, "reauthentication_not_valid"),
    "AUE04": (422, "email_not_confirmed"),
    "AUM01": (404, "mfa_factor_not_found"),
    "AUM02": (403, "insufficient_aal"),
    "AUM03": (422, "insufficient_aal"),
    "AUM04": (422, "mfa_factor_name_conflict"),
    "AUM05": (422, "too_many_enrolled_mfa_factors"),
    "AUM06": (422, "mfa_verification_failed"),
    "AUM07": (422, "mfa_challenge_expired"),
    "AUM08": (422, "mfa_ip_address_mismatch"),
    "AUM09": (403, "no_authorization"),
    "AUM10": (422, "mfa_code_already_used"),
    "AUA01": (403, "not_admin"),
    "AUA02": (404, "user_not_found"),
    "AUA03": (422, "email_exists"),
    "AUA04": (400, "validation_failed"),
    "AUH01": (500, "unexpected_failure"),
    "AUH02": (504, "hook_timeout"),
    "AUH03": (400, "validation_failed"),
    "AUK01": (404, "api_key_not_found"),
    "AUK02": (403, "session_required"),
    "AUF01": (404, "flow_state_not_found"),
    "AUF02": (422, "flow_state_expired"),
    "AUF03": (400, "bad_code_verifier"),
    # Phone (sql/functions/phone.sql).
    "AUL03": (429, "over_sms_send_rate_limit"),
    "AUP02": (400, "phone_not_confirmed"),
    "AUP03": (422, "phone_exists"),
    "AUA05": (422, "phone_exists"),
    "AUM11": (422, "mfa_phone_enroll_not_enabled"),
    "AUM12": (422, "mfa_phone_verify_not_enabled"),
    # Passkeys and the WebAuthn factor (sql/functions/passkeys.sql, mfa.sql).
    "AUM13": (422, "mfa_webauthn_enroll_not_enabled"),
    "AUM14": (422, "mfa_webauthn_verify_not_enabled"),
    # Recovery codes (sql/functions/mfa.sql), as auth-js's mfa.recoveryCodes names their failures.
    "AUM15": (422, "mfa_recovery_codes_enroll_not_enabled"),
    "AUM16": (422, "mfa_recovery_codes_verify_not_enabled"),
    "AUM17": (422, "mfa_recovery_codes_sole_factor"),
    "AUM18": (422, "mfa_verified_factor_exists"),
    "AUM19": (429, "mfa_recovery_codes_locked"),
    "AUW01": (400, "webauthn_challenge_not_found"),
    "AUW02": (400, "webauthn_challenge_expired"),
    "AUW03": (400, "webauthn_verification_failed"),
    "AUW04": (422, "too_many_passkeys"),
    "AUW05": (422, "webauthn_credential_exists"),
    "AUW06": (404, "validation_failed"),
    "AUW07": (422, "single_identity_not_deletable"),
    "AUI01": (422, "identity_already_exists"),
    "AUI02": (422, "single_identity_not_deletable"),
    "AUI03": (404, "manual_linking_disabled"),
    "AUI04": (422, "identity_not_found"),
    "AUI05": (400, "bad_oauth_state"),
    "AUI06": (400, "bad_oauth_state"),  # the flow was started in another browser
    # Sign in with a wallet: a signed message works once (answered as GoTrue's invalid_grant, routes/token.py).
    "AUI07": (400, "invalid_credentials"),
}
# The SQLSTATEs GoTrue answers as an OAuth error of a grant (see oauth_error): the OAuth error named.
OAUTH_SQLSTATES: dict[str, str] = {"AUI07": "invalid_grant"}


class AuthError(Exception):
    """A failure the client is told about, in GoTrue's shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    @classmethod
    def from_sqlstate(cls, sqlstate: str, message: str, detail: str | None = None) -> AuthError:
        status, code = SQLSTATE_ERRORS[sqlstate]
        if sqlstate in OAUTH_SQLSTATES:
            return oauth_error(OAUTH_SQLSTATES[sqlstate], message, code)
        # Rate limits say in their detail how many seconds to wait.
        headers = {"Retry-After": detail} if status == 429 and detail else None
        return cls(status, code, message, headers=headers)


def oauth_error(error: str, message: str, code: str) -> AuthError:
    """GoTrue's refusal of a grant in OAuth's shape (always 400, with error and error_description), which
    also carries this service's code and message."""
    return AuthError(400, code, message, extra={"error": error, "error_description": message})


def validation_failed(message: str, status: int = 400) -> AuthError:
    return AuthError(status, "validation_failed", message)


def invalid_credentials() -> AuthError:
    """A wrong password (or no such user: the answer is the same), as GoTrue words it."""
    return AuthError(400, "invalid_credentials", "Invalid login credentials")


def captcha_failed(message: str, status: int = 400) -> AuthError:
    """A captcha that is missing or refused (400), or that could not be checked (503: captcha.py)."""
    return AuthError(status, "captcha_failed", message)


def _body(request: web.Request, error: AuthError, error_id: str | None) -> dict[str, Any]:
    if request.headers.get(API_VERSION_HEADER, "") >= API_VERSION_2024:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
    else:
        body = {"code": error.status, "error_code": error.code, "msg": error.message}
        if error_id:
            body["error_id"] = error_id
    body.update(error.extra)
    return body


def error_response(request: web.Request, error: AuthError, error_id: str | None = None) -> web.Response:
    response = web.Response(
        status=error.status,
        text=json.dumps(_body(request, error, error_id)),
        content_type="application/json",
    )
    response.headers.update(error.headers)
    response.headers["x-sb-error-code"] = error.code
    if request.headers.get(API_VERSION_HEADER, "") >= API_VERSION_2024:
        response.headers[API_VERSION_HEADER] = API_VERSION_2024
    return response


_HTTP_ERRORS: dict[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_entity_too_large",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AuthError as error:
        return error_response(request, error)
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        code = _HTTP_ERRORS.get(http_error.status, "unexpected_failure")
        allow = {"Allow": http_error.headers["Allow"]} if "Allow" in http_error.headers else None  # 405's
        return error_response(request, AuthError(http_error.status, code, http_error.reason, headers=allow))
    except Exception:
        error_id = REQUEST_ID.get() or str(uuid.uuid4())  # GoTrue's error_id is the request's id too
        log.exception("unexpected failure %s on %s %s", error_id, request.method, request.path)
        failure = AuthError(
            500, "unexpected_failure", "Unexpected failure, please check server logs for more information"
        )
        return error_response(request, failure, error_id)
