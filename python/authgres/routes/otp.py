"""Emails on request: POST /otp, /magiclink, /recover, /resend. Each answers {} whether or not the
address is registered; the throttles are keyed by address, so a 429 does not tell either."""

from aiohttp import web
from psycopg.types.json import Jsonb

from authgres.errors import AuthError, validation_failed
from authgres.http import client_ip, db, object_field, read_json, redirect_to, reply, text_field

routes = web.RouteTableDef()

PHONE_DISABLED = AuthError(400, "phone_provider_disabled", "Unsupported phone provider")


def _email(body: dict[str, object], missing: str) -> str:
    if text_field(body, "phone"):
        raise PHONE_DISABLED
    email = text_field(body, "email")
    if not email:
        raise validation_failed(missing)
    return email


async def _send_magic_link(request: web.Request, body: dict[str, object], email: str, create_user: object) -> None:
    if not isinstance(create_user, bool):
        raise validation_failed("create_user must be a boolean")
    await db(request).call(
        "send_magic_link",
        email=email,
        create_user=create_user,
        data=Jsonb(object_field(body, "data") or {}),
        redirect_to=redirect_to(request),
        ip=client_ip(request),
    )


@routes.post("/otp")
async def otp(request: web.Request) -> web.Response:
    body = await read_json(request)
    if text_field(body, "email") and text_field(body, "phone"):
        raise validation_failed("Only an email address or phone number should be provided")
    email = _email(body, "One of email or phone must be set")
    await _send_magic_link(request, body, email, body.get("create_user", True))
    return reply({})


@routes.post("/magiclink")
async def magiclink(request: web.Request) -> web.Response:
    body = await read_json(request)
    await _send_magic_link(request, body, _email(body, "An email address is required"), True)
    return reply({})


@routes.post("/recover")
async def recover(request: web.Request) -> web.Response:
    body = await read_json(request)
    await db(request).call(
        "send_recovery",
        email=_email(body, "Password recovery requires an email"),
        redirect_to=redirect_to(request),
        ip=client_ip(request),
    )
    return reply({})


@routes.post("/resend")
async def resend(request: web.Request) -> web.Response:
    body = await read_json(request)
    kind = text_field(body, "type")
    if kind in ("sms", "phone_change"):
        raise PHONE_DISABLED
    if kind not in ("signup", "email_change"):
        raise validation_failed("Missing one of these types: signup, email_change, sms, phone_change")
    await db(request).call(
        "resend",
        type=kind,
        email=_email(body, "Type provided requires an email address"),
        redirect_to=redirect_to(request),
        ip=client_ip(request),
    )
    return reply({})
