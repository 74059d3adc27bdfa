"""POST /signup: email + password, or anonymous when neither email nor phone is given."""

from aiohttp import web
from psycopg.types.json import Jsonb

from authgres.errors import AuthError, validation_failed
from authgres.http import (
    client_ip,
    db,
    object_field,
    passwords,
    read_json,
    redirect_to,
    reply,
    text_field,
    user_agent,
)

routes = web.RouteTableDef()


@routes.post("/signup")
async def signup(request: web.Request) -> web.Response:
    body = await read_json(request)
    email, phone = text_field(body, "email"), text_field(body, "phone")
    password = text_field(body, "password")
    data = Jsonb(object_field(body, "data") or {})
    if email and phone:
        raise validation_failed("Only an email address or phone number should be provided on signup.")
    if phone:
        raise AuthError(400, "phone_provider_disabled", "Phone signups are disabled")
    if not email:
        result = await db(request).call(
            "sign_in_anonymously", data=data, user_agent=user_agent(request), ip=client_ip(request)
        )
        return reply(result)
    if not password:
        raise validation_failed("Signup requires a valid password")
    passwords(request).require_strong(password)
    # Hashed before SQL looks at the address, so a taken address answers as slowly as a new one.
    password_hash = await passwords(request).hash(password)
    result = await db(request).call(
        "sign_up",
        email=email,
        password_hash=password_hash,
        data=data,
        redirect_to=redirect_to(request),
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    return reply(result)
