"""HTTP routes, one module per endpoint group. Each is served at / and again under /auth/v1."""

from aiohttp import web

from authgres.routes import admin, factors, logout, meta, otp, sessions, signup, token, user, verify

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
)


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        for table in TABLES:
            for route in table:
                assert isinstance(route, web.RouteDef)
                app.router.add_route(route.method, prefix + route.path, route.handler, **route.kwargs)
