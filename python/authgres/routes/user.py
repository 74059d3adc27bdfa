"""GET /user and PUT /user: the signed-in user."""

import json
from typing import Annotated

from aiohttp import web
from msgspec import Meta
from psycopg.types.json import Jsonb

from authgres.errors import AuthError, invalid_credentials
from authgres.http import Bearer, client_ip, db, passwords, redirect_to, reply, require_phone, sms
from authgres.inputs import Body, Channel, JsonObject, RedirectQuery, Text, declared
from authgres.pkce import CodeChallenge, CodeChallengeMethod, challenge

routes = web.RouteTableDef()


class UserUpdate(Body):
    """Changes to the signed-in user; with code_challenge and code_challenge_method the links of an
    email change are PKCE flows'."""

    email: (
        Annotated[
            Text,
            Meta(
                description="Starts an email change, confirmed from the new address (and the current one when "
                "secure email change is on)"
            ),
        ]
        | None
    ) = None
    phone: (
        Annotated[Text, Meta(description="Starts a phone change, confirmed by a code texted to the new number")] | None
    ) = None
    channel: Channel | None = None
    password: Annotated[Text, Meta(description="Ends the user's other sessions")] | None = None
    current_password: Annotated[Text, Meta(description="When given, must match the current password")] | None = None
    nonce: (
        Annotated[
            Text,
            Meta(
                description="The reauthentication code, required for a password change when "
                "AUTHGRES_SECURE_PASSWORD_CHANGE is on and the session is older than 24 hours"
            ),
        ]
        | None
    ) = None
    data: Annotated[JsonObject, Meta(description="Merged into user_metadata; a null value removes the key")] | None = (
        None
    )
    code_challenge: CodeChallenge | None = None
    code_challenge_method: CodeChallengeMethod | None = None


class AccountDeletion(Body):
    """What proves it is the user who deletes the account."""

    password: Annotated[Text, Meta(description="The current password: required when the user has one")] | None = None
    nonce: (
        Annotated[
            Text,
            Meta(description="A code from GET /reauthenticate: required when the user has no password"),
        ]
        | None
    ) = None


@routes.get("/user")
@declared
async def get_user(request: web.Request, token: Bearer) -> web.Response:
    return reply(await db(request).call_batched("get_users", token))


@routes.put("/user")
@declared
async def update_user(request: web.Request, token: Bearer, body: UserUpdate, query: RedirectQuery) -> web.Response:
    if body.phone:
        require_phone(request, 422, "Phone logins are disabled")
    code_challenge, code_challenge_method = challenge(body.code_challenge, body.code_challenge_method)
    password_hash = None
    if body.password:
        password_hash = await _new_password_hash(request, token, body.password, body.current_password or None)
    user = await db(request).call(
        "update_user",
        access_token=token,
        data=Jsonb(body.data) if body.data is not None else None,
        password_hash=password_hash,
        email=body.email or None,
        nonce=body.nonce or None,
        redirect_to=redirect_to(request, query.redirect_to),
        ip=client_ip(request),
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
        phone=body.phone or None,
        channel=body.channel,
    )
    if body.phone:  # the new number's code is texted before the answer: a refused number is the answer
        return reply(await sms(request).send_now(json.loads(user)))
    return reply(user)


@routes.delete("/user")
@declared
async def delete_user(request: web.Request, token: Bearer, body: AccountDeletion) -> web.Response:
    verified_hash = None
    if body.password:
        verified_hash = await db(request).call("session_password_hash", access_token=token)
        await _confirm_password(request, token, verified_hash, body.password, invalid_credentials())
    await db(request).call(
        "delete_own_account",
        access_token=token,
        verified_hash=verified_hash,
        nonce=body.nonce or None,
        ip=client_ip(request),
    )
    return web.Response(status=204)


@routes.get("/reauthenticate")
@declared
async def reauthenticate(request: web.Request, token: Bearer) -> web.Response:
    return reply(await db(request).call("reauthenticate", access_token=token, ip=client_ip(request)))


async def _new_password_hash(
    request: web.Request, access_token: str, password: str, current_password: str | None
) -> str:
    hasher = passwords(request)
    hasher.require_strong(password)
    current_hash = await db(request).call("current_password_hash", access_token=access_token)
    if current_password is not None:
        mismatch = AuthError(400, "current_password_mismatch", "Current password required when setting new password.")
        await _confirm_password(request, access_token, current_hash, current_password, mismatch)
    if current_hash and (await hasher.verify(current_hash, password)).ok:
        raise AuthError(422, "same_password", "New password should be different from the old password.")
    return await hasher.hash(password)


async def _confirm_password(
    request: web.Request, access_token: str, stored_hash: str | None, password: str, refusal: AuthError
) -> None:
    """Returns when password matches stored_hash; else the failure is recorded as a failed sign-in is
    (audit, password_verification_attempt hook) and refusal is raised."""
    if not (await passwords(request).verify(stored_hash, password)).ok:
        await db(request).call("record_failed_reauthentication", access_token=access_token, ip=client_ip(request))
        raise refusal
