"""POST /token?grant_type=password|refresh_token|twofa (the last for strict email 2-step)."""

import json

from aiohttp import web

from authgres.errors import AuthError, validation_failed
from authgres.http import client_ip, db, passwords, read_json, reply, text_field, user_agent

routes = web.RouteTableDef()

INVALID_CREDENTIALS = AuthError(400, "invalid_credentials", "Invalid login credentials")


@routes.post("/token")
async def token(request: web.Request) -> web.Response:
    grant_type = request.query.get("grant_type", "")
    body = await read_json(request)
    if grant_type == "password":
        return await _password_grant(request, body)
    if grant_type == "refresh_token":
        refresh_token = text_field(body, "refresh_token") or ""
        return reply(
            await db(request).call_batched("refresh_sessions", refresh_token, user_agent(request), client_ip(request))
        )
    if grant_type == "twofa":
        session = await db(request).call(
            "complete_twofa",
            challenge_token=text_field(body, "challenge_token") or "",
            code=text_field(body, "code") or "",
            user_agent=user_agent(request),
            ip=client_ip(request),
        )
        return reply(session)
    raise AuthError(400, "invalid_credentials", "unsupported_grant_type")


async def _password_grant(request: web.Request, body: dict[str, object]) -> web.Response:
    email, phone = text_field(body, "email"), text_field(body, "phone")
    password = text_field(body, "password") or ""
    if email and phone:
        raise validation_failed("Only an email address or phone number should be provided on login.")
    if phone:
        raise AuthError(422, "phone_provider_disabled", "Phone logins are disabled")
    if not email:
        raise validation_failed("missing email or phone")
    account = await db(request).call_row("password_hash_by_email", email=email)
    stored_hash = account["password_hash"] if account else None
    # Verified even without a user or password (against a dummy hash): timing does not tell them apart.
    verification = await passwords(request).verify(stored_hash, password)
    if not verification.ok or account is None:
        await db(request).call("record_failed_login", email=email, ip=client_ip(request))
        raise INVALID_CREDENTIALS
    session = await db(request).call(
        "sign_in_with_password",
        user_id=account["user_id"],
        verified_hash=stored_hash,
        rehash=verification.rehash,
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    weakness = passwords(request).weakness(password)
    if weakness and '"access_token"' in session:
        return reply({**json.loads(session), "weak_password": weakness.as_json()})
    return reply(session)
