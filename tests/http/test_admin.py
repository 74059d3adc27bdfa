"""Admin API details the official clients rely on: pagination headers, filters, input errors, audit."""

import json
import time

from tests.conftest import JWT_SECRET
from tests.http.helpers import API_2024


def service_headers(service):
    key = service.execute(
        "select auth.sign(%s::json, %s)",
        (json.dumps({"role": "service_role", "exp": int(time.time()) + 600}), JWT_SECRET),
    ).fetchone()[0]
    return {"Authorization": f"Bearer {key}", **API_2024}


async def test_pagination_headers_and_filter(client, service):
    headers = service_headers(service)
    for n in range(5):
        response = await client.post(
            "/admin/users",
            headers=headers,
            json={"email": f"user{n}@example.com", "user_metadata": {"full_name": f"Person {n}"}},
        )
        assert response.status == 200
    response = await client.get("/auth/v1/admin/users?page=1&per_page=2", headers=headers)
    body = await response.json()
    assert [u["email"] for u in body["users"]] == ["user4@example.com", "user3@example.com"]
    assert body["aud"] == "authenticated"
    assert response.headers["X-Total-Count"] == "5"
    link = response.headers["Link"]
    assert link.split(";")[0].split("=")[1][0] == "2"  # how auth-js reads the next page
    assert 'rel="next"' in link and 'page=3&per_page=2>; rel="last"' in link
    last = await client.get("/admin/users?page=3&per_page=2", headers=headers)
    assert 'rel="next"' not in last.headers["Link"]
    empty = await client.get("/admin/users?page=&per_page=", headers=headers)
    assert len((await empty.json())["users"]) == 5
    filtered = await (await client.get("/admin/users?filter=Person 3", headers=headers)).json()
    assert [u["email"] for u in filtered["users"]] == ["user3@example.com"]
    bad = await client.get("/admin/users?page=zero", headers=headers)
    assert (bad.status, (await bad.json())["code"]) == (400, "validation_failed")


async def test_input_errors_change_nothing(client, service, admin):
    headers = service_headers(service)
    cases = [
        ({}, "validation_failed"),
        ({"email": "a@example.com", "ban_duration": "forever"}, "validation_failed"),
        ({"email": "a@example.com", "ban_duration": "9999999999h"}, "validation_failed"),
        ({"email": "a@example.com", "password": "x", "password_hash": "$2a$10$x"}, "validation_failed"),
        ({"email": "a@example.com", "password_hash": "plain"}, "validation_failed"),
        ({"email": "a@example.com", "id": "not-a-uuid"}, "validation_failed"),
        # A member of the wrong JSON type is bad_json, as GoTrue's decoder answers it.
        ({"email": "a@example.com", "email_confirm": "yes"}, "bad_json"),
        ({"email": "a@example.com", "user_metadata": [1]}, "bad_json"),
    ]
    for body, code in cases:
        response = await client.post("/admin/users", headers=headers, json=body)
        assert (response.status, (await response.json())["code"]) == (400, code), body
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0
    await client.post("/admin/users", headers=headers, json={"email": "a@example.com"})
    taken = await client.post("/admin/users", headers=headers, json={"email": "A@example.com"})
    assert (taken.status, (await taken.json())["code"]) == (422, "email_exists")


async def test_imported_bcrypt_hash_signs_in(client, service):
    import bcrypt

    headers = service_headers(service)
    imported = bcrypt.hashpw(b"from elsewhere", bcrypt.gensalt(rounds=4)).decode()
    await client.post(
        "/admin/users",
        headers=headers,
        json={"email": "imp@example.com", "password_hash": imported, "email_confirm": True},
    )
    response = await client.post(
        "/token?grant_type=password", json={"email": "imp@example.com", "password": "from elsewhere"}
    )
    assert response.status == 200


async def test_admin_actions_are_audited(client, service):
    headers = service_headers(service)
    created = await (await client.post("/admin/users", headers=headers, json={"email": "aud@example.com"})).json()
    await client.put(f"/admin/users/{created['id']}", headers=headers, json={"role": "editor"})
    await client.delete(f"/admin/users/{created['id']}", headers=headers)
    entries = await (await client.get("/admin/audit?per_page=10", headers=headers)).json()
    actions = [entry["payload"]["action"] for entry in entries]
    assert actions == ["user_deleted", "user_modified", "user_signedup"]
    assert all(entry["payload"]["traits"]["user_email"] == "aud@example.com" for entry in entries)
