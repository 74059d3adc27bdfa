"""The official Python client's admin API, with a service_role key, against the live server."""

import json
import time

import pytest
from supabase_auth import AsyncGoTrueAdminAPI, AsyncGoTrueClient
from supabase_auth.errors import AuthApiError

from tests.conftest import JWT_SECRET
from tests.http.mail import code_in


def key_for(service, role: str) -> str:
    payload = json.dumps({"role": role, "exp": int(time.time()) + 600})
    return service.execute("select auth.sign(%s::json, %s)", (payload, JWT_SECRET)).fetchone()[0]


@pytest.fixture
async def admin_api(server, service):
    client = AsyncGoTrueAdminAPI(
        url=str(server.make_url("/auth/v1")), headers={"Authorization": f"Bearer {key_for(service, 'service_role')}"}
    )
    yield client
    await client.close()


async def test_user_lifecycle(admin_api, gotrue, superuser):
    created = await admin_api.create_user(
        {
            "email": "made@example.com",
            "password": "admin chosen",
            "email_confirm": True,
            "user_metadata": {"name": "Made"},
            "app_metadata": {"plan": "pro"},
        }
    )
    user = created.user
    assert user.email == "made@example.com" and user.email_confirmed_at is not None
    assert user.app_metadata["plan"] == "pro" and user.app_metadata["provider"] == "email"
    assert (await gotrue.sign_in_with_password({"email": "made@example.com", "password": "admin chosen"})).session

    assert (await admin_api.get_user_by_id(user.id)).user.email == "made@example.com"
    listed = await admin_api.list_users()
    assert [u.email for u in listed] == ["made@example.com"]

    updated = await admin_api.update_user_by_id(
        user.id, {"user_metadata": {"name": None, "team": "blue"}, "password": "new admin password"}
    )
    assert updated.user.user_metadata.get("team") == "blue" and "name" not in updated.user.user_metadata
    with pytest.raises(AuthApiError) as raised:  # the password change ended the user's session
        await gotrue.get_user()
    assert raised.value.code == "session_not_found"

    banned = await admin_api.update_user_by_id(user.id, {"ban_duration": "24h"})
    assert banned.user.banned_until is not None
    with pytest.raises(AuthApiError) as raised:
        await gotrue.sign_in_with_password({"email": "made@example.com", "password": "new admin password"})
    assert raised.value.code == "user_banned"
    unbanned = await admin_api.update_user_by_id(user.id, {"ban_duration": "none"})
    assert unbanned.user.banned_until is None

    await admin_api.delete_user(user.id)
    with pytest.raises(AuthApiError) as raised:
        await admin_api.get_user_by_id(user.id)
    assert (raised.value.status, raised.value.code) == (404, "user_not_found")


async def test_soft_delete_frees_the_address(admin_api, superuser):
    created = (await admin_api.create_user({"email": "soft@example.com", "password": "x" * 10})).user
    await admin_api.delete_user(created.id, should_soft_delete=True)
    row = superuser.execute(
        "select email, deleted_at is not null from auth.users where id = %s", (created.id,)
    ).fetchone()
    assert row == (None, True)
    again = await admin_api.create_user({"email": "soft@example.com", "password": "x" * 10})
    assert again.user.id != created.id


async def test_invite_and_accept(mail_server, service, inbox):
    # The code is read from the email the invitation sends (the outbox row gives up its code once sent).
    url = str(mail_server.make_url("/auth/v1"))
    admin_api = AsyncGoTrueAdminAPI(url=url, headers={"Authorization": f"Bearer {key_for(service, 'service_role')}"})
    gotrue = AsyncGoTrueClient(url=url, auto_refresh_token=False)
    try:
        invited = await admin_api.invite_user_by_email("guest@example.com", {"data": {"team": "red"}})
        assert invited.user.invited_at is not None and invited.user.email_confirmed_at is None
        code = code_in(await inbox.next_to("guest@example.com"))
        accepted = await gotrue.verify_otp({"email": "guest@example.com", "token": code, "type": "invite"})
        assert accepted.user.email_confirmed_at is not None
        assert accepted.user.user_metadata["team"] == "red"
    finally:
        await admin_api.close()
        await gotrue.close()


@pytest.mark.parametrize(
    "link_type", ["signup", "invite", "magiclink", "recovery", "email_change_current", "email_change_new"]
)
async def test_generate_link_for_each_type(admin_api, gotrue, superuser, link_type):
    if link_type in ("magiclink", "recovery", "email_change_current", "email_change_new"):
        await admin_api.create_user({"email": "link@example.com", "password": "x" * 10, "email_confirm": True})
    params = {"type": link_type, "email": "link@example.com", "options": {"redirect_to": "http://localhost:3000/x"}}
    if link_type == "signup":
        params["password"] = "a good password"
    if link_type.startswith("email_change"):
        params["new_email"] = "changed@example.com"
    generated = await admin_api.generate_link(params)
    properties = generated.properties
    assert properties.hashed_token and properties.email_otp.isdigit()
    assert f"token={properties.hashed_token}" in properties.action_link
    assert properties.redirect_to == "http://localhost:3000/x"
    assert generated.user.email == "link@example.com"
    assert superuser.execute("select count(*) from auth.email_outbox").fetchone()[0] == 0  # nothing sent
    verified = await gotrue.verify_otp({"token_hash": properties.hashed_token, "type": properties.verification_type})
    assert verified.session is not None


async def test_a_user_token_is_refused_on_every_admin_route(server, gotrue, client):
    session = (await gotrue.sign_up({"email": "plain@example.com", "password": "a good password"})).session
    user_id = session.user.id
    headers = {"Authorization": f"Bearer {session.access_token}", "X-Supabase-Api-Version": "2024-01-01"}
    routes = [
        ("GET", "/admin/users"),
        ("POST", "/admin/users"),
        ("GET", f"/admin/users/{user_id}"),
        ("PUT", f"/admin/users/{user_id}"),
        ("DELETE", f"/admin/users/{user_id}"),
        ("POST", "/invite"),
        ("POST", "/admin/generate_link"),
        ("GET", "/admin/audit"),
        ("GET", f"/admin/users/{user_id}/factors"),
        ("DELETE", f"/admin/users/{user_id}/factors/{user_id}"),
    ]
    for method, path in routes:
        body = {"email": "x@example.com", "type": "signup", "password": "a good password"}
        response = await client.request(
            method, f"/auth/v1{path}", headers=headers, json=None if method in ("GET", "DELETE") else body
        )
        assert (response.status, (await response.json())["code"]) == (403, "not_admin"), (method, path)
