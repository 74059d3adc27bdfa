"""Third-party sign-in (providers.py): GET /authorize sends the browser to the provider, GET and POST
/callback bring it back (POST: Apple's form post); GET /user/identities/authorize starts the same for a
signed-in user who links another identity, DELETE /user/identities/{identity_id} unlinks one.

The state sent to the provider is the id of a flow_state row (auth.start_provider_flow): single-use and
short-lived, it carries the flow's redirect_to, its code challenge and the user it links to. A flow
started by GET /authorize is also bound to the browser: a cookie holds a random value whose digest the
flow keeps, and a callback without it is refused (an attacker cannot send a victim's browser through his
own sign-in and have it come back signed in as him). The callback reads the state, exchanges the
provider's code, and hands the identity to auth.sign_in_with_identity, which consumes the state; the
browser then goes back to redirect_to with ?code= (PKCE) or the session in the URL fragment (implicit),
or with error, error_code and error_description in the query and the fragment, as GoTrue's callback does.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from typing import Annotated, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
from aiohttp import web
from psycopg.types.json import Jsonb

from authgres.errors import AuthError
from authgres.http import Bearer, client_ip, db, redirect_to, settings, user_agent
from authgres.inputs import Body, Path, Query, RedirectQuery, Text, Url, declared
from authgres.pkce import CodeChallenge, CodeChallengeMethod, challenge
from authgres.providers import RESERVED_PARAMETERS, Identity
from authgres.sealing import Sealer
from authgres.state import PROVIDERS

routes = web.RouteTableDef()

BROWSER_BINDING_COOKIE = "authgres-oauth-binding"
_BINDING_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)

PROVIDER_TOKEN = "provider access token"
PROVIDER_REFRESH_TOKEN = "provider refresh token"

# GoTrue's OAuth error names by HTTP status, for the redirect's `error`.
_OAUTH_ERRORS = {
    400: "invalid_request",
    401: "unauthorized_client",
    403: "access_denied",
    503: "temporarily_unavailable",
}
_ACCESS_DENIED = {"signup_disabled", "user_banned"}


class AuthorizeQuery(RedirectQuery):
    provider: Annotated[
        Text, msgspec.Meta(description="apple, azure, discord, github, gitlab, google, keycloak or oidc")
    ] = ""
    scopes: Annotated[Text, msgspec.Meta(description="Scopes asked for besides the provider's defaults")] = ""
    code_challenge: CodeChallenge | None = None
    code_challenge_method: CodeChallengeMethod | None = None


class LinkQuery(AuthorizeQuery):
    skip_http_redirect: Annotated[
        Text, msgspec.Meta(description="true: answer {url} instead of redirecting (auth-js's linkIdentity)")
    ] = ""


class CallbackQuery(Query):
    state: Url = ""
    code: Url = ""
    error: Text = ""
    error_description: Url = ""


class IdentityPath(Path):
    identity_id: uuid.UUID


class CallbackForm(Body):
    """The provider's answer posted as a form (Apple's response_mode=form_post); Apple adds `user` (JSON
    with the user's name) on the first sign-in."""

    form: ClassVar[bool] = True

    state: Url | None = None
    code: Url | None = None
    error: Text | None = None
    error_description: Url | None = None
    user: Url | None = None


def sealer(request: web.Request) -> Sealer:
    return Sealer(settings(request).jwt_secret)


async def _provider_url(
    request: web.Request, query: AuthorizeQuery, access_token: str | None, browser_binding: str | None
) -> str:
    providers = request.app[PROVIDERS]
    await providers.ready(query.provider)  # refused (unknown, disabled, unreachable) before anything is stored
    code_challenge, method = challenge(query.code_challenge, query.code_challenge_method)
    target = redirect_to(request, query.redirect_to)
    state = await db(request).call(
        "start_provider_flow",
        provider=query.provider,
        referrer=target,
        code_challenge=code_challenge,
        code_challenge_method=method,
        access_token=access_token,
        browser_binding=browser_binding,
    )
    # Everything else the client put in the query goes to the provider (prompt, login_hint, access_type ...).
    forwarded = {key: value for key, value in request.query.items() if key.lower() not in RESERVED_PARAMETERS and value}
    return await providers.authorize_url(query.provider, str(state), query.scopes, forwarded)


@routes.get("/authorize")
@declared
async def authorize(request: web.Request, query: AuthorizeQuery) -> web.StreamResponse:
    # Flows started in several tabs share the browser's value.
    held = request.cookies.get(BROWSER_BINDING_COOKIE, "")
    binding = held if _BINDING_VALUE.fullmatch(held) else secrets.token_urlsafe(32)
    redirect = web.HTTPFound(await _provider_url(request, query, None, binding))
    # Apple posts its answer from its own site: only a SameSite=None cookie comes along, and browsers keep
    # those only when Secure, so over https (where a callback must be, for Apple). Over plain http (local
    # development) Lax, which a provider's redirect back (a top-level GET) carries.
    secure = urlsplit(request.app[PROVIDERS].callback_url(query.provider)).scheme == "https"
    redirect.set_cookie(
        BROWSER_BINDING_COOKIE, binding, path="/", httponly=True, secure=secure, samesite="None" if secure else "Lax"
    )
    raise redirect


@routes.get("/user/identities/authorize")
@declared
async def link_identity(request: web.Request, token: Bearer, query: LinkQuery) -> web.StreamResponse:
    # Started by a fetch (auth-js's linkIdentity), which keeps no cookie: a link is bound to the signed-in user.
    url = await _provider_url(request, query, token, None)
    if query.skip_http_redirect.lower() == "true":
        return web.json_response({"url": url})
    raise web.HTTPFound(url)


@routes.delete("/user/identities/{identity_id}")
@declared
async def unlink_identity(request: web.Request, path: IdentityPath, token: Bearer) -> web.Response:
    await db(request).call("unlink_identity", access_token=token, identity_id=path.identity_id, ip=client_ip(request))
    return web.json_response({})


@routes.get("/callback")
@declared
async def callback(request: web.Request, query: CallbackQuery) -> web.StreamResponse:
    return await _callback(request, query, None)


@routes.post("/callback")
@declared
async def callback_form(request: web.Request, body: CallbackForm) -> web.StreamResponse:
    query = CallbackQuery(
        state=body.state or "",
        code=body.code or "",
        error=body.error or "",
        error_description=body.error_description or "",
    )
    return await _callback(request, query, body.user)


async def _callback(request: web.Request, query: CallbackQuery, apple_user: str | None) -> web.StreamResponse:
    target = settings(request).site_url
    try:
        if not query.state:
            raise AuthError(400, "bad_oauth_callback", "OAuth state parameter missing")
        flow = json.loads(
            await db(request).call(
                "provider_flow", state=query.state, browser_binding=request.cookies.get(BROWSER_BINDING_COOKIE)
            )
        )
        target = flow["referrer"] or target
        if query.error:
            raise AuthError(
                400, "bad_oauth_callback", query.error_description or query.error, extra={"error": query.error}
            )
        if not query.code:
            raise AuthError(400, "bad_oauth_callback", "OAuth callback with missing authorization code")
        identity = await request.app[PROVIDERS].exchange(flow["provider"], query.code, apple_user)
        outcome = await _sign_in(request, flow, query.state, identity)
    except AuthError as error:
        raise web.HTTPFound(_error_location(target, error)) from None
    target = redirect_to(request, outcome.get("redirect_to") or target)
    if "auth_code" in outcome:
        raise web.HTTPFound(_with_query(target, {"code": outcome["auth_code"]}))
    fragment = {
        key: outcome[key] for key in ("access_token", "expires_at", "expires_in", "refresh_token", "token_type")
    }
    if identity.access_token:
        fragment["provider_token"] = identity.access_token
    if identity.refresh_token:
        fragment["provider_refresh_token"] = identity.refresh_token
    raise web.HTTPFound(urlunsplit(urlsplit(target)._replace(fragment=urlencode(fragment))))


async def _sign_in(request: web.Request, flow: dict[str, Any], state: str, identity: Identity) -> dict[str, Any]:
    # Only a PKCE flow keeps the provider's tokens (until its code is exchanged), and only sealed.
    seal = sealer(request)
    pkce = bool(flow.get("pkce"))
    result = await db(request).call(
        "sign_in_with_identity",
        provider=flow["provider"],
        subject=identity.subject,
        claims=Jsonb(identity.claims),
        method="oauth",
        state=state,
        provider_token=seal.seal(identity.access_token, PROVIDER_TOKEN) if pkce and identity.access_token else None,
        provider_refresh_token=(
            seal.seal(identity.refresh_token, PROVIDER_REFRESH_TOKEN) if pkce and identity.refresh_token else None
        ),
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    outcome: dict[str, Any] = json.loads(result)
    return outcome


def open_provider_tokens(request: web.Request, session: dict[str, Any]) -> dict[str, Any]:
    """A PKCE exchange's session with the provider's tokens opened (auth.exchange_auth_code answers them sealed)."""
    seal = sealer(request)
    for sealed, name, purpose in (
        ("sealed_provider_token", "provider_token", PROVIDER_TOKEN),
        ("sealed_provider_refresh_token", "provider_refresh_token", PROVIDER_REFRESH_TOKEN),
    ):
        if sealed in session:
            value = seal.open(base64.b64decode(session.pop(sealed)), purpose)
            if value is not None:
                session[name] = value
    return session


def _error_location(target: str, error: AuthError) -> str:
    """target with the error in its query and its fragment, as GoTrue's callback answers."""
    name = error.extra.get("error") or (
        "access_denied" if error.code in _ACCESS_DENIED else _OAUTH_ERRORS.get(error.status, "server_error")
    )
    details = {"error": str(name), "error_code": error.code, "error_description": error.message}
    parts = urlsplit(_with_query(target, details))
    return urlunsplit(parts._replace(fragment=urlencode({**details, "sb": ""})))


def _with_query(url: str, parameters: dict[str, str]) -> str:
    """url with these query parameters set, its others (auth-js's sb_flow_id) and fragment kept."""
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in parameters]
    return urlunsplit(parts._replace(query=urlencode([*kept, *parameters.items()])))
