"""The signed-in user's sessions and API keys."""

from typing import Annotated

from aiohttp import web
from msgspec import Meta

from authgres.http import Bearer, client_ip, db, reply
from authgres.inputs import Body, KeyPath, SessionPath, Text, declared

routes = web.RouteTableDef()

TEN_YEARS = 10 * 366 * 24 * 3600


class ApiKeyRequest(Body):
    name: Annotated[Text, Meta(description="1 to 100 characters")] | None = None
    expires_in: Annotated[int, Meta(ge=1, le=TEN_YEARS, description="Seconds; absent: never")] | None = None


@routes.get("/sessions")
@declared
async def list_sessions(request: web.Request, token: Bearer) -> web.Response:
    return reply(await db(request).call("list_sessions", access_token=token))


@routes.delete("/sessions/{session_id}")
@declared
async def end_session(request: web.Request, path: SessionPath, token: Bearer) -> web.Response:
    result = await db(request).call(
        "end_session", access_token=token, session_id=str(path.session_id), ip=client_ip(request)
    )
    return reply(result)


@routes.post("/api_keys")
@declared
async def create_api_key(request: web.Request, token: Bearer, body: ApiKeyRequest) -> web.Response:
    result = await db(request).call(
        "create_api_key", access_token=token, name=body.name or "", expires_in=body.expires_in, ip=client_ip(request)
    )
    return reply(result)


@routes.get("/api_keys")
@declared
async def list_api_keys(request: web.Request, token: Bearer) -> web.Response:
    return reply(await db(request).call("list_api_keys", access_token=token))


@routes.delete("/api_keys/{key_id}")
@declared
async def revoke_api_key(request: web.Request, path: KeyPath, token: Bearer) -> web.Response:
    result = await db(request).call(
        "revoke_api_key", access_token=token, key_id=str(path.key_id), ip=client_ip(request)
    )
    return reply(result)
