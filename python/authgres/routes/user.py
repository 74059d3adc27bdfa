"""GET /user and PUT /user: the signed-in user."""

from aiohttp import web
from psycopg.types.json import Jsonb

from authgres.errors import AuthError
from authgres.http import (
    bearer_token,
    client_ip,
    db,
    object_field,
    passwords,
    read_json,
    redirect_to,
    reply,
    text_field,
)

routes = web.RouteTableDef()


@routes.get("/user")
async def get_user(request: web.Request) -> web.Response:
    return reply(await db(request).call_batched("get_users", bearer_token(request)))


@routes.put("/user")
async def update_user(request: web.Request) -> web.Response:
    access_token = bearer_token(request)
    body = await read_json(request)
    if text_field(body, "phone"):
        raise AuthError(422, "phone_provider_disabled", "Phone logins are disabled")
    data = object_field(body, "data")
    password = text_field(body, "password")
    password_hash = None
    if password is not None:
        password_hash = await _new_password_hash(request, access_token, password, text_field(body, "current_password"))
    user = await db(request).call(
        "update_user",
        access_token=access_token,
        data=Jsonb(data) if data is not None else None,
        password_hash=password_hash,
        email=text_field(body, "email"),
        nonce=text_field(body, "nonce"),
        redirect_to=redirect_to(request),
        ip=client_ip(request),
    )
    return reply(user)


@routes.get("/reauthenticate")
async def reauthenticate(request: web.Request) -> web.Response:
    return reply(await db(request).call("reauthenticate", access_token=bearer_token(request), ip=client_ip(request)))


async def _new_password_hash(
    request: web.Request, access_token: str, password: str, current_password: str | None
) -> str:
    hasher = passwords(request)
    hasher.require_strong(password)
    current_hash = await db(request).call("current_password_hash", access_token=access_token)
    if current_password is not None and not (await hasher.verify(current_hash, current_password)).ok:
        raise AuthError(400, "current_password_mismatch", "Current password required when setting new password.")
    if current_hash and (await hasher.verify(current_hash, password)).ok:
        raise AuthError(422, "same_password", "New password should be different from the old password.")
    return await hasher.hash(password)
