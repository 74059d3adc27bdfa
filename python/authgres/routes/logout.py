"""POST /logout?scope=global|local|others."""

from aiohttp import web

from authgres.http import bearer_token, client_ip, db

routes = web.RouteTableDef()


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    ended = await db(request).call(
        "logout",
        access_token=bearer_token(request),
        scope=request.query.get("scope", "global"),
        ip=client_ip(request),
    )
    # Clients never read a logout body; the count is a courtesy for scripts.
    return web.Response(status=204, headers={"X-Sessions-Ended": str(ended)})
