"""The log: one line per request with its id, and no secret in any line; X-Request-Id on every answer."""

import io
import json
import logging
import re
from dataclasses import replace

import pytest

from authgres.app import create_app
from authgres.logs import JsonFormatter, TextFormatter
from authgres.state import DB
from tests.conftest import JWT_SECRET
from tests.http.helpers import API_2024, bearer, claims_of

PASSWORD = "correct horse battery staple"
WRONG = "incorrect donkey battery clip"
NEW_PASSWORD = "a brand new passphrase"
LINK_TOKEN = "f" * 28 + "0123456789abcdef"
HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
async def quiet_client(settings, aiohttp_server, aiohttp_client):
    """The app served as `authgres serve` serves it: without aiohttp's own access log."""
    app = create_app(replace(settings, refresh_token_reuse_interval=0))
    return await aiohttp_client(await aiohttp_server(app, access_log=None))


class Written:
    """What the root logger writes at DEBUG, as JSON lines and as text lines (formatted as they are
    emitted, within the request, as the service's handler formats them)."""

    def __init__(self):
        self.json, self.text = io.StringIO(), io.StringIO()
        self.handlers = [logging.StreamHandler(self.json), logging.StreamHandler(self.text)]
        self.handlers[0].setFormatter(JsonFormatter())
        self.handlers[1].setFormatter(TextFormatter())

    def lines(self):
        return [json.loads(line) for line in self.json.getvalue().splitlines()]

    def requests(self):
        return [line for line in self.lines() if line["logger"] == "authgres.access"]


@pytest.fixture
def written():
    root = logging.getLogger()
    level = root.level
    capture = Written()
    for handler in capture.handlers:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # every logger, every level
    yield capture
    root.setLevel(level)
    for handler in capture.handlers:
        root.removeHandler(handler)


async def test_no_password_token_code_or_key_is_logged(quiet_client, written, caplog):
    client = quiet_client
    signed_up = await (await client.post("/signup", json={"email": "log@example.com", "password": PASSWORD})).json()
    login = "/token?grant_type=password"
    signed_in = await (await client.post(login, json={"email": "log@example.com", "password": PASSWORD})).json()
    assert (await client.post(login, json={"email": "log@example.com", "password": WRONG})).status == 400
    assert (await client.get("/user", headers=bearer(signed_in))).status == 200

    refresh = "/token?grant_type=refresh_token"
    first = signed_in["refresh_token"]
    second = (await (await client.post(refresh, json={"refresh_token": first})).json())["refresh_token"]
    third = (await (await client.post(refresh, json={"refresh_token": second})).json())["refresh_token"]
    replay = await client.post(refresh, json={"refresh_token": first})
    assert (replay.status, (await replay.json())["error_code"]) == (400, "refresh_token_already_used")

    session = signed_up
    key = (await (await client.post("/api_keys", json={"name": "log"}, headers=bearer(session))).json())["key"]
    assert (await client.get("/user", headers={"X-Api-Key": key})).status == 200
    changed = await client.put("/user", json={"password": NEW_PASSWORD}, headers=bearer(session))
    assert changed.status == 200
    link = await client.get(f"/verify?token={LINK_TOKEN}&type=signup", allow_redirects=False)
    assert link.status == 303
    assert (await client.post("/verify", json={"type": "signup", "email": "log@example.com", "token": "918273"})).status

    secrets = [PASSWORD, WRONG, NEW_PASSWORD, LINK_TOKEN, "918273", key, first, second, third, JWT_SECRET]
    for token in (signed_up["access_token"], signed_in["access_token"]):
        secrets += [token, *token.split(".")[1:]]  # the claims and the signature, each alone too
    everything = "\n".join([written.json.getvalue(), written.text.getvalue(), caplog.text])
    assert "authgres.access" in everything and "GET /user 200" in everything
    assert [secret for secret in secrets if secret in everything] == []

    lines = written.requests()
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/signup", 200),
        ("POST", "/token", 200),
        ("POST", "/token", 400),
        ("GET", "/user", 200),
        ("POST", "/token", 200),
        ("POST", "/token", 200),
        ("POST", "/token", 400),
        ("POST", "/api_keys", 200),
        ("GET", "/user", 200),
        ("PUT", "/user", 200),
        ("GET", "/verify", 303),
        ("POST", "/verify", 403),
    ]
    user_id = signed_up["user"]["id"]
    assert [line.get("user_id") for line in lines] == [
        user_id,  # the session sign-up answers
        user_id,
        None,  # a failure names no one
        user_id,
        user_id,
        user_id,
        None,
        None,  # an API key's answer is the key, not the user
        user_id,
        user_id,
        None,
        None,
    ]
    assert all(HEX_ID.fullmatch(line["request_id"]) for line in lines)
    assert len({line["request_id"] for line in lines}) == len(lines)
    assert all(isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0 for line in lines)


