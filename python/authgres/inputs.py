"""What each endpoint accepts, declared once: a handler's signature.

A handler names its inputs by type: `body: SignupRequest` (the JSON body, decoded into that msgspec
Struct), `query: RedirectQuery`, `path: UserPath` (the UUID path segments), `headers: EventsHeaders`
(request headers it reads) and `token: Bearer` (the access token or API key it authenticates with).
`@declared` decodes each of them before the handler runs, so a handler starts with well-typed, bounded
values; openapi.py builds the request half of /openapi.json (parameters, request bodies, security)
from the same signatures.

What a refusal answers (GoTrue's decoder answers bad_json for whatever Go's json.Unmarshal refuses):
- not JSON, not an object, invalid UTF-8 or a lone surrogate, a member of the wrong JSON type,
  nesting deeper than MAX_DEPTH: 400 bad_json;
- a value of the right type outside its bounds (length, range, a NUL character, which PostgreSQL
  cannot store in text, a malformed UUID), or a bad query parameter or header: 400 validation_failed;
- a path segment that is not a UUID: 404 (routes/__init__.py routes only UUID-shaped segments, so
  DELETE /factors/recovery_codes is a 405, not a factor that cannot exist);
- a body over 1 MiB: 413 request_entity_too_large (aiohttp's client_max_size, see app.py).
A null or absent member is None, which handlers read as GoTrue reads a missing field: empty.
"""

from __future__ import annotations

import functools
import inspect
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, get_type_hints

import msgspec
from aiohttp import web

from authgres.errors import AuthError, validation_failed
from authgres.http import Bearer, bearer_token

MAX_DEPTH = 32  # nesting levels of a JSON object member (user metadata); the body itself is level 0
MAX_ITEMS = 1000  # members of one object or array inside such a member
MIN_INTEGER, MAX_INTEGER = -(2**63), 2**64 - 1  # integers inside it: what 64-bit clients can read back

# Documented on every string; checked by decode_body (in declared text members, only when the raw body
# holds an escaped NUL: msgspec's per-string regex would cost a microsecond a request; in free-form
# objects, always), and in every query parameter and form field. A NUL in an ignored member is harmless.
_NUL_FREE = {"pattern": "^[^\x00]*$"}

Text = Annotated[str, msgspec.Meta(max_length=1024, extra_json_schema=_NUL_FREE)]
"""A short string: an address, a password, a code, a token, a name."""
Url = Annotated[str, msgspec.Meta(max_length=2048, extra_json_schema=_NUL_FREE)]
Channel = Annotated[
    str, msgspec.Meta(pattern="^(sms|whatsapp)?$", description="How a code is texted: sms (the default) or whatsapp")
]
"""How a phone code is sent (empty: sms)."""
JsonObject = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=f"A JSON object: at most {MAX_DEPTH} levels deep and {MAX_ITEMS} members per object or array, "
        "no NUL character in any string, integers within 64 bits"
    ),
]


class Body(msgspec.Struct):
    """A JSON request body. msgspec checks the type and bounds of each declared member; NUL characters
    and what a free-form JsonObject member holds are checked by decode_body."""

    form: ClassVar[bool] = False  # also accepted as application/x-www-form-urlencoded


