"""The signed-in user's sessions and API keys."""

from aiohttp import web

from authgres.errors import validation_failed
from authgres.http import bearer_token, client_ip, db, path_uuid, read_json, reply, text_field

routes = web.RouteTableDef()


@routes.get("/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    return reply(await db(request).call("list_sessions", access_token=bearer_token(request)))


@routes.delete("/sessions/{session_id}")
async def end_session(request: web.Request) -> web.Response:
    result = await db(request).call(
        "end_session",
        access_token=bearer_token(request),
        session_id=path_uuid(request, "session_id"),
        ip=client_ip(request),
    )
    return reply(result)


@routes.post("/api_keys")
async def create_api_key(request: web.Request) -> web.Response:
    body = await read_json(request)
    expires_in = body.get("expires_in")
    if expires_in is not None and (not isinstance(expires_in, int) or isinstance(expires_in, bool)):
        raise validation_failed("expires_in must be a number of seconds")
    result = await db(request).call(
        "create_api_key",
        access_token=bearer_token(request),
        name=text_field(body, "name") or "",
        expires_in=expires_in,
        ip=client_ip(request),
    )
    return reply(result)


@routes.get("/api_keys")
async def list_api_keys(request: web.Request) -> web.Response:
    return reply(await db(request).call("list_api_keys", access_token=bearer_token(request)))


@routes.delete("/api_keys/{key_id}")
async def revoke_api_key(request: web.Request) -> web.Response:
    result = await db(request).call(
        "revoke_api_key", access_token=bearer_token(request), key_id=path_uuid(request, "key_id"), ip=client_ip(request)
    )
    return reply(result)
