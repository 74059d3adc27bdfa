"""Malformed input of every kind a fuzzer sent (NUL characters, deep nesting, lone surrogates, huge
numbers, wrong types, oversized bodies), on the endpoints it hit: each gets a 4xx JSON error in
GoTrue's envelope, never a 5xx, and leaves no trace in the database."""

import asyncio
import json
import uuid

import pytest

from tests.http.helpers import API_2024, bearer, sign_up
from tests.http.test_admin import service_headers

TABLES = (
    "users",
    "identities",
    "sessions",
    "refresh_tokens",
    "audit_log_entries",
    "email_outbox",
    "one_time_tokens",
    "api_keys",
    "mfa_factors",
    "mfa_challenges",
    "rate_limits",
    "webauthn_credentials",
    "webauthn_challenges",
)
FACTOR = str(uuid.uuid4())

# (method, path, who): who is None (public), "user" (the user's access token) or "admin" (service_role).
BODY_ENDPOINTS = [
    ("POST", "/signup", None),
    ("POST", "/token?grant_type=refresh_token", None),
    ("POST", "/token?grant_type=password", None),
    ("PUT", "/user", "user"),
    ("POST", "/otp", None),
    ("POST", "/magiclink", None),
    ("POST", "/recover", None),
    ("POST", "/resend", None),
    ("POST", "/verify", None),
    ("POST", "/factors", "user"),
    ("POST", f"/factors/{FACTOR}/verify", "user"),
    ("POST", "/api_keys", "user"),
    ("POST", "/admin/users", "admin"),
    ("POST", "/invite", "admin"),
    ("POST", "/admin/generate_link", "admin"),
]
# A member each endpoint reads as text, and one it reads as a free-form object (if any).
TEXT_MEMBER = {"/token?grant_type=refresh_token": "refresh_token", "/resend": "type", "/factors": "friendly_name"}
TEXT_MEMBER |= {"/api_keys": "name", f"/factors/{FACTOR}/verify": "code"}
OBJECT_MEMBER = {"/signup": "data", "/user": "data", "/otp": "data", "/magiclink": "data", "/invite": "data"}
OBJECT_MEMBER |= {"/admin/users": "user_metadata", "/admin/generate_link": "data"}


def text_member(path):
    return TEXT_MEMBER.get(path, "email")


@pytest.fixture
async def who(client, service):
    """Headers for each kind of caller, and a user with a session, so there is something to leave alone."""
    session = await sign_up(client, "present@example.com")
    return {None: {}, "user": bearer(session), "admin": service_headers(service)}


def snapshot(admin):
    return {
        table: admin.execute(
            f"select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from auth.{table} t"
        ).fetchone()[0]
        for table in TABLES
    }


async def refused(client, method, path, headers, *, status=400, **request):
    response = await client.request(method, path, headers={**API_2024, **headers}, **request)
    text = await response.text()
    assert response.status == status, (method, path, text)
    assert response.content_type == "application/json"
    body = json.loads(text)
    assert isinstance(body["code"], str) and isinstance(body["message"], str), body
    assert response.headers["X-Supabase-Api-Version"] == "2024-01-01"
    return body["code"], body["message"]


