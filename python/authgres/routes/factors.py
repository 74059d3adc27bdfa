"""MFA: POST/DELETE /factors, challenge and verify, recovery codes; the admin's view of factors."""

import base64
import json
import uuid
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

import segno
from aiohttp import web
from msgspec import Meta

from authgres import passkeys
from authgres.errors import AuthError, validation_failed
from authgres.http import Bearer, client_ip, db, reply, settings, sms, user_agent
from authgres.inputs import Body, Channel, FactorPath, JsonObject, Text, UserFactorPath, UserPath, declared

routes = web.RouteTableDef()


class EnrollRequest(Body):
    factor_type: Annotated[Text, Meta(extra_json_schema={"enum": ["totp", "email", "phone", "webauthn"]})] | None = None
    friendly_name: Text | None = None
    phone: Annotated[Text, Meta(description="A phone factor's number (AUTHGRES_MFA_PHONE_ENROLL_ENABLED)")] | None = (
        None
    )
    issuer: (
        Annotated[Text, Meta(description="TOTP issuer shown by authenticator apps (default: the site's host)")] | None
    ) = None


class ChallengeRequest(Body):
    """auth-js sends the whole params object (factorId too); what else is there is ignored."""

    channel: Channel | None = None


class WebAuthnAnswer(Body):
    """A WebAuthn factor's answer, as auth-js's mfa.webauthn sends it (its rpId and rpOrigins are ignored:
    the relying party is the server's configuration)."""

    type: Annotated[Text, Meta(extra_json_schema={"enum": ["create", "request"]})] | None = None
    credential_response: (
        Annotated[JsonObject, Meta(description="The browser's PublicKeyCredential, serialised as JSON")] | None
    ) = None


class VerifyFactorRequest(Body):
    """auth-js sends the whole params object (factorId too); what else is there is ignored."""

    challenge_id: Annotated[uuid.UUID, Meta(description="Optional for an email factor")] | None = None
    code: Annotated[Text, Meta(description="The TOTP or emailed code, or a recovery code")] | None = None
    webauthn: Annotated[WebAuthnAnswer, Meta(description="A WebAuthn factor's answer, instead of code")] | None = None


def _totp(secret_hex: str, issuer: str, account: str) -> dict[str, str]:
    secret = base64.b32encode(bytes.fromhex(secret_hex)).decode().rstrip("=")
    query = urlencode({"algorithm": "SHA1", "digits": 6, "issuer": issuer, "period": 30, "secret": secret})
    uri = f"otpauth://totp/{quote(issuer)}:{quote(account)}?{query}"
    # Raw SVG markup: the clients prepend "data:image/svg+xml;utf-8," themselves.
    qr_code = segno.make(uri, error="m").svg_inline(scale=4)
    return {"qr_code": qr_code, "secret": secret, "uri": uri}


class RecoveryCodesRequest(Body):
    friendly_name: Annotated[Text, Meta(description="The factor's name (default: Recovery codes)")] | None = None


class RecoveryCodeRequest(Body):
    code: Annotated[Text, Meta(description="A recovery code as typed: case, spaces and - are ignored")] | None = None


# auth-js's mfa.recoveryCodes (experimental there: createClient(..., {auth: {experimental: {recoveryCodes: true}}})).
@routes.get("/factors/recovery-codes")
@declared
async def recovery_codes_status(request: web.Request, token: Bearer) -> web.Response:
    return reply(await db(request).call("recovery_codes_status", access_token=token))


@routes.post("/factors/recovery-codes")
@declared
async def generate_recovery_codes(request: web.Request, token: Bearer, body: RecoveryCodesRequest) -> web.Response:
    result = await db(request).call(
        "issue_recovery_codes",
        access_token=token,
        mode="generate",
        friendly_name=body.friendly_name,
        ip=client_ip(request),
    )
    return reply(result)


@routes.post("/factors/recovery-codes/regenerate")
@declared
async def regenerate_recovery_codes(request: web.Request, token: Bearer) -> web.Response:
    result = await db(request).call(
        "issue_recovery_codes", access_token=token, mode="regenerate", ip=client_ip(request)
    )
    return reply(result)


