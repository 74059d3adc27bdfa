"""GET /user and refresh under load: requests queued behind a busy connection share one database call."""

import asyncio
import json

from authgres.cli import manage_signing_keys
from tests.http.helpers import API_2024, bearer, claims_of, header_of, sign_up


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


async def test_queued_refreshes_each_rotate_their_own_session(make_client):
    client = await make_client(db_pool_min=1, db_pool_max=1)
    sessions = [await sign_up(client, f"refresh{i}@example.com") for i in range(6)]
    spent = sessions[0]["refresh_token"]
    first = await client.post("/token?grant_type=refresh_token", json={"refresh_token": spent})
    assert first.status == 200
    live = (await first.json())["refresh_token"]

    tokens = [s["refresh_token"] for s in sessions[1:]] + ["not-a-refresh-token-at-all", live, live]
    responses = await asyncio.gather(
        *(client.post("/token?grant_type=refresh_token", headers=API_2024, json={"refresh_token": t}) for t in tokens)
    )
    bodies = [await response.json() for response in responses]
    for session, body in zip(sessions[1:], bodies, strict=False):
        assert claims_of(body["access_token"])["session_id"] == claims_of(session["access_token"])["session_id"]
        assert body["user"]["id"] == session["user"]["id"]
    assert (responses[5].status, bodies[5]["code"]) == (400, "refresh_token_not_found")
    # The same live token twice in one batch: both get the one token it rotated to.
    assert responses[6].status == responses[7].status == 200
    assert bodies[6]["refresh_token"] == bodies[7]["refresh_token"] != live


async def test_a_batch_can_fetch_a_new_signing_key_through_a_one_connection_pool(make_client, dsn):
    client = await make_client(db_pool_min=1, db_pool_max=1)
    session = await sign_up(client, "rotated@example.com")
    manage_signing_keys(dsn("authgres_service"), "add")
    kid = json.loads(manage_signing_keys(dsn("authgres_service"), "rotate"))["kid"]
    # The server has never seen this key: signing the batch's token fetches it, which needs the only
    # connection, so the batch must have given it back first.
    response = await asyncio.wait_for(
        client.post("/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}), timeout=10
    )
    assert response.status == 200
    assert header_of((await response.json())["access_token"])["kid"] == kid
