"""The OpenAPI description served at /openapi.json, built once (on the first request for it).

openapi.json (package data, hand-written) holds what only prose can say: each operation's summary and
its answers. The request half of each operation is generated from its handler's declaration
(inputs.py), the same one that decodes the requests, so the two cannot disagree: parameters (path,
query, declared headers and the API-version header), the request body's schema (msgspec's JSON Schema
of the Struct, bounds included), bearer security, and the error answers decoding itself can give (400
for a body, query or header, 413 for a body, 404 for a path, 401 and 403 for a bearer token).
tests/http/test_openapi.py checks that the hand-written file declares none of these itself.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from authgres.inputs import Declaration, declaration_of

_REF = "#/components/schemas/{name}"
_ERROR = {"$ref": "#/components/responses/Error"}
_API_VERSION = {"$ref": "#/components/parameters/ApiVersion"}
GENERATED = ("parameters", "requestBody", "security")


def hand_written() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(resources.files("authgres").joinpath("openapi.json").read_text("utf-8"))
    return document


def _parameters(kind: type[msgspec.Struct], where: str) -> list[dict[str, Any]]:
    (reference,), components = msgspec.json.schema_components([kind], ref_template=_REF)
    schema = components[reference["$ref"].rsplit("/", 1)[1]]
    parameters = []
    for name, field in schema["properties"].items():
        field = dict(field)
        if field.get("default") == "":  # absent, to the handler; not a value a client would send
            del field["default"]
        parameter = {"name": name, "in": where, "required": where == "path", "schema": field}
        if "description" in field:
            parameter["description"] = field.pop("description")
        parameters.append(parameter)
    return parameters


def _request(operation: dict[str, Any], declaration: Declaration) -> dict[str, Any]:
    """The operation with its request half, and the answers decoding can give, filled in."""
    operation = dict(operation)
    parameters = []
    if declaration.path is not None:
        parameters += _parameters(declaration.path, "path")
    if declaration.query is not None:
        parameters += _parameters(declaration.query, "query")
    if declaration.headers is not None:
        parameters += _parameters(declaration.headers, "header")
    operation["parameters"] = [*parameters, _API_VERSION]
    answers = dict(operation["responses"])
    if declaration.body is not None:
        body = {"schema": {"$ref": _REF.format(name=declaration.body.__name__)}}
        content = {"application/json": body}
        if declaration.body.form:
            content["application/x-www-form-urlencoded"] = body
        # Optional: an empty body reads as an empty object.
        operation["requestBody"] = {"required": False, "content": content}
        answers.setdefault("413", _ERROR)
    if declaration.body is not None or declaration.query is not None or declaration.headers is not None:
        answers.setdefault("400", _ERROR)
    if declaration.path is not None:
        answers.setdefault("404", _ERROR)
    if declaration.bearer:
        operation["security"] = [{"bearer": []}]
        answers.setdefault("401", _ERROR)
        answers.setdefault("403", _ERROR)
    operation["responses"] = dict(sorted(answers.items()))
    order = ("summary", "description", "operationId", "security", "parameters", "requestBody", "responses")
    return {key: operation[key] for key in sorted(operation, key=lambda key: order.index(key) if key in order else 99)}


@functools.cache
def document() -> bytes:
    """The served document, as JSON."""
    from authgres.routes import TABLES  # the routes serve this document: imported once they exist

    openapi = hand_written()
    bodies: list[type[msgspec.Struct]] = []
    for table in TABLES:
        for route in table:
            assert isinstance(route, web.RouteDef)
            declaration = declaration_of(route.handler)
            assert declaration is not None, f"{route.method} {route.path} has no declaration"
            operations = openapi["paths"][route.path]
            operations[route.method.lower()] = _request(operations[route.method.lower()], declaration)
            if declaration.body is not None and declaration.body not in bodies:
                bodies.append(declaration.body)
    _, schemas = msgspec.json.schema_components(bodies, ref_template=_REF)
    clashes = set(schemas) & set(openapi["components"]["schemas"])
    assert not clashes, f"request bodies named like hand-written schemas: {clashes}"
    openapi["components"]["schemas"].update(schemas)
    return json.dumps(openapi, ensure_ascii=False).encode()
