"""The admin API, for the service_role key: users, invites, generated links, the audit log."""

import json
import re
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from aiohttp import web
from msgspec import Meta
from psycopg.types.json import Jsonb

from authgres.errors import validation_failed
from authgres.http import Bearer, client_ip, db, passwords, redirect_to, reply, settings
from authgres.inputs import Body, JsonObject, Query, RedirectQuery, Text, Url, UserPath, declared

routes = web.RouteTableDef()

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_LONGEST_BAN = (2**63 - 1) // 10**9  # Go's longest duration, about 292 years: GoTrue refuses longer ones
_IMPORTABLE_HASHES = ("$2a$", "$2b$", "$2y$", "$argon2")

# The first page of all users is the cheapest; pages past a billion rows are not there to read.
Page = Annotated[int, Meta(ge=1, le=1_000_000)]
PerPage = Annotated[int, Meta(ge=1, le=1000)]


class PageQuery(Query):
    page: Page = 1
    per_page: PerPage = 50


class UserListQuery(PageQuery):
    filter: Annotated[Text, Meta(description="Matches email or user_metadata.full_name, case-insensitively")] = ""


class AdminUserAttributes(Body):
    id: Annotated[uuid.UUID, Meta(description="The new user's id (default: a random UUID)")] | None = None
    email: Text | None = None
    phone: Annotated[Text, Meta(description="E.164; unique like an email")] | None = None
    password: Text | None = None
    password_hash: (
        Annotated[Text, Meta(description="An imported bcrypt or argon2 hash, instead of password")] | None
    ) = None
    email_confirm: bool | None = None
    phone_confirm: bool | None = None
    user_metadata: JsonObject | None = None
    app_metadata: JsonObject | None = None
    role: Text | None = None
    aud: Text | None = None
    ban_duration: Annotated[Text, Meta(description="A Go duration (24h, 1h30m), or none to lift a ban")] | None = None


class DeleteUserRequest(Body):
    should_soft_delete: bool | None = None


class InviteRequest(Body):
    email: Text | None = None
    data: Annotated[JsonObject, Meta(description="The invited user's user_metadata")] | None = None


class GenerateLinkRequest(Body):
    type: (
        Annotated[
            Text,
            Meta(
                extra_json_schema={
                    "enum": ["signup", "invite", "magiclink", "recovery", "email_change_current", "email_change_new"]
                }
            ),
        ]
        | None
    ) = None
    email: Text | None = None
    new_email: Text | None = None
    password: Text | None = None
    data: JsonObject | None = None
    redirect_to: Url | None = None


def ban_seconds(value: str | None) -> int | None:
    """A Go duration ("24h", "1h30m") in seconds; "none" lifts a ban (0); absent leaves it (None)."""
    if value is None:
        return None
    if value == "none":
        return 0
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise validation_failed("invalid format for ban duration")
    seconds = sum(float(number) * _SECONDS[unit] for number, unit in parts)
    if seconds > _LONGEST_BAN:
        raise validation_failed("invalid format for ban duration: longer than Go's longest duration")
    return max(1, round(seconds))


async def _attributes(request: web.Request, body: AdminUserAttributes) -> tuple[dict[str, Any], str | None]:
    """The user attributes the SQL function reads, and the password hash to store (if any)."""
    password, imported = body.password, body.password_hash
    if password and imported:
        raise validation_failed("Only a password or a password hash should be provided")
    if imported and not imported.startswith(_IMPORTABLE_HASHES):
        raise validation_failed("Invalid password hash format: bcrypt or argon2 expected")
    password_hash = imported or (await passwords(request).hash(password) if password else None)
    attributes = {
        "id": str(body.id) if body.id else None,
        "email": body.email,
        "email_confirm": body.email_confirm,
        "phone": body.phone,
        "phone_confirm": body.phone_confirm,
        "user_metadata": body.user_metadata,
        "app_metadata": body.app_metadata,
        "role": body.role,
        "aud": body.aud,
    }
    return {key: value for key, value in attributes.items() if value is not None}, password_hash


