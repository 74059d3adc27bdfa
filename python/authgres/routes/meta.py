"""Health, public settings, JWKS and the OpenAPI description."""

from aiohttp import web

from authgres import __version__
from authgres.http import db, reply, settings
from authgres.inputs import declared
from authgres.openapi import document
from authgres.state import DRAINING

routes = web.RouteTableDef()

_OAUTH_PROVIDERS = [
    "apple",
    "azure",
    "bitbucket",
    "discord",
    "facebook",
    "snapchat",
    "figma",
    "fly",
    "github",
    "gitlab",
    "google",
    "keycloak",
    "kakao",
    "linkedin",
    "linkedin_oidc",
    "notion",
    "spotify",
    "slack",
    "slack_oidc",
    "workos",
    "twitch",
    "twitter",
    "zoom",
]


@routes.get("/health")
@declared
async def health(request: web.Request) -> web.Response:
    return reply({"version": __version__, "name": "authgres", "description": "Postgres-native authentication"})


@routes.get("/ready")
@declared
async def ready(request: web.Request) -> web.Response:
    """Readiness, unlike /health: the database answers and the service is not stopping."""
    draining = request.app[DRAINING].is_set()
    reachable = await db(request).reachable()
    body = {"ready": reachable and not draining, "database": reachable, "draining": draining}
    return reply(body, status=200 if body["ready"] else 503)


@routes.get("/settings")
@declared
async def public_settings(request: web.Request) -> web.Response:
    config = settings(request)
    external = dict.fromkeys(_OAUTH_PROVIDERS, False)
    external.update({name: provider.enabled for name, provider in config.external.items()})
    external.update(email=True, phone=config.external_phone_enabled, anonymous_users=config.anonymous_users_enabled)
    return reply(
        {
            "external": external,
            "disable_signup": config.disable_signup,
            "mailer_autoconfirm": config.mailer_autoconfirm,
            "phone_autoconfirm": config.sms_autoconfirm,
            "sms_provider": config.sms_provider if config.external_phone_enabled else "",
            "saml_enabled": False,
            "passkeys_enabled": config.passkey_enabled,
        }
    )


@routes.get("/.well-known/jwks.json")
@declared
async def jwks(request: web.Request) -> web.Response:
    # Public halves of the next, current and previous ES256 keys; an HS256-only server has none.
    response = reply(await db(request).call("jwks"))
    response.headers["Cache-Control"] = "public, max-age=600"
    return response


@routes.get("/openapi.json")
@declared
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/json")
