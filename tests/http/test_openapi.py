"""The OpenAPI description is valid and names exactly the routes the app serves."""

from openapi_spec_validator import validate

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