def malformed_bodies(path):
    """(body, the error_code it gets) for each kind of malformed body, aimed at members the endpoint reads."""
    member = text_member(path)
    cases = [
        # NUL characters, which PostgreSQL cannot store in text
        ({member: "a\x00@example.com"}, "validation_failed"),
        # lone surrogates, escaped in JSON
        (b'{"' + member.encode() + b'": "\\ud800@example.com"}', "bad_json"),
        (b'{"' + member.encode() + b'": "x\\udfff"}', "bad_json"),
        # lone surrogates as raw bytes (CESU-8), and bytes that are not UTF-8 at all
        (b'{"' + member.encode() + b'": "\xed\xa0\x80@example.com"}', "bad_json"),
        (b'{"' + member.encode() + b'": "\xff\xfe"}', "bad_json"),
        # nesting, in a member that is ignored or one that is read
        (b'{"x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "bad_json"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "bad_json"),
        # wrong types and out-of-bounds text
        ({member: 42}, "bad_json"),
        ({member: ["a@example.com"]}, "bad_json"),
        ({member: {"$gt": ""}}, "bad_json"),
        ({member: "x" * 5_000}, "validation_failed"),
        (b"[]", "bad_json"),
        (b'"text"', "bad_json"),
        (b"{", "bad_json"),
    ]
    object_member = OBJECT_MEMBER.get(path)
    if object_member:
        nested = b'{"' + object_member.encode() + b'": '
        cases += [
            (nested + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}", "bad_json"),
            (nested + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}", "bad_json"),
            (nested + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "bad_json"),
            ({object_member: {"note": "a\x00b"}}, "validation_failed"),
            ({object_member: {"a\x00": 1}}, "validation_failed"),
            ({object_member: {"n": 10**30}}, "validation_failed"),
            (nested + b'{"n": 1e400}}', "validation_failed"),
            (nested + b'{"n": ' + b"9" * 5_000 + b"}}", "validation_failed"),
            ({object_member: {"list": list(range(5_000))}}, "validation_failed"),
            ({object_member: [1, 2]}, "bad_json"),
            ({object_member: "text"}, "bad_json"),
        ]
    return cases


async def test_malformed_bodies_are_4xx_and_change_nothing(client, admin, who):
    before = snapshot(admin)
    for method, path, caller in BODY_ENDPOINTS:
        for body, code in malformed_bodies(path):
            request = {"json": body} if isinstance(body, dict) else {"data": body}
            answer = await refused(client, method, path, who[caller], **request)
            assert answer[0] == code, (path, body if len(body) < 99 else "...")
    assert snapshot(admin) == before


async def test_a_body_over_one_mebibyte_is_413_in_the_envelope(client, admin, who):
    before = snapshot(admin)
    for method, path, caller in BODY_ENDPOINTS:
        body = b'{"' + text_member(path).encode() + b'": "' + b"a" * (1 << 20) + b'"}'
        code, _ = await refused(client, method, path, who[caller], status=413, data=body)
        assert code == "request_entity_too_large", path
    assert snapshot(admin) == before


async def test_numbers_out_of_range_in_bodies(client, admin, who, service):
    before = snapshot(admin)
    for expires_in in (0, -1, 10**12, 10**30, 1.5, "60", True):
        code, _ = await refused(client, "POST", "/api_keys", who["user"], json={"name": "k", "expires_in": expires_in})
        assert code in ("validation_failed", "bad_json")
    for ban in ("99999999999h", "1e400h", 5, ["24h"]):
        code, _ = await refused(
            client, "POST", "/admin/users", who["admin"], json={"email": "b@example.com", "ban_duration": ban}
        )
        assert code in ("validation_failed", "bad_json")
    assert snapshot(admin) == before


MALFORMED_QUERIES = [
    ("/admin/users?per_page=1000000000000", "admin"),
    ("/admin/users?page=1000000000000", "admin"),
    ("/admin/users?page=99999999999999999999999999999", "admin"),
    ("/admin/users?page=0", "admin"),
    ("/admin/users?per_page=-1", "admin"),
    ("/admin/users?per_page=1001", "admin"),
    ("/admin/users?page=1e400", "admin"),
    ("/admin/users?page=zero", "admin"),
    ("/admin/users?filter=%00", "admin"),
    ("/admin/users?filter=" + "x" * 5000, "admin"),
    ("/admin/audit?per_page=1000000000000", "admin"),
    ("/admin/audit?page=-5", "admin"),
    ("/verify?type=signup&token=%00", None),
    ("/verify?type=%00&token=x", None),
    ("/verify?type=signup&token=x&redirect_to=http://localhost:3000/%00", None),
]


async def test_malformed_query_parameters_are_400(client, admin, who):
    before = snapshot(admin)
    for path, caller in MALFORMED_QUERIES:
        assert (await refused(client, "GET", path, who[caller]))[0] == "validation_failed", path
    assert snapshot(admin) == before


async def test_malformed_query_parameters_on_posts_are_400(client, admin, who):
    before = snapshot(admin)
    for method, path, caller, body in (
        ("POST", "/logout?scope=%00", "user", None),
        (
            "POST",
            "/signup?redirect_to=http://localhost:3000/%00",
            None,
            {"email": "q@example.com", "password": "x" * 9},
        ),
        ("POST", "/otp?redirect_to=" + "x" * 3000, None, {"email": "q@example.com"}),
        ("POST", "/token?grant_type=%00", None, {}),
    ):
        assert (await refused(client, method, path, who[caller], json=body))[0] == "validation_failed", path
    assert snapshot(admin) == before


async def test_a_nul_in_a_form_post_is_400(client, admin):
    before = snapshot(admin)
    code, _ = await refused(client, "POST", "/verify", {}, data={"token": "a\x00", "type": "signup"})
    assert code == "validation_failed"
    assert snapshot(admin) == before


async def test_malformed_path_ids_are_404(client, admin, who):
    before = snapshot(admin)
    for method, path, caller in (
        ("GET", "/admin/users/not-a-uuid", "admin"),
        ("DELETE", "/admin/users/%00", "admin"),
        ("POST", "/factors/1234/verify", "user"),
        ("DELETE", "/sessions/" + "f" * 5000, "user"),
        ("DELETE", "/api_keys/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "user"),
    ):
        assert (await refused(client, method, path, who[caller], status=404))[0] == "not_found", path
    assert snapshot(admin) == before


async def raw_request(server, request: bytes) -> tuple[int, dict, bytes]:
    """Sends bytes no well-behaved client library would (header values that are not UTF-8)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def test_a_token_that_is_not_utf8_is_403_bad_jwt(server, client, admin, who):
    before = snapshot(admin)
    token = who["user"]["Authorization"].split()[1].encode()
    for path in (b"/user", b"/sessions", b"/admin/users"):
        status, headers, body = await raw_request(
            server,
            b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Supabase-Api-Version: 2024-01-01\r\n"
            b"Authorization: Bearer \xff" + token + b"\r\n\r\n",
        )
        assert (status, json.loads(body)["code"]) == (403, "bad_jwt")
        assert headers["Content-Type"].startswith("application/json")
    assert snapshot(admin) == before


async def test_a_user_agent_that_is_not_utf8_is_stored_with_replacement_characters(server, admin):
    body = b'{"email": "agent@example.com", "password": "a good password"}'
    status, _, _ = await raw_request(
        server,
        b"POST /signup HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: Browser \xff\xfe/1.0\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
    )
    assert status == 200
    assert admin.execute("select user_agent from auth.sessions").fetchone()[0] == "Browser \ufffd\ufffd/1.0"