async def test_request_ids_are_echoed_on_every_answer(client, written):
    given = {"X-Request-Id": "0f3c1b8e-5e1c-4a0e-9e1c-2f4b9c1d2e3f"}
    answers = [
        await client.get("/health", headers=given),
        await client.get("/user", headers=given),  # 401
        await client.get("/no/such/path", headers=given),  # 404, unmatched
        await client.patch("/user", headers=given),  # 405
        await client.get("/verify?type=signup&token=nonsense", headers=given, allow_redirects=False),  # 303
        await client.post("/signup", headers=given, data=b"{not json"),  # 400
    ]
    assert [answer.status for answer in answers] == [200, 401, 404, 405, 303, 400]
    assert {answer.headers["X-Request-Id"] for answer in answers} == {given["X-Request-Id"]}
    assert {line["request_id"] for line in written.requests()} == {given["X-Request-Id"]}

    for unfit in ["", "x" * 129, "two words", "naïve", "semi;colon", "<script>"]:
        answer = await client.get("/health", headers={"X-Request-Id": unfit})
        assert HEX_ID.fullmatch(answer.headers["X-Request-Id"]), unfit
    kept = ["a", "x" * 128, "Root=1-5759e988-bd862e3fe1be46a994272793", "b64+/=._:-"]
    for fit in kept:
        assert (await client.get("/health", headers={"X-Request-Id": fit})).headers["X-Request-Id"] == fit
    drawn = {(await client.get("/health")).headers["X-Request-Id"] for _ in range(3)}
    assert len(drawn) == 3 and all(HEX_ID.fullmatch(each) for each in drawn)
    # Browsers may read it.
    cors = await client.get("/health", headers={"Origin": "https://app.example.com"})
    assert "x-request-id" in cors.headers["Access-Control-Expose-Headers"]


async def test_an_unexpected_failure_names_the_request_in_the_answer_and_the_log(client, written):
    async def broken(*args, **kwargs):
        raise RuntimeError("something went wrong")

    client.server.app[DB].call_batched = broken
    session = await (await client.post("/signup", json={"email": "fail@example.com", "password": PASSWORD})).json()
    response = await client.get("/user", headers={**bearer(session), "X-Request-Id": "trace-42"})
    body = await response.json()
    assert (response.status, body["error_code"], body["error_id"]) == (500, "unexpected_failure", "trace-42")
    assert response.headers["X-Request-Id"] == "trace-42"
    (failure,) = [line for line in written.lines() if line["level"] == "ERROR"]
    assert (failure["logger"], failure["request_id"]) == ("authgres", "trace-42")
    assert "RuntimeError: something went wrong" in failure["exc"]
    text = [line for line in written.text.getvalue().splitlines() if " ERROR " in line]
    assert text[0].endswith("request_id=trace-42")
    # The modern envelope has no error_id, as in GoTrue.
    modern = await client.get("/user", headers={**bearer(session), **API_2024})
    assert "error_id" not in await modern.json()
    assert claims_of(session["access_token"])["sub"] == session["user"]["id"]


async def test_text_lines_read_well(client, written):
    session = await (await client.post("/signup", json={"email": "text@example.com", "password": PASSWORD})).json()
    await client.get("/user", headers={**bearer(session), "X-Request-Id": "r1"})
    line = [line for line in written.text.getvalue().splitlines() if " GET /user " in line][-1]
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} INFO GET /user 200 \d+\.\d ms user_id={session['user']['id']} "
        r"request_id=r1",
        line,
    ), line