@functools.cache
def _members(kind: type[Body]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A body's text members and its free-form object members."""

    def kinds(info: msgspec.inspect.Type) -> list[msgspec.inspect.Type]:
        if isinstance(info, msgspec.inspect.Metadata):
            return kinds(info.type)
        if isinstance(info, msgspec.inspect.UnionType):
            return [kind for member in info.types for kind in kinds(member)]
        return [info]

    text, objects = [], []
    for field in msgspec.structs.fields(kind):
        types = kinds(msgspec.inspect.type_info(field.type))
        text += [field.name] * any(isinstance(t, msgspec.inspect.StrType) for t in types)
        objects += [field.name] * any(isinstance(t, msgspec.inspect.DictType) for t in types)
    return tuple(text), tuple(objects)


class Query(msgspec.Struct):
    """Query parameters; an empty one (`page=`, as the clients send) counts as absent."""


class Path(msgspec.Struct):
    """UUID path segments; routes/__init__.py lets only UUID_PATTERN reach them."""


class Headers(msgspec.Struct):
    """Request headers, each a field named as its header (`msgspec.field(name="Last-Event-ID")`), UNSET when
    absent. A header that is present must hold a valid value: an empty one is refused like any other."""


UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"


class RedirectQuery(Query):
    redirect_to: Annotated[
        Url,
        msgspec.Meta(
            description="Where the emailed link returns to: the site URL or an AUTHGRES_URI_ALLOW_LIST match "
            "(else the site URL)"
        ),
    ] = ""


class UserPath(Path):
    user_id: uuid.UUID


class FactorPath(Path):
    factor_id: uuid.UUID


class UserFactorPath(Path):
    user_id: uuid.UUID
    factor_id: uuid.UUID


class SessionPath(Path):
    session_id: uuid.UUID


class KeyPath(Path):
    key_id: uuid.UUID


def _check_json(value: Any, where: str, depth: int) -> None:
    """What msgspec leaves to us in a free-form member: depth, size, NUL characters, integer range."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _nul(where)
    elif isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            raise bad_json(f"{where} is nested deeper than {MAX_DEPTH} levels")
        if len(value) > MAX_ITEMS:
            raise validation_failed(f"{where}: at most {MAX_ITEMS} members")
        if isinstance(value, dict):
            for key, member in value.items():
                _check_json(key, where, depth)
                _check_json(member, f"{where}.{key}", depth + 1)
        else:
            for index, member in enumerate(value):
                _check_json(member, f"{where}[{index}]", depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and not MIN_INTEGER <= value <= MAX_INTEGER:
        raise validation_failed(f"{where}: integers must fit in 64 bits")


def _nul(where: str) -> AuthError:
    return validation_failed(f"{where} must not contain a NUL character")


def bad_json(detail: str) -> AuthError:
    return AuthError(400, "bad_json", f"Could not parse request body as JSON: {detail}")


_TYPE_MISMATCH = re.compile(r"Expected `[^`]+`, got `[^`]+`")


def _refusal(error: msgspec.ValidationError) -> AuthError:
    """A wrong JSON type is bad_json, as from GoTrue's decoder; a value out of bounds is validation_failed.
    msgspec words every type mismatch "Expected `<type>`, got `<type>`" (tests/unit/test_inputs.py pins it)."""
    message = str(error)
    if _TYPE_MISMATCH.match(message):
        return bad_json(message)
    return validation_failed(message)


def decode_body(raw: bytes, kind: type[Body]) -> Body:
    """The body as its declared Struct; an empty body is an empty object."""
    if not raw or raw.isspace():
        raw = b"{}"
    try:
        body = msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as error:
        raise _refusal(error) from None
    except msgspec.DecodeError as error:
        raise bad_json(str(error)) from None
    except RecursionError:
        # msgspec counts its depth against the interpreter's recursion limit: 100,000 levels end here too.
        raise bad_json(f"nested deeper than {MAX_DEPTH} levels") from None
    # JSON can only carry a NUL escaped; rare, so the text members are looked at only then.
    return _checked(body, text=b"\\u0000" in raw)


def _checked(body: Body, *, text: bool) -> Body:
    """body, once NUL characters (in its text members, when `text`) and its free-form objects pass."""
    text_members, objects = _members(type(body))
    for name in text_members if text else ():
        if "\x00" in (getattr(body, name) or ""):
            raise _nul(f"$.{name}")
    for name in objects:
        value = getattr(body, name)
        if value is not None:
            _check_json(value, f"$.{name}", 1)
    return body


def _convert(values: dict[str, str], kind: type[msgspec.Struct], what: str) -> Any:
    for key, value in values.items():
        if "\x00" in value:
            raise _nul(f"{what} {key}")
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as error:
        raise validation_failed(f"Invalid {what}: {error}") from None


def decode_query(request: web.Request, kind: type[Query]) -> Query:
    values: dict[str, str] = {}
    for key, value in request.query.items():
        if value != "":
            values.setdefault(key, value)  # the first, as Go's URL.Query().Get
    result: Query = _convert(values, kind, "query parameter")
    return result


def decode_headers(request: web.Request, kind: type[Headers]) -> Headers:
    names = (field.encode_name for field in msgspec.structs.fields(kind))
    values = {name: request.headers[name] for name in names if name in request.headers}
    result: Headers = _convert(values, kind, "header")
    return result


def decode_path(request: web.Request, kind: type[Path]) -> Path:
    try:
        result: Path = msgspec.convert(dict(request.match_info), kind)
    except msgspec.ValidationError as error:
        raise AuthError(404, "validation_failed", f"Invalid path: {error}") from None
    return result


async def read_body(request: web.Request, kind: type[Body]) -> Body:
    if kind.form and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        result: Body = _convert({k: v for k, v in form.items() if isinstance(v, str)}, kind, "form field")
        return _checked(result, text=False)  # _convert refused NUL characters
    return decode_body(await request.read(), kind)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Declaration:
    """What one endpoint accepts, read from its handler's signature."""

    path: type[Path] | None = None
    query: type[Query] | None = None
    body: type[Body] | None = None
    headers: type[Headers] | None = None
    bearer: bool = False


_DECLARATIONS: dict[object, Declaration] = {}


def declared(handler: Callable[..., Awaitable[web.StreamResponse]]) -> Handler:
    """The aiohttp handler that decodes what `handler` declares and passes it on, by parameter name."""
    hints = get_type_hints(handler)
    found: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name in list(inspect.signature(handler).parameters)[1:]:
        hint = hints[name]
        role = (
            "bearer"
            if hint is Bearer
            else next(
                (
                    role
                    for role, base in (("path", Path), ("query", Query), ("body", Body), ("headers", Headers))
                    if issubclass(hint, base)
                ),
                None,
            )
        )
        if role is None or role in found:
            raise TypeError(f"{handler.__qualname__}: cannot declare {name}: {hint}")
        found[role], names[role] = (True if role == "bearer" else hint), name
    declaration = Declaration(**found)

    @functools.wraps(handler)
    async def decoding(request: web.Request) -> web.StreamResponse:
        inputs: dict[str, Any] = {}
        # As GoTrue: no such resource (404), then who is asking (401), then what they ask (400).
        if declaration.path is not None:
            inputs[names["path"]] = decode_path(request, declaration.path)
        if declaration.bearer:
            inputs[names["bearer"]] = bearer_token(request)
        if declaration.headers is not None:
            inputs[names["headers"]] = decode_headers(request, declaration.headers)
        if declaration.query is not None:
            inputs[names["query"]] = decode_query(request, declaration.query)
        if declaration.body is not None:
            inputs[names["body"]] = await read_body(request, declaration.body)
        return await handler(request, **inputs)

    _DECLARATIONS[decoding] = declaration
    return decoding


def declaration_of(handler: object) -> Declaration | None:
    return _DECLARATIONS.get(handler)
