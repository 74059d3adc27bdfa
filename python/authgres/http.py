"""What every route needs: the app's shared state (keys in state.py), request parsing and GoTrue-style JSON replies."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from typing import Any

from aiohttp import web

from authgres.db import Database, JsonText
from authgres.errors import AuthError
from authgres.passwords import Passwords
from authgres.redirects import safe_redirect
from authgres.settings import Settings
from authgres.state import DB, PASSWORDS, SETTINGS

_BEARER = re.compile(r"^bearer (\S+)$", re.IGNORECASE)


def db(request: web.Request) -> Database:
    return request.app[DB]


def passwords(request: web.Request) -> Passwords:
    return request.app[PASSWORDS]


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def bad_json(detail: str) -> AuthError:
    return AuthError(400, "bad_json", f"Could not parse request body as JSON: {detail}")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body, whatever the Content-Type; an empty body is an empty object."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_json(str(error)) from None
    if not isinstance(body, dict):
        raise bad_json("expected a JSON object")
    return body


def text_field(body: dict[str, Any], key: str) -> str | None:
    """A string member; null or absent is None, as GoTrue reads a missing field as empty."""
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value or None
    raise bad_json(f"{key} must be a string")


def object_field(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise bad_json(f"{key} must be a JSON object")


def path_uuid(request: web.Request, name: str) -> str:
    """A UUID path segment, normalised; anything else is a 404, as no such resource can exist."""
    try:
        return str(uuid.UUID(request.match_info[name]))
    except ValueError:
        raise AuthError(404, "validation_failed", f"{name} must be an UUID") from None


def bearer_token(request: web.Request) -> str:
    """The access token (or per-user API key) a request authenticates with: the Authorization bearer,
    else X-Api-Key, else an `apikey` header that holds an API key rather than a project JWT."""
    match = _BEARER.match(request.headers.get("Authorization", ""))
    if match:
        return match.group(1)
    key = request.headers.get("X-Api-Key") or request.headers.get("apikey") or ""
    if key.startswith("ag_"):
        return key
    raise AuthError(401, "no_authorization", "This endpoint requires a valid Bearer token")


def client_ip(request: web.Request) -> str | None:
    """The first parsable X-Forwarded-For entry, else the peer address (as GoTrue does)."""
    candidates = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    candidates.append(request.remote or "")
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def redirect_to(request: web.Request, requested: str | None = None) -> str:
    """The validated redirect target: the given one, else the redirect_to query parameter."""
    config = settings(request)
    return safe_redirect(requested or request.query.get("redirect_to"), config.site_url, config.uri_allow_list)


def user_agent(request: web.Request) -> str | None:
    return request.headers.get("User-Agent")


def reply(data: Any, status: int = 200) -> web.Response:
    text = data if isinstance(data, JsonText) else json.dumps(data, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json")
