"""POST /verify (code or token_hash, answers a session) and GET /verify (the emailed link, answers a
redirect with the session in the URL fragment, or for a PKCE flow's link the auth code in the query)."""

import html
import json
from typing import Annotated, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web
from msgspec import Meta

from authgres.errors import AuthError, validation_failed
from authgres.http import client_ip, db, passwords, redirect_to, reply, require_phone, settings, sms, user_agent
from authgres.inputs import Body, RedirectQuery, Text, Url, declared

routes = web.RouteTableDef()

VerificationType = Annotated[
    Text,
    Meta(
        extra_json_schema={
            "enum": ["signup", "invite", "magiclink", "recovery", "email_change", "email", "sms", "phone_change"]
        }
    ),
]
PHONE_TYPES = ("sms", "phone_change")


class VerifyRequest(Body):
    """An emailed code (type, email, token) or link token (type, token_hash). The link confirmation
    page posts token, type and redirect_to as a form instead, and is answered as GET /verify."""

    form: ClassVar[bool] = True

    type: VerificationType | None = None
    email: Text | None = None
    phone: Annotated[Text, Meta(description="With type sms or phone_change: the number texted")] | None = None
    token: Annotated[Text, Meta(description="The emailed or texted code; the link token in a form post")] | None = None
    token_hash: Annotated[Text, Meta(description="The link token")] | None = None
    redirect_to: Annotated[Url, Meta(description="Form posts only")] | None = None
    password: (
        Annotated[
            Text,
            Meta(
                description="With type recovery: the new password, set in the same transaction as the code is "
                "spent; the user's other sessions end"
            ),
        ]
        | None
    ) = None


class VerifyLinkQuery(RedirectQuery):
    token: Annotated[Text, Meta(description="The link token")] = ""
    type: VerificationType = ""


_OAUTH_ERRORS = {400: "invalid_request", 401: "unauthorized_client", 403: "access_denied", 429: "access_denied"}


async def _verify(
    request: web.Request,
    kind: str | None,
    code: str | None,
    email: str | None,
    token_hash: str | None,
    new_password: str | None = None,
    link: bool = False,
) -> dict[str, Any]:
    if not kind:
        raise validation_failed("Verify requires a verification type")
    if not token_hash and not (code and email):
        raise validation_failed("Verify requires either a token or a token hash")
    password_hash = None
    if new_password:
        if kind != "recovery":
            raise validation_failed("A new password can only be set with a recovery code")
        passwords(request).require_strong(new_password)
        password_hash = await passwords(request).hash(new_password)
    result = await db(request).call(
        "verify_email_token",
        type=kind,
        email=None if token_hash else email,
        code=None if token_hash else code,
        token_hash=token_hash,
        user_agent=user_agent(request),
        ip=client_ip(request),
        password_hash=password_hash,
        link=link,
    )
    outcome: dict[str, Any] = json.loads(result)
    return outcome


@routes.post("/verify")
@declared
async def verify(request: web.Request, body: VerifyRequest) -> web.StreamResponse:
    if request.content_type == "application/x-www-form-urlencoded":
        return await _verify_link(request, body.token or "", body.type or "", body.redirect_to or "")
    if body.type in PHONE_TYPES:
        return reply(await _verify_phone(request, body))
    outcome = await _verify(request, body.type, body.token, body.email, body.token_hash, body.password)
    outcome.pop("redirect_to", None)
    outcome.pop("verification_type", None)
    return reply(outcome)


async def _verify_phone(request: web.Request, body: VerifyRequest) -> Any:
    require_phone(request, 400, "Unsupported phone provider")
    if not body.phone or not body.token:
        raise validation_failed("Verify requires a phone number and a token")
    if body.password:
        raise validation_failed("A new password can only be set with a recovery code")
    digits = "".join(ch for ch in body.phone if ch not in "+ -")
    # Twilio Verify made and sent the code, so only it can tell whether the code is right.
    approved = await sms(request).check(digits, body.token)
    return await db(request).call(
        "verify_phone_token",
        type=body.type,
        phone=body.phone,
        code=body.token,
        user_agent=user_agent(request),
        ip=client_ip(request),
        provider_approved=approved,
    )


@routes.get("/verify")
@declared
async def verify_link(request: web.Request, query: VerifyLinkQuery) -> web.StreamResponse:
    if settings(request).mailer_link_confirm_page:
        # Mail scanners fetch links; only a person presses the button, which POSTs the same fields.
        return web.Response(text=_confirm_page(query), content_type="text/html")
    return await _verify_link(request, query.token, query.type, query.redirect_to)


async def _verify_link(request: web.Request, token: str, kind: str, requested: str) -> web.StreamResponse:
    """The emailed link: 303 to the app, with the session or the error in the URL fragment; a PKCE flow's
    link (token pkce_...) answers its auth code in the query instead, and errors in both."""
    target = redirect_to(request, requested)
    try:
        outcome = await _verify(request, kind, None, None, token, link=True)
    except AuthError as error:
        fragment = {
            "error": _OAUTH_ERRORS.get(error.status, "server_error"),
            "error_code": error.code,
            "error_description": error.message,
        }
        if token.startswith("pkce_"):  # as GoTrue: a PKCE client reads the query
            target = _with_query(target, fragment)
        raise web.HTTPSeeOther(f"{target}#{urlencode(fragment)}") from None
    if "msg" in outcome:  # the first half of a secure email change
        raise web.HTTPSeeOther(f"{target}#{urlencode({'message': outcome['msg']})}")
    if not requested and outcome.get("redirect_to"):
        target = redirect_to(request, outcome["redirect_to"])
    if "auth_code" in outcome:
        raise web.HTTPSeeOther(_with_query(target, {"code": outcome["auth_code"]}))
    fragment = {
        key: outcome[key] for key in ("access_token", "expires_at", "expires_in", "refresh_token", "token_type")
    }
    fragment["type"] = kind
    raise web.HTTPSeeOther(f"{target}#{urlencode(sorted(fragment.items()))}")


def _with_query(url: str, parameters: dict[str, str]) -> str:
    """url with these query parameters set, its others (auth-js's sb_flow_id) and fragment kept."""
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in parameters]
    return urlunsplit(parts._replace(query=urlencode([*kept, *parameters.items()])))


def _confirm_page(query: VerifyLinkQuery) -> str:
    fields = "".join(
        f'<input type="hidden" name="{key}" value="{html.escape(value)}">'
        for key, value in (("token", query.token), ("type", query.type), ("redirect_to", query.redirect_to))
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Continue</title></head>"
        "<body style='font-family: sans-serif'><form method='post' action='verify'>"
        f"{fields}<button type='submit'>Continue</button></form></body></html>"
    )
