"""POST /verify (code or token_hash, answers a session) and GET /verify (the emailed link, answers a
redirect with the session in the URL fragment)."""

import html
import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from authgres.errors import AuthError, validation_failed
from authgres.http import client_ip, db, read_json, redirect_to, reply, settings, text_field, user_agent

routes = web.RouteTableDef()

_OAUTH_ERRORS = {400: "invalid_request", 401: "unauthorized_client", 403: "access_denied", 429: "access_denied"}


async def _verify(
    request: web.Request, kind: str | None, code: str | None, email: str | None, token_hash: str | None
) -> dict[str, Any]:
    if not kind:
        raise validation_failed("Verify requires a verification type")
    if not token_hash and not (code and email):
        raise validation_failed("Verify requires either a token or a token hash")
    result = await db(request).call(
        "verify_email_token",
        type=kind,
        email=None if token_hash else email,
        code=None if token_hash else code,
        token_hash=token_hash,
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    outcome: dict[str, Any] = json.loads(result)
    return outcome


@routes.post("/verify")
async def verify(request: web.Request) -> web.StreamResponse:
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        return await _verify_link(request, {key: str(value) for key, value in form.items()})
    body = await read_json(request)
    outcome = await _verify(
        request,
        text_field(body, "type"),
        text_field(body, "token"),
        text_field(body, "email"),
        text_field(body, "token_hash"),
    )
    outcome.pop("redirect_to", None)
    outcome.pop("verification_type", None)
    return reply(outcome)


@routes.get("/verify")
async def verify_link(request: web.Request) -> web.StreamResponse:
    params = dict(request.query)
    if settings(request).mailer_link_confirm_page:
        # Mail scanners fetch links; only a person presses the button, which POSTs the same fields.
        return web.Response(text=_confirm_page(params), content_type="text/html")
    return await _verify_link(request, params)


async def _verify_link(request: web.Request, params: dict[str, str]) -> web.StreamResponse:
    """The emailed link: 303 to the app, with the session or the error in the URL fragment."""
    target = redirect_to(request, params.get("redirect_to"))
    try:
        outcome = await _verify(request, params.get("type"), None, None, params.get("token"))
    except AuthError as error:
        fragment = {
            "error": _OAUTH_ERRORS.get(error.status, "server_error"),
            "error_code": error.code,
            "error_description": error.message,
        }
        raise web.HTTPSeeOther(f"{target}#{urlencode(fragment)}") from None
    if "access_token" not in outcome:  # the first half of a secure email change
        raise web.HTTPSeeOther(f"{target}#{urlencode({'message': outcome['msg']})}")
    if not params.get("redirect_to") and outcome.get("redirect_to"):
        target = redirect_to(request, outcome["redirect_to"])
    fragment = {
        key: outcome[key] for key in ("access_token", "expires_at", "expires_in", "refresh_token", "token_type")
    }
    fragment["type"] = params.get("type", "")
    raise web.HTTPSeeOther(f"{target}#{urlencode(sorted(fragment.items()))}")


def _confirm_page(params: dict[str, str]) -> str:
    fields = "".join(
        f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(params.get(key, ""))}">'
        for key in ("token", "type", "redirect_to")
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Continue</title></head>"
        "<body style='font-family: sans-serif'><form method='post' action='verify'>"
        f"{fields}<button type='submit'>Continue</button></form></body></html>"
    )
