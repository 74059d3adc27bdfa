"""The signed-in user's sessions (and the stream of what happens to them) and API keys."""

from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from authgres.http import Bearer, client_ip, db, reply, user_events
from authgres.inputs import Body, Headers, KeyPath, SessionPath, Text, declared

routes = web.RouteTableDef()

TEN_YEARS = 10 * 366 * 24 * 3600


class ApiKeyRequest(Body):
    name: Annotated[Text, Meta(description="1 to 100 characters")] | None = None
    expires_in: Annotated[int, Meta(ge=1, le=TEN_YEARS, description="Seconds; absent: never")] | None = None


@routes.get("/sessions")
@declared
async def list_sessions(request: web.Request, token: Bearer) -> web.Response:
    return reply(await db(request).call("list_sessions", access_token=token))


class EventsHeaders(Headers):
    # UNSET when absent: "null" is no more an id than any other word.
    last_event_id: (
        Annotated[
            int,
            Meta(
                ge=0,
                le=2**63 - 1,
                description="The id of the last event received: the stream resumes after it (events are kept a day)",
            ),
        ]
        | UnsetType
    ) = msgspec.field(default=UNSET, name="Last-Event-ID")


@routes.get("/sessions/events")
@declared
async def session_events(request: web.Request, token: Bearer, headers: EventsHeaders) -> web.StreamResponse:
    after = headers.last_event_id if isinstance(headers.last_event_id, int) else None
    return await user_events(request).stream(request, token, after)


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
