"""The OpenAPI description is valid, names exactly the routes the app serves, and takes its request
half (parameters, bodies, security) from the handlers' declarations only."""

import msgspec
from openapi_spec_validator import validate

from authgres.inputs import declaration_of
from authgres.openapi import GENERATED, hand_written
from authgres.routes import TABLES


async def test_served_document_is_valid_openapi_3_1(client):
    response = await client.get("/auth/v1/openapi.json")
    document = await response.json()
    validate(document)
    assert document["openapi"].startswith("3.1")


async def test_every_route_is_described_and_nothing_else(client):
    document = await (await client.get("/openapi.json")).json()
    described = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = {(route.path, route.method) for table in TABLES for route in table}
    assert described == served


def test_the_hand_written_file_leaves_the_request_half_to_the_declarations():
    for path, item in hand_written()["paths"].items():
        for method, operation in item.items():
            assert not set(GENERATED) & set(operation), (method, path)


async def test_each_operation_documents_what_its_handler_declares(client):
    document = await (await client.get("/openapi.json")).json()
    for table in TABLES:
        for route in table:
            declaration = declaration_of(route.handler)
            operation = document["paths"][route.path][route.method.lower()]
            documented = {(p["in"], p["name"]) for p in operation["parameters"] if "name" in p}
            declared = {
                (where, field.encode_name)
                for where, kind in (
                    ("path", declaration.path),
                    ("query", declaration.query),
                    ("header", declaration.headers),
                )
                if kind is not None
                for field in msgspec.structs.fields(kind)
            }
            assert documented == declared, route
            assert {name for where, name in documented if where == "path"} == set(
                route.path.replace("}", "{").split("{")[1::2]
            ), route
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            assert body == ({"$ref": f"#/components/schemas/{declaration.body.__name__}"} if declaration.body else None)
            assert ("security" in operation) == declaration.bearer, route
