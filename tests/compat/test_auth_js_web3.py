"""Sign in with a wallet through @supabase/auth-js (tests/node/run.mjs): signInWithWeb3 with a message the
test wrote as auth-js writes it and signed as a wallet would, with a fresh Issued At (Solana: the
signature as the wallet's Uint8Array; Ethereum: personal_sign's 0x hex). The session lands in auth-js's
storage and getUser answers the wallet's user. The Python client (supabase_auth) has no wallet sign-in."""

import base64
import json

import pytest

from tests.compat.test_auth_js_pkce import Browser
from tests.http.helpers import claims_of
from tests.http.wallets import WALLETS


@pytest.fixture
async def web3(make_client):
    return await make_client(web3_solana_enabled=True, web3_ethereum_enabled=True, site_url="https://app.example.com")


def ok(result):
    assert result["error"] is None, result
    return result["data"]


@pytest.mark.parametrize("chain", ["solana", "ethereum"])
async def test_sign_in_with_a_wallet_through_auth_js(web3, tmp_path, admin, chain):
    browser = Browser(web3, tmp_path / "browser.json")
    wallet = WALLETS[chain]()
    message = wallet.message(statement="Sign in to the example app")
    raw = wallet.sign(message)
    signature = base64.b64encode(raw).decode() if chain == "solana" else wallet.encode(raw)
    signed_in = ok(await browser.run("signInWithWeb3", chain=chain, message=message, signature=signature))
    user = signed_in["user"]
    assert user["identities"][0]["identity_data"]["address"] == wallet.address
    assert user["app_metadata"]["provider"] == "web3"
    stored = json.loads(browser.storage["supabase.auth.token"])  # auth-js's key under a custom url
    assert stored["access_token"] == signed_in["session"]["access_token"]
    assert [entry["method"] for entry in claims_of(stored["access_token"])["amr"]] == ["web3"]

    fetched = ok(await browser.run("getUser"))["user"]
    assert fetched["id"] == user["id"]
    assert [identity["provider"] for identity in fetched["identities"]] == ["web3"]

    # The same signed message again: auth-js gets GoTrue's 400, and its storage keeps the first session.
    again = await browser.run("signInWithWeb3", chain=chain, message=message, signature=signature)
    assert again["error"]["status"] == 400 and again["error"]["code"] == "invalid_credentials"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1