@routes.get("/admin/users")
@declared
async def list_users(request: web.Request, token: Bearer, query: UserListQuery) -> web.Response:
    page, per_page = query.page, query.per_page
    result = json.loads(
        await db(request).call(
            "admin_list_users", admin_token=token, page=page, per_page=per_page, filter=query.filter or None
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
@declared
async def create_user(request: web.Request, token: Bearer, body: AdminUserAttributes) -> web.Response:
    seconds = ban_seconds(body.ban_duration)
    attributes, password_hash = await _attributes(request, body)
    user = await db(request).call(
        "admin_create_user",
        admin_token=token,
        attributes=Jsonb(attributes),
        password_hash=password_hash,
        ban_seconds=seconds,
        ip=client_ip(request),
    )
    return reply(user)


@routes.get("/admin/users/{user_id}")
@declared
async def get_user(request: web.Request, path: UserPath, token: Bearer) -> web.Response:
    return reply(await db(request).call("admin_get_user", admin_token=token, user_id=str(path.user_id)))


@routes.put("/admin/users/{user_id}")
@declared
async def update_user(request: web.Request, path: UserPath, token: Bearer, body: AdminUserAttributes) -> web.Response:
    if body.password:
        passwords(request).require_strong(body.password)
    seconds = ban_seconds(body.ban_duration)
    attributes, password_hash = await _attributes(request, body)
    user = await db(request).call(
        "admin_update_user",
        admin_token=token,
        user_id=str(path.user_id),
        attributes=Jsonb(attributes),
        password_hash=password_hash,
        ban_seconds=seconds,
        ip=client_ip(request),
    )
    return reply(user)


@routes.delete("/admin/users/{user_id}")
@declared
async def delete_user(request: web.Request, path: UserPath, token: Bearer, body: DeleteUserRequest) -> web.Response:
    result = await db(request).call(
        "admin_delete_user",
        admin_token=token,
        user_id=str(path.user_id),
        soft=bool(body.should_soft_delete),
        ip=client_ip(request),
    )
    return reply(result)


@routes.post("/invite")
@declared
async def invite(request: web.Request, token: Bearer, body: InviteRequest, query: RedirectQuery) -> web.Response:
    if not body.email:
        raise validation_failed("An email address is required")
    user = await db(request).call(
        "admin_invite_user",
        admin_token=token,
        email=body.email,
        data=Jsonb(body.data or {}),
        redirect_to=redirect_to(request, query.redirect_to),
        ip=client_ip(request),
    )
    return reply(user)


@routes.post("/admin/generate_link")
@declared
async def generate_link(
    request: web.Request, token: Bearer, body: GenerateLinkRequest, query: RedirectQuery
) -> web.Response:
    email, kind, password = body.email, body.type, body.password
    if not email or not kind:
        raise validation_failed("type and email are required")
    target = redirect_to(request, body.redirect_to, query.redirect_to)
    result: dict[str, Any] = json.loads(
        await db(request).call(
            "admin_generate_link",
            admin_token=token,
            type=kind,
            email=email,
            new_email=body.new_email or None,
            password_hash=await passwords(request).hash(password) if password else None,
            data=Jsonb(body.data or {}),
            redirect_to=target,
            ip=client_ip(request),
        )
    )
    link_type = (
        "email_change" if result["verification_type"].startswith("email_change") else result["verification_type"]
    )
    link = {"token": result["hashed_token"], "type": link_type, "redirect_to": target}
    result["action_link"] = f"{settings(request).external_url}/verify?{urlencode(link)}"
    result["redirect_to"] = target
    return reply(result)


@routes.get("/admin/audit")
@declared
async def audit(request: web.Request, token: Bearer, query: PageQuery) -> web.Response:
    entries = await db(request).call("admin_audit", admin_token=token, page=query.page, per_page=query.per_page)
    return reply(entries)
