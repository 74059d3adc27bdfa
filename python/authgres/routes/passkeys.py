"""Passkeys as the first factor (GoTrue's /passkeys endpoints), and the admin's view of a user's passkeys.

Each ceremony is two requests: options (SQL starts the challenge, passkeys.py builds the options the
browser takes) and verify (passkeys.py checks the authenticator's answer, SQL spends the challenge and
records the result). Signing in also asks SQL for the credential's public key first.
"""

import json
import uuid
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta

from authgres import passkeys
from authgres.captcha import CaptchaProtected, require_captcha
from authgres.errors import AuthError
from authgres.http import Bearer, client_ip, db, reply, settings, user_agent
from authgres.inputs import Body, JsonObject, Path, Text, UserPath, declared

routes = web.RouteTableDef()


class PasskeyPath(Path):
    passkey_id: uuid.UUID


class UserPasskeyPath(Path):
    user_id: uuid.UUID
    passkey_id: uuid.UUID


class CeremonyRequest(Body):
    challenge_id: Annotated[Text, Meta(description="The challenge_id the options came with")] | None = None
    credential: (
        Annotated[JsonObject, Meta(description="The browser's PublicKeyCredential, serialised as JSON")] | None
    ) = None


class AuthenticationOptionsRequest(CaptchaProtected):
    """auth-js sends the captcha token here (gotrue_meta_security), checked as in GoTrue when captcha is on."""


class RenameRequest(Body):
    friendly_name: Annotated[Text, Meta(description="1 to 120 characters")] | None = None


def _require_enabled(request: web.Request) -> None:
    if not settings(request).passkey_enabled:
        raise AuthError(404, "passkey_disabled", "Passkeys are disabled")


def _ceremony(body: CeremonyRequest) -> tuple[str, dict[str, Any]]:
    """The challenge id and credential of a verify request, as GoTrue checks them."""
    if not body.challenge_id:
        raise AuthError(400, "validation_failed", "challenge_id is required")
    if body.credential is None:
        raise AuthError(400, "validation_failed", "credential is required")
    try:
        challenge_id = str(uuid.UUID(body.challenge_id))
    except ValueError:
        raise AuthError(400, "validation_failed", "challenge_id must be a valid UUID") from None
    return challenge_id, body.credential


@routes.post("/passkeys/registration/options")
@declared
async def registration_options(request: web.Request, token: Bearer) -> web.Response:
    _require_enabled(request)
    state = json.loads(await db(request).call("passkey_registration_options", access_token=token))
    options = passkeys.registration_options(settings(request), state, state["exclude_credentials"], passkey=True)
    return reply({"challenge_id": state["challenge_id"], "options": options, "expires_at": state["expires_at"]})


@routes.post("/passkeys/registration/verify")
@declared
async def registration_verify(request: web.Request, token: Bearer, body: CeremonyRequest) -> web.Response:
    _require_enabled(request)
    challenge_id, credential = _ceremony(body)
    registered = passkeys.verify_registration(settings(request), credential, require_user_verification=True)
    result = await db(request).call(
        "register_passkey",
        access_token=token,
        challenge_id=challenge_id,
        **registered.params(),
        ip=client_ip(request),
    )
    return reply(result)


@routes.post("/passkeys/authentication/options")
@declared
async def authentication_options(request: web.Request, body: AuthenticationOptionsRequest) -> web.Response:
    _require_enabled(request)
    await require_captcha(request, body)
    state = json.loads(await db(request).call("passkey_authentication_options", ip=client_ip(request)))
    options = passkeys.authentication_options(settings(request), state["challenge"], passkey=True)
    return reply({"challenge_id": state["challenge_id"], "options": options, "expires_at": state["expires_at"]})


@routes.post("/passkeys/authentication/verify")
@declared
async def authentication_verify(request: web.Request, body: CeremonyRequest) -> web.Response:
    _require_enabled(request)
    challenge_id, credential = _ceremony(body)
    parsed = passkeys.assertion_credential(credential)
    public_key = await db(request).call("webauthn_public_key", credential_id=parsed.raw_id)
    asserted = passkeys.verify_assertion(settings(request), parsed, public_key, require_user_verification=True)
    session = await db(request).call(
        "sign_in_with_passkey",
        challenge_id=challenge_id,
        challenge=asserted.challenge,
        credential_id=asserted.credential_id,
        user_handle=asserted.user_handle,
        sign_count=asserted.sign_count,
        backed_up=asserted.backed_up,
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    return reply(session)


@routes.get("/passkeys")
@declared
async def list_passkeys(request: web.Request, token: Bearer) -> web.Response:
    _require_enabled(request)
    return reply(await db(request).call("list_passkeys", access_token=token))


@routes.patch("/passkeys/{passkey_id}")
@declared
async def rename_passkey(request: web.Request, path: PasskeyPath, token: Bearer, body: RenameRequest) -> web.Response:
    _require_enabled(request)
    result = await db(request).call(
        "update_passkey",
        access_token=token,
        passkey_id=str(path.passkey_id),
        friendly_name=body.friendly_name or "",
        ip=client_ip(request),
    )
    return reply(result)


@routes.delete("/passkeys/{passkey_id}")
@declared
async def delete_passkey(request: web.Request, path: PasskeyPath, token: Bearer) -> web.Response:
    _require_enabled(request)
    await db(request).call("delete_passkey", access_token=token, passkey_id=str(path.passkey_id), ip=client_ip(request))
    return web.Response(status=204)


@routes.get("/admin/users/{user_id}/passkeys")
@declared
async def admin_list_passkeys(request: web.Request, path: UserPath, token: Bearer) -> web.Response:
    return reply(await db(request).call("admin_list_passkeys", admin_token=token, user_id=str(path.user_id)))


@routes.delete("/admin/users/{user_id}/passkeys/{passkey_id}")
@declared
async def admin_delete_passkey(request: web.Request, path: UserPasskeyPath, token: Bearer) -> web.Response:
    await db(request).call(
        "admin_delete_passkey",
        admin_token=token,
        user_id=str(path.user_id),
        passkey_id=str(path.passkey_id),
        ip=client_ip(request),
    )
    return web.Response(status=204)
