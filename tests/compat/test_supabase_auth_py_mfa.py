"""The official Python client's MFA API against the live server, with codes from pyotp."""

import json
import time

import pyotp
from supabase_auth import AsyncGoTrueAdminAPI, AsyncGoTrueClient

from tests.conftest import JWT_SECRET


def next_step_code(secret: str) -> str:
    """The code of the next 30 s step: accepted (one step of drift) and never the one just used."""
    return pyotp.TOTP(secret).at(time.time() + 30)


async def test_enroll_verify_and_assurance_levels(gotrue, server):
    await gotrue.sign_up({"email": "mfa@example.com", "password": "a good password"})
    enrolled = await gotrue.mfa.enroll({"factor_type": "totp", "friendly_name": "phone app", "issuer": "authgres"})
    assert enrolled.type == "totp" and enrolled.friendly_name == "phone app"
    assert enrolled.totp.qr_code.startswith("data:image/svg+xml;utf-8,<svg")  # the client prefixes our raw SVG
    assert enrolled.totp.uri.startswith("otpauth://totp/authgres:mfa%40example.com?")
    assert f"secret={enrolled.totp.secret}" in enrolled.totp.uri

    challenge = await gotrue.mfa.challenge({"factor_id": enrolled.id})
    assert isinstance(challenge.expires_at, int) and challenge.factor_type == "totp"
    verified = await gotrue.mfa.verify(
        {"factor_id": enrolled.id, "challenge_id": challenge.id, "code": pyotp.TOTP(enrolled.totp.secret).now()}
    )
    assert verified.access_token
    level = await gotrue.mfa.get_authenticator_assurance_level()
    assert (level.current_level, level.next_level) == ("aal2", "aal2")
    assert [entry.method for entry in level.current_authentication_methods] == ["totp", "password"]

    factors = await gotrue.mfa.list_factors()
    assert [f.id for f in factors.totp] == [enrolled.id]

    # A new password sign-in elsewhere is aal1, with aal2 as the next level.
    other = AsyncGoTrueClient(url=str(server.make_url("/auth/v1")), auto_refresh_token=False)
    try:
        await other.sign_in_with_password({"email": "mfa@example.com", "password": "a good password"})
        level = await other.mfa.get_authenticator_assurance_level()
        assert (level.current_level, level.next_level) == ("aal1", "aal2")
        stepped_up = await other.mfa.challenge_and_verify(
            {"factor_id": enrolled.id, "code": next_step_code(enrolled.totp.secret)}
        )
        assert stepped_up.access_token
        assert (await other.mfa.get_authenticator_assurance_level()).current_level == "aal2"
        # Refreshing keeps the level.
        await other.refresh_session()
        assert (await other.mfa.get_authenticator_assurance_level()).current_level == "aal2"
    finally:
        await other.close()

    removed = await gotrue.mfa.unenroll({"factor_id": enrolled.id})
    assert removed.id == enrolled.id
    assert (await gotrue.mfa.list_factors()).all == []


async def test_admin_lists_and_deletes_factors(gotrue, server, service, superuser):
    signed_up = await gotrue.sign_up({"email": "admin-mfa@example.com", "password": "a good password"})
    enrolled = await gotrue.mfa.enroll({"factor_type": "totp", "friendly_name": "app"})
    service_key = service.execute(
        "select auth.sign(%s::json, %s)",
        (json.dumps({"role": "service_role", "exp": int(time.time()) + 600}), JWT_SECRET),
    ).fetchone()[0]
    admin = AsyncGoTrueAdminAPI(
        url=str(server.make_url("/auth/v1")), headers={"Authorization": f"Bearer {service_key}"}
    )
    try:
        listed = await admin.mfa.list_factors({"user_id": signed_up.user.id})
        assert [factor.id for factor in listed] == [enrolled.id]
        deleted = await admin.mfa.delete_factor({"id": enrolled.id, "user_id": signed_up.user.id})
        assert deleted.id == enrolled.id
        assert await admin.mfa.list_factors({"user_id": signed_up.user.id}) == []
    finally:
        await admin.close()
    actions = [a for (a,) in superuser.execute("select payload->>'action' from auth.audit_log_entries")]
    assert actions.count("factor_deleted_by_admin") == 1
