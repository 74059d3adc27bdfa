"""GET /user under load: requests queued behind a busy connection share one database call."""

import asyncio

from tests.http.helpers import API_2024, bearer, sign_up


async def test_queued_requests_each_get_their_own_answer(make_client):
    # One connection: while it serves the first request, all the others queue and go as one batch.
    client = await make_client(db_pool_min=1, db_pool_max=1)
    sessions = [await sign_up(client, f"batch{i}@example.com") for i in range(5)]
    ended = await sign_up(client, "ended@example.com")
    assert (await client.post("/logout", headers=bearer(ended))).status == 204
    key = await (await client.post("/api_keys", json={"name": "script"}, headers=bearer(sessions[0]))).json()

    cases = [({"Authorization": f"Bearer {s['access_token']}"}, 200, s["user"]["id"]) for s in sessions]
    cases += [
        ({"Authorization": f"Bearer {ended['access_token']}"}, 403, "session_not_found"),
        ({"Authorization": "Bearer not.a.token"}, 403, "bad_jwt"),
        ({"X-Api-Key": key["key"]}, 200, sessions[0]["user"]["id"]),
        ({}, 401, "no_authorization"),
    ]
    cases = cases * 5

    responses = await asyncio.gather(*(client.get("/user", headers={**API_2024, **headers}) for headers, _, _ in cases))
    for response, (_, status, expected) in zip(responses, cases, strict=True):
        body = await response.json()
        assert response.status == status
        assert (body["id"] if status == 200 else body["code"]) == expected
