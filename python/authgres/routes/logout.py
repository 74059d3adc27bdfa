"""POST /logout?scope=global|local|others."""

from typing import Annotated

from aiohttp import web
from msgspec import Meta

from authgres.http import Bearer, client_ip, db
from authgres.inputs import Query, Text, declared

routes = web.RouteTableDef()


class LogoutQuery(Query):
    # Read as text: SQL answers validation_failed for any other scope.
    scope: Annotated[Text, Meta(extra_json_schema={"enum": ["global", "local", "others"]})] = "global"


@routes.post("/logout")
@declared
async def logout(request: web.Request, token: Bearer, query: LogoutQuery) -> web.Response:
    ended = await db(request).call("logout", access_token=token, scope=query.scope, ip=client_ip(request))
    # Clients never read a logout body; the count is a courtesy for scripts.
    return web.Response(status=204, headers={"X-Sessions-Ended": str(ended)})
