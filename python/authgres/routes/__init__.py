"""HTTP routes, one module per endpoint group. Each is served at / and again under /auth/v1."""

import re

from aiohttp import web

from authgres.inputs import UUID_PATTERN
from authgres.routes import admin, external, factors, logout, meta, otp, passkeys, sessions, signup, token, user, verify

PREFIXES = ("", "/auth/v1")
TABLES = (
    meta.routes,
    signup.routes,
    token.routes,
    user.routes,
    logout.routes,
    otp.routes,
    verify.routes,
    factors.routes,
    admin.routes,
    sessions.routes,
    passkeys.routes,
    external.routes,
)


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        for table in TABLES:
            for route in table:
                assert isinstance(route, web.RouteDef)
                # Path segments are UUIDs (inputs.Path): DELETE /factors/recovery_codes is then a method
                # that /factors/recovery_codes does not allow (405), not a factor that cannot exist.
                path = re.sub(r"\{(\w+)\}", rf"{{\1:{UUID_PATTERN}}}", route.path)
                app.router.add_route(route.method, prefix + path, route.handler, **route.kwargs)
