"""MFA: POST/DELETE /factors, challenge and verify, recovery codes; the admin's view of factors."""

import base64
import json
import uuid
from urllib.parse import quote, urlencode, urlsplit

import segno
from aiohttp import web

from authgres.errors import AuthError, validation_failed
from authgres.http import (
    bearer_token,
    client_ip,
    db,
    path_uuid,
    read_json,
    reply,
    settings,
    text_field,
    user_agent,
)

routes = web.RouteTableDef()


def _totp(secret_hex: str, issuer: str, account: str) -> dict[str, str]:
    secret = base64.b32encode(bytes.fromhex(secret_hex)).decode().rstrip("=")
    query = urlencode({"algorithm": "SHA1", "digits": 6, "issuer": issuer, "period": 30, "secret": secret})
    uri = f"otpauth://totp/{quote(issuer)}:{quote(account)}?{query}"
    # Raw SVG markup: the clients prepend "data:image/svg+xml;utf-8," themselves.
    qr_code = segno.make(uri, error="m").svg_inline(scale=4)
    return {"qr_code": qr_code, "secret": secret, "uri": uri}


@routes.post("/factors")
async def enroll(request: web.Request) -> web.Response:
    body = await read_json(request)
    factor_type = text_field(body, "factor_type")
    if factor_type == "phone":
        raise AuthError(422, "mfa_phone_enroll_not_enabled", "MFA enroll is disabled for Phone")
    enrolled = json.loads(
        await db(request).call(
            "enroll_factor",
            access_token=bearer_token(request),
            factor_type=factor_type or "",
            friendly_name=text_field(body, "friendly_name"),
            ip=client_ip(request),
        )
    )
    if enrolled["type"] == "totp":
        issuer = text_field(body, "issuer") or urlsplit(settings(request).site_url).hostname or "authgres"
        enrolled["totp"] = _totp(enrolled.pop("secret"), issuer, enrolled.pop("account") or "")
    enrolled["phone"] = ""
    return reply(enrolled)


@routes.post("/factors/{factor_id}/challenge")
async def challenge(request: web.Request) -> web.Response:
    result = await db(request).call(
        "challenge_factor",
        access_token=bearer_token(request),
        factor_id=path_uuid(request, "factor_id"),
        ip=client_ip(request),
    )
    return reply(result)


@routes.post("/factors/{factor_id}/verify")
async def verify(request: web.Request) -> web.Response:
    body = await read_json(request)
    challenge_id = text_field(body, "challenge_id")
    if challenge_id is not None:
        try:
            challenge_id = str(uuid.UUID(challenge_id))
        except ValueError:
            raise validation_failed("challenge_id must be an UUID") from None
    session = await db(request).call(
        "verify_factor",
        access_token=bearer_token(request),
        factor_id=path_uuid(request, "factor_id"),
        challenge_id=challenge_id,
        code=text_field(body, "code") or "",
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    return reply(session)


@routes.delete("/factors/{factor_id}")
async def unenroll(request: web.Request) -> web.Response:
    result = await db(request).call(
        "unenroll_factor",
        access_token=bearer_token(request),
        factor_id=path_uuid(request, "factor_id"),
        ip=client_ip(request),
    )
    return reply(result)


@routes.get("/factors/recovery_codes")
async def recovery_codes_left(request: web.Request) -> web.Response:
    return reply(await db(request).call("recovery_codes", access_token=bearer_token(request)))


@routes.post("/factors/recovery_codes")
async def regenerate_recovery_codes(request: web.Request) -> web.Response:
    result = await db(request).call(
        "recovery_codes", access_token=bearer_token(request), regenerate=True, ip=client_ip(request)
    )
    return reply(result)


@routes.get("/admin/users/{user_id}/factors")
async def admin_list_factors(request: web.Request) -> web.Response:
    result = await db(request).call(
        "admin_list_factors", admin_token=bearer_token(request), user_id=path_uuid(request, "user_id")
    )
    return reply(result)


@routes.delete("/admin/users/{user_id}/factors/{factor_id}")
async def admin_delete_factor(request: web.Request) -> web.Response:
    result = await db(request).call(
        "admin_delete_factor",
        admin_token=bearer_token(request),
        user_id=path_uuid(request, "user_id"),
        factor_id=path_uuid(request, "factor_id"),
        ip=client_ip(request),
    )
    return reply(result)
