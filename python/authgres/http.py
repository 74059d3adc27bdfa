"""What every route needs: the app's shared state (keys in state.py), headers and GoTrue-style JSON replies.
Bodies, query and path parameters are decoded as each handler declares them (inputs.py)."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import TYPE_CHECKING, Any, NewType

from aiohttp import web

from authgres.db import Database, JsonText
from authgres.errors import AuthError
from authgres.events import UserEvents
from authgres.passwords import Passwords
from authgres.redirects import safe_redirect
from authgres.settings import IPNetwork, Settings
from authgres.state import DB, EVENTS, PASSWORDS, SETTINGS, SMS

if TYPE_CHECKING:
    from authgres.sms import SmsSender

_BEARER = re.compile(r"^bearer (\S+)$", re.IGNORECASE)

Bearer = NewType("Bearer", str)
"""The access token (or per-user API key) a request authenticates with: a handler parameter of this
type is filled in by inputs.declared (see bearer_token)."""


def db(request: web.Request) -> Database:
    return request.app[DB]


def user_events(request: web.Request) -> UserEvents:
    return request.app[EVENTS]


def passwords(request: web.Request) -> Passwords:
    return request.app[PASSWORDS]


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def sms(request: web.Request) -> SmsSender:
    return request.app[SMS]


def require_phone(request: web.Request, status: int, message: str) -> None:
    """phone_provider_disabled (with GoTrue's status and words for the endpoint) unless phone sign-in is on."""
    if not settings(request).external_phone_enabled:
        raise AuthError(status, "phone_provider_disabled", message)


def bearer_token(request: web.Request) -> Bearer:
    """The access token (or per-user API key) a request authenticates with: the Authorization bearer,
    else X-Api-Key, else an `apikey` header that holds an API key rather than a project JWT."""
    match = _BEARER.match(request.headers.get("Authorization", ""))
    token = match.group(1) if match else request.headers.get("X-Api-Key") or request.headers.get("apikey") or ""
    if not match and not token.startswith("ag_"):
        raise AuthError(401, "no_authorization", "This endpoint requires a valid Bearer token")
    if not token.isascii():  # tokens and keys are ASCII; other bytes arrive as lone surrogates
        raise AuthError(403, "bad_jwt", "invalid JWT: unable to parse or verify signature, token is not ASCII")
    return Bearer(token)


def client_ip(request: web.Request) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy (AUTHGRES_TRUSTED_PROXIES);
    then X-Forwarded-For is read from the right, past every trusted proxy, to the first address that
    is not one. A client talking to the service directly cannot choose the address throttles and the
    audit log see."""
    trusted = settings(request).trusted_proxies
    address = _address(request.remote)
    if address is None or not _within(address, trusted):
        return str(address) if address else None
    hops = [_address(part.strip()) for part in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        if hop is None:
            break  # a malformed entry: nothing left of it can be trusted
        address = hop
        if not _within(hop, trusted):
            break
    return str(address)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text or "")
    except ValueError:
        return None


def _within(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def redirect_to(request: web.Request, *requested: str | None) -> str:
    """The validated redirect target: the first of the requested ones given (body, then query)."""
    config = settings(request)
    return safe_redirect(next(filter(None, requested), None), config.site_url, config.uri_allow_list)


def user_agent(request: web.Request) -> str | None:
    """The User-Agent header, kept for the sessions list and the audit log. Bytes that are not UTF-8
    (aiohttp hands them over as lone surrogates, which PostgreSQL cannot store) become U+FFFD, as
    invalid UTF-8 in a query string does."""
    agent = request.headers.get("User-Agent")
    if agent is None or agent.isascii():
        return agent
    return agent.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def reply(data: Any, status: int = 200) -> web.Response:
    text = data if isinstance(data, JsonText) else json.dumps(data, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json")