@routes.post("/factors/recovery-codes/verify")
@declared
async def verify_recovery_code(request: web.Request, token: Bearer, body: RecoveryCodeRequest) -> web.Response:
    session = await db(request).call(
        "verify_recovery_code",
        access_token=token,
        code=body.code or "",
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    return reply(session)


@routes.delete("/factors/recovery-codes")
@declared
async def unenroll_recovery_codes(request: web.Request, token: Bearer) -> web.Response:
    return reply(await db(request).call("unenroll_recovery_codes", access_token=token, ip=client_ip(request)))


# authgres's first recovery-codes endpoints, kept for the clients written against them.
@routes.get("/factors/recovery_codes")
@declared
async def recovery_codes_left(request: web.Request, token: Bearer) -> web.Response:
    try:
        status = json.loads(await db(request).call("recovery_codes_status", access_token=token))
    except AuthError as error:
        if error.code != "mfa_factor_not_found":
            raise
        return reply({"remaining": 0})
    return reply({"remaining": status["remaining"]})


@routes.post("/factors/recovery_codes")
@declared
async def replace_recovery_codes(request: web.Request, token: Bearer) -> web.Response:
    result = await db(request).call("issue_recovery_codes", access_token=token, mode="replace", ip=client_ip(request))
    return reply({"recovery_codes": json.loads(result)["codes"]})


@routes.post("/factors")
@declared
async def enroll(request: web.Request, token: Bearer, body: EnrollRequest) -> web.Response:
    enrolled = json.loads(
        await db(request).call(
            "enroll_factor",
            access_token=token,
            factor_type=body.factor_type or "",
            friendly_name=body.friendly_name or None,
            ip=client_ip(request),
            phone=body.phone,
        )
    )
    if enrolled["type"] == "totp":
        issuer = body.issuer or urlsplit(settings(request).site_url).hostname or "authgres"
        enrolled["totp"] = _totp(enrolled.pop("secret"), issuer, enrolled.pop("account") or "")
    enrolled.setdefault("phone", "")
    return reply(enrolled)


@routes.post("/factors/{factor_id}/challenge")
@declared
async def challenge(request: web.Request, path: FactorPath, token: Bearer, body: ChallengeRequest) -> web.Response:
    result = await db(request).call(
        "challenge_factor",
        access_token=token,
        factor_id=str(path.factor_id),
        ip=client_ip(request),
        channel=body.channel,
    )
    if '"sms"' in result:  # a phone factor's code, texted before the answer
        return reply(await sms(request).send_now(json.loads(result)))
    if '"webauthn"' not in result:
        return reply(result)
    challenge = json.loads(result)
    state = challenge["webauthn"]
    if state["type"] == "create":
        options = passkeys.registration_options(settings(request), state, state["credentials"], passkey=False)
    else:
        options = passkeys.authentication_options(
            settings(request), state["challenge"], state["credentials"], passkey=False
        )
    challenge["webauthn"] = {"type": state["type"], "credential_options": {"publicKey": options}}
    return reply(challenge)


@routes.post("/factors/{factor_id}/verify")
@declared
async def verify(request: web.Request, path: FactorPath, token: Bearer, body: VerifyFactorRequest) -> web.Response:
    if body.webauthn is not None:
        return reply(await _verify_webauthn(request, path, token, body, body.webauthn))
    session = await db(request).call(
        "verify_factor",
        access_token=token,
        factor_id=str(path.factor_id),
        challenge_id=str(body.challenge_id) if body.challenge_id else None,
        code=body.code or "",
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    return reply(session)


async def _verify_webauthn(
    request: web.Request, path: FactorPath, token: Bearer, body: VerifyFactorRequest, answer: WebAuthnAnswer
) -> Any:
    if answer.type not in ("create", "request"):
        raise validation_failed("WebAuthn type must be create or request")
    if answer.credential_response is None:
        raise validation_failed("credential_response required")
    if body.challenge_id is None:
        raise validation_failed("challenge_id is required")
    config, failed = settings(request), passkeys.factor_failed
    if answer.type == "create":
        registered = passkeys.verify_registration(
            config, answer.credential_response, require_user_verification=False, failure=failed
        )
        proof: dict[str, Any] = registered.params()
    else:
        parsed = passkeys.assertion_credential(answer.credential_response, failure=failed)
        public_key = await db(request).call("webauthn_public_key", credential_id=parsed.raw_id)
        asserted = passkeys.verify_assertion(
            config, parsed, public_key, require_user_verification=False, failure=failed
        )
        proof = {
            "challenge": asserted.challenge,
            "credential_id": asserted.credential_id,
            "sign_count": asserted.sign_count,
            "backed_up": asserted.backed_up,
        }
    return await db(request).call(
        "verify_webauthn_factor",
        access_token=token,
        factor_id=str(path.factor_id),
        challenge_id=str(body.challenge_id),
        type=answer.type,
        **proof,
        user_agent=user_agent(request),
        ip=client_ip(request),
    )


@routes.delete("/factors/{factor_id}")
@declared
async def unenroll(request: web.Request, path: FactorPath, token: Bearer) -> web.Response:
    result = await db(request).call(
        "unenroll_factor", access_token=token, factor_id=str(path.factor_id), ip=client_ip(request)
    )
    return reply(result)


@routes.get("/admin/users/{user_id}/factors")
@declared
async def admin_list_factors(request: web.Request, path: UserPath, token: Bearer) -> web.Response:
    result = await db(request).call("admin_list_factors", admin_token=token, user_id=str(path.user_id))
    return reply(result)


@routes.delete("/admin/users/{user_id}/factors/{factor_id}")
@declared
async def admin_delete_factor(request: web.Request, path: UserFactorPath, token: Bearer) -> web.Response:
    result = await db(request).call(
        "admin_delete_factor",
        admin_token=token,
        user_id=str(path.user_id),
        factor_id=str(path.factor_id),
        ip=client_ip(request),
    )
    return reply(result)
