"""Recovery codes through @supabase/auth-js's mfa.recoveryCodes (tests/node/run.mjs), unchanged: generate
beside a TOTP factor, status, a code raising another device's session to aal2, regenerate, unenroll."""

import pyotp
import pytest

from tests.compat.test_auth_js_pkce import Browser

PASSWORD = "a good password"
EXPERIMENTAL = {"recoveryCodes": True}  # auth-js keeps the API behind this flag


@pytest.fixture
async def server(make_client):
    return await make_client(mfa_recovery_codes_with_first_factor=False)


def ok(result):
    assert result["error"] is None, result
    return result["data"]


async def test_recovery_codes_through_auth_js(server, tmp_path):
    laptop = Browser(server, tmp_path / "laptop.json")
    ok(await laptop.run("signUp", email="js@example.com", password=PASSWORD))
    factor = ok(await laptop.run("mfaEnrollTotp"))
    ok(
        await laptop.run(
            "mfaChallengeAndVerify", factor_id=factor["id"], code=pyotp.TOTP(factor["totp"]["secret"]).now()
        )
    )

    codes = ok(await laptop.run("recoveryCodesGenerate", friendly_name="Backup codes", experimental=EXPERIMENTAL))
    assert (codes["type"], codes["friendly_name"], codes["total"], len(codes["codes"])) == (
        "recovery_code",
        "Backup codes",
        10,
        10,
    )
    status = ok(await laptop.run("recoveryCodesStatus", experimental=EXPERIMENTAL))
    assert status == {"id": codes["id"], "type": "recovery_code", "total": 10, "remaining": 10}
    factors = ok(await laptop.run("mfaListFactors"))
    assert [f["id"] for f in factors["recovery_code"]] == [codes["id"]]
    again = await laptop.run("recoveryCodesGenerate", experimental=EXPERIMENTAL)
    assert again["error"]["code"] == "mfa_verified_factor_exists"

    # A phone without the authenticator app: the password, then a code as the user copied it.
    phone = Browser(server, tmp_path / "phone.json")
    ok(await phone.run("signInWithPassword", email="js@example.com", password=PASSWORD))
    assert ok(await phone.run("mfaAal"))["currentLevel"] == "aal1"
    typed = "-".join(codes["codes"][0][i : i + 4] for i in range(0, 16, 4)).upper()
    verified = await phone.run("recoveryCodesVerify", code=typed, experimental=EXPERIMENTAL)
    assert ok(verified)["access_token"] and verified["events"][-1] == "MFA_CHALLENGE_VERIFIED"
    level = ok(await phone.run("mfaAal"))
    assert level["currentLevel"] == "aal2"
    assert level["currentAuthenticationMethods"][0]["method"] == "mfa/recovery_code"
    spent = await phone.run("recoveryCodesVerify", code=codes["codes"][0], experimental=EXPERIMENTAL)
    assert (spent["error"]["code"], spent["error"]["status"]) == ("mfa_verification_failed", 422)
    assert ok(await phone.run("recoveryCodesStatus", experimental=EXPERIMENTAL))["remaining"] == 9

    new = ok(await laptop.run("recoveryCodesRegenerate", experimental=EXPERIMENTAL))
    assert new["id"] == codes["id"] and not set(new["codes"]) & set(codes["codes"])
    assert ok(await laptop.run("recoveryCodesUnenroll", experimental=EXPERIMENTAL)) == {"id": codes["id"]}
    gone = await laptop.run("recoveryCodesStatus", experimental=EXPERIMENTAL)
    assert (gone["error"]["code"], gone["error"]["status"]) == ("mfa_factor_not_found", 404)
