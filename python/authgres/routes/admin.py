"""The admin API, for the service_role key: users, invites, generated links, the audit log."""

import json
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from psycopg.types.json import Jsonb

from authgres.errors import AuthError, validation_failed
from authgres.http import (
    bearer_token,
    client_ip,
    db,
    passwords,
    path_uuid,
    read_json,
    redirect_to,
    reply,
    settings,
    text_field,
)

routes = web.RouteTableDef()

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_IMPORTABLE_HASHES = ("$2a$", "$2b$", "$2y$", "$argon2")


def ban_seconds(value: object) -> int | None:
    """A Go duration ("24h", "1h30m") in seconds; "none" lifts a ban (0); absent leaves it (None)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise validation_failed("invalid format for ban duration")
    if value == "none":
        return 0
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise validation_failed("invalid format for ban duration")
    return max(1, round(sum(float(number) * _SECONDS[unit] for number, unit in parts)))


def page_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise validation_failed(f"Bad Pagination Parameters: {name} must be an integer") from None


async def _attributes(request: web.Request, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The user attributes the SQL function reads, and the password hash to store (if any)."""
    if text_field(body, "phone"):
        raise AuthError(422, "phone_provider_disabled", "Phone users are not supported")
    for key in ("email_confirm",):
        if key in body and body[key] is not None and not isinstance(body[key], bool):
            raise validation_failed(f"{key} must be a boolean")
    for key in ("user_metadata", "app_metadata"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise validation_failed(f"{key} must be a JSON object")
    if body.get("id") is not None:
        try:
            uuid.UUID(str(body["id"]))
        except ValueError:
            raise validation_failed("ID must conform to the uuid v4 format") from None
    password, imported = text_field(body, "password"), text_field(body, "password_hash")
    if password and imported:
        raise validation_failed("Only a password or a password hash should be provided")
    if imported and not imported.startswith(_IMPORTABLE_HASHES):
        raise validation_failed("Invalid password hash format: bcrypt or argon2 expected")
    password_hash = imported or (await passwords(request).hash(password) if password else None)
    keys = ("id", "email", "email_confirm", "user_metadata", "app_metadata", "role", "aud")
    return {key: body[key] for key in keys if body.get(key) is not None}, password_hash


@routes.get("/admin/users")
async def list_users(request: web.Request) -> web.Response:
    page, per_page = page_param(request, "page", 1), page_param(request, "per_page", 50)
    result = json.loads(
        await db(request).call(
            "admin_list_users",
            admin_token=bearer_token(request),
            page=page,
            per_page=per_page,
            filter=request.query.get("filter") or None,
        )
    )
    total = result.pop("total")
    response = reply(result)
    response.headers["X-Total-Count"] = str(total)
    base = str(request.url.with_query(None))
    last = max(1, -(-total // per_page))
    links = []
    if page < last:  # `page` first: auth-js reads the digit after the first "="
        links.append(f'<{base}?{urlencode({"page": page + 1, "per_page": per_page})}>; rel="next"')
    links.append(f'<{base}?{urlencode({"page": last, "per_page": per_page})}>; rel="last"')
    response.headers["Link"] = ", ".join(links)
    return response


@routes.post("/admin/users")
async def create_user(request: web.Request) -> web.Response:
    body = await read_json(request)
    attributes, password_hash = await _attributes(request, body)
    user = await db(request).call(
        "admin_create_user",
        admin_token=bearer_token(request),
        attributes=Jsonb(attributes),
        password_hash=password_hash,
        ban_seconds=ban_seconds(body.get("ban_duration")),
        ip=client_ip(request),
    )
    return reply(user)


@routes.get("/admin/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    user = await db(request).call(
        "admin_get_user", admin_token=bearer_token(request), user_id=path_uuid(request, "user_id")
    )
    return reply(user)


@routes.put("/admin/users/{user_id}")
async def update_user(request: web.Request) -> web.Response:
    body = await read_json(request)
    password = text_field(body, "password")
    if password:
        passwords(request).require_strong(password)
    attributes, password_hash = await _attributes(request, body)
    user = await db(request).call(
        "admin_update_user",
        admin_token=bearer_token(request),
        user_id=path_uuid(request, "user_id"),
        attributes=Jsonb(attributes),
        password_hash=password_hash,
        ban_seconds=ban_seconds(body.get("ban_duration")),
        ip=client_ip(request),
    )
    return reply(user)


@routes.delete("/admin/users/{user_id}")
async def delete_user(request: web.Request) -> web.Response:
    body = await read_json(request)
    soft = body.get("should_soft_delete", False)
    if not isinstance(soft, bool):
        raise validation_failed("should_soft_delete must be a boolean")
    result = await db(request).call(
        "admin_delete_user",
        admin_token=bearer_token(request),
        user_id=path_uuid(request, "user_id"),
        soft=soft,
        ip=client_ip(request),
    )
    return reply(result)


@routes.post("/invite")
async def invite(request: web.Request) -> web.Response:
    body = await read_json(request)
    email = text_field(body, "email")
    if not email:
        raise validation_failed("An email address is required")
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    user = await db(request).call(
        "admin_invite_user",
        admin_token=bearer_token(request),
        email=email,
        data=Jsonb(data),
        redirect_to=redirect_to(request),
        ip=client_ip(request),
    )
    return reply(user)


@routes.post("/admin/generate_link")
async def generate_link(request: web.Request) -> web.Response:
    body = await read_json(request)
    email, kind = text_field(body, "email"), text_field(body, "type")
    if not email or not kind:
        raise validation_failed("type and email are required")
    password = text_field(body, "password")
    target = redirect_to(request, text_field(body, "redirect_to"))
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    result: dict[str, Any] = json.loads(
        await db(request).call(
            "admin_generate_link",
            admin_token=bearer_token(request),
            type=kind,
            email=email,
            new_email=text_field(body, "new_email"),
            password_hash=await passwords(request).hash(password) if password else None,
            data=Jsonb(data),
            redirect_to=target,
            ip=client_ip(request),
        )
    )
    link_type = (
        "email_change" if result["verification_type"].startswith("email_change") else result["verification_type"]
    )
    query = {"token": result["hashed_token"], "type": link_type, "redirect_to": target}
    result["action_link"] = f"{settings(request).external_url}/verify?{urlencode(query)}"
    result["redirect_to"] = target
    return reply(result)


@routes.get("/admin/audit")
async def audit(request: web.Request) -> web.Response:
    entries = await db(request).call(
        "admin_audit",
        admin_token=bearer_token(request),
        page=page_param(request, "page", 1),
        per_page=page_param(request, "per_page", 50),
    )
    return reply(entries)
