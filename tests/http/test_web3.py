"""Sign in with a wallet (POST /token?grant_type=web3), both chains: messages written and signed here as
auth-js's signInWithWeb3 and a wallet would; every refusal GoTrue makes, each leaving the database as it
was; and what GoTrue lacks: a signed message signs in once."""

import asyncio
import base64
from datetime import timedelta

import pytest

from tests.http.helpers import API_2024, claims_of
from tests.http.test_captcha import GOOD, SECRET, siteverify  # noqa: F401 (a fixture)
from tests.http.test_malformed_input import TABLES
from tests.http.wallets import WALLETS, EthereumWallet, SolanaWallet, high_s, now

CHAINS = ["solana", "ethereum"]
SITE = "https://app.example.com"
ON = {
    "web3_solana_enabled": True,
    "web3_ethereum_enabled": True,
    "site_url": SITE,
    "uri_allow_list": ("https://other.example.org/app/**",),
}


def snapshot(admin):
    """Every table a sign-in may touch, as a digest of its rows."""
    return {
        table: admin.execute(
            f"select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from auth.{table} t"
        ).fetchone()[0]
        for table in (*TABLES, "web3_used_messages")
    }


@pytest.fixture
async def client(make_client):
    return await make_client(**ON)


async def post(client, body, **headers):
    response = await client.post("/token?grant_type=web3", json=body, headers={**API_2024, **headers})
    return response.status, await response.json()


async def refused(client, admin, body, status, code, *, error=None):
    """Asserts the refusal and that it changed nothing."""
    before = snapshot(admin)
    answer_status, answer = await post(client, body)
    assert (answer_status, answer["code"]) == (status, code), answer
    if error:
        assert (answer["error"], answer["error_description"]) == (error, answer["message"])
    assert snapshot(admin) == before
    return answer


def wallet_of(chain):
    return WALLETS[chain]()


@pytest.mark.parametrize("chain", CHAINS)
async def test_first_sign_in_makes_a_user_and_the_next_signs_it_in(client, admin, chain):
    wallet = wallet_of(chain)
    message = wallet.message(nonce="abcdef0123456789")
    status, session = await post(client, wallet.signed(message))
    assert status == 200, session
    user = session["user"]
    assert user["email"] == "" and user["phone"] == ""
    assert user["app_metadata"] == {"provider": "web3", "providers": ["web3"]}
    network = "solana:mainnet" if chain == "solana" else "1"
    [identity] = user["identities"]
    assert identity["provider"] == "web3"
    assert identity["id"] == f"web3:{chain}:{wallet.address}"
    assert identity["identity_data"] == {
        "address": wallet.address,
        "chain": chain,
        "network": network,
        "domain": "app.example.com",
        "statement": "Sign in to the example app",
        "sub": f"web3:{chain}:{wallet.address}",
        "provider_id": f"web3:{chain}:{wallet.address}",
    }
    claims = claims_of(session["access_token"])
    assert [entry["method"] for entry in claims["amr"]] == ["web3"]
    assert claims["sub"] == user["id"]

    again = await post(client, wallet.signed(wallet.message(statement=None)))
    assert again[0] == 200 and again[1]["user"]["id"] == user["id"]
    rows = admin.execute(
        "select u.email, i.provider, i.provider_id, i.identity_data ->> 'statement' from auth.users u "
        "join auth.identities i on i.user_id = u.id"
    ).fetchall()
    # GoTrue's absent statement: Solana's "", Ethereum's null
    assert rows == [(None, "web3", f"web3:{chain}:{wallet.address}", "" if chain == "solana" else None)]
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 2
    assert admin.execute("select count(*) from auth.web3_used_messages").fetchone()[0] == 2
    [audit] = admin.execute(
        "select payload -> 'traits' from auth.audit_log_entries where payload ->> 'action' = 'login' "
        "order by created_at limit 1"
    ).fetchall()
    assert audit[0] == {
        "provider": "web3",
        "via": "web3",
        "chain": chain,
        "network": network,
        "address": wallet.address,
        "domain": "app.example.com",
        "uri": "https://app.example.com/sign-in",
    }


async def test_an_ethereum_address_is_one_identity_in_any_case(client, admin):
    """auth-js writes the EIP-55 form; a wallet writing it lowercase signs in the same user."""
    wallet = EthereumWallet()
    first = await post(client, wallet.signed(wallet.message()))
    second = await post(client, wallet.signed(wallet.message(address=wallet.address.lower())))
    assert first[0] == second[0] == 200
    assert first[1]["user"]["id"] == second[1]["user"]["id"]
    assert admin.execute("select count(*) from auth.identities").fetchone()[0] == 1


async def test_a_ledger_signs_solana_messages_in_an_envelope(client):
    wallet = SolanaWallet()
    message = wallet.message()
    status, session = await post(
        client, {"chain": "solana", "message": message, "signature": wallet.encode(wallet.sign_as_ledger(message))}
    )
    assert status == 200, session


@pytest.mark.parametrize("encoding", ["base64", "base64 unpadded", "base64url padded"])
async def test_solana_signatures_in_base64_of_either_alphabet(client, encoding):
    wallet = SolanaWallet()
    message = wallet.message()
    signature = base64.b64encode(wallet.sign(message)).decode()
    if encoding == "base64 unpadded":
        signature = signature.rstrip("=")
    if encoding == "base64url padded":
        signature = base64.urlsafe_b64encode(wallet.sign(message)).decode()
    assert (await post(client, {"chain": "solana", "message": message, "signature": signature}))[0] == 200


async def test_a_signed_message_signs_in_once(client, admin):
    for chain in CHAINS:
        wallet = wallet_of(chain)
        body = wallet.signed(wallet.message())
        assert (await post(client, body))[0] == 200
        await refused(client, admin, body, 400, "invalid_credentials", error="invalid_grant")
        if chain == "solana":  # the same signature in another encoding is the same message
            padded = base64.b64encode(wallet.sign(body["message"])).decode()
            await refused(
                client, admin, {**body, "signature": padded}, 400, "invalid_credentials", error="invalid_grant"
            )
        else:  # and so is v written as 0/1
            signature = wallet.sign(body["message"])
            zero_one = EthereumWallet.encode(signature[:64] + bytes([signature[64] - 27]))
            await refused(
                client, admin, {**body, "signature": zero_one}, 400, "invalid_credentials", error="invalid_grant"
            )


async def test_two_uses_of_one_message_at_once_make_one_session(client, admin):
    for chain in CHAINS:
        wallet = wallet_of(chain)
        body = wallet.signed(wallet.message())
        answers = await asyncio.gather(post(client, body), post(client, body))
        assert sorted(status for status, _ in answers) == [200, 400]
        [(_, failure)] = [answer for answer in answers if answer[0] == 400]
        assert failure["error"] == "invalid_grant"
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 2
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 2


async def test_disabled_chains_are_422(make_client, admin):
    wallet = SolanaWallet()
    body = wallet.signed(wallet.message())
    off = await make_client(site_url=SITE)
    await refused(off, admin, body, 422, "web3_provider_disabled")
    await refused(off, admin, {"chain": "bitcoin"}, 422, "web3_provider_disabled")
    only_ethereum = await make_client(site_url=SITE, web3_ethereum_enabled=True)
    await refused(only_ethereum, admin, body, 422, "web3_provider_disabled")
    ethereum = EthereumWallet()
    only_solana = await make_client(site_url=SITE, web3_solana_enabled=True)
    await refused(only_solana, admin, ethereum.signed(ethereum.message()), 422, "web3_provider_disabled")
    assert (await post(only_solana, body))[0] == 200


@pytest.mark.parametrize("chain", [None, "", "bitcoin", "Solana", "ETHEREUM"])
async def test_other_chains_are_unsupported(client, admin, chain):
    wallet = SolanaWallet()
    await refused(client, admin, {**wallet.signed(wallet.message()), "chain": chain}, 400, "web3_unsupported_chain")


def malformed(chain):
    """(what, body) pairs the strict parser or the signature decoder refuses: 400 validation_failed."""
    wallet = wallet_of(chain)
    good = wallet.message()
    signature = wallet.signed(good)["signature"]
    lines = good.split("\n")
    other_header = (
        lines[0].replace("Solana", "Ethereum") if chain == "solana" else lines[0].replace("Ethereum", "Solana")
    )

    def with_lines(new_lines):
        text = "\n".join(new_lines)
        return wallet.signed(text)

    def field(name, value):
        return with_lines([f"{name}: {value}" if line.startswith(name + ":") else line for line in lines])

    def replaced(old, new):
        return wallet.signed(good.replace(old, new))

    cases = {
        "short": wallet.signed(good[:63]),
        "too long": wallet.signed(good + "\nRequest ID: " + "x" * 20 * 1024),
        "no message": {"chain": chain, "signature": signature},
        "no signature": {"chain": chain, "message": good},
        "signature too short": {"chain": chain, "message": good, "signature": signature[:-2]},
        "signature too long": {"chain": chain, "message": good, "signature": signature + "00"},
        "other chain's header": with_lines([other_header, *lines[1:]]),
        "bad domain": replaced("app.example.com wants", "app_example wants"),
        "bad address": with_lines([lines[0], "not-an-address", *lines[2:]]),
        "third line not empty": with_lines([*lines[:2], "x", *lines[3:]]),
        "no version": wallet.signed("\n".join(line for line in lines if not line.startswith("Version"))),
        "version 2": replaced("Version: 1", "Version: 2"),
        "no issued at": wallet.signed("\n".join(line for line in lines if not line.startswith("Issued At"))),
        "issued at not RFC 3339": field("Issued At", "yesterday"),
        "issued at without a zone": field("Issued At", "2026-01-01T00:00:00"),
        "impossible date": field("Issued At", "2024-02-30T00:00:00Z"),
        "no URI": wallet.signed("\n".join(line for line in lines if not line.startswith("URI"))),
        "URI with a space": replaced("URI: https://app.example.com/sign-in", "URI: https://app.example.com/a b"),
        "unknown field": with_lines([*lines, "Colour: blue"]),
        "duplicate field": with_lines([*lines, lines[-1]]),
        "line without colon": with_lines([*lines, "just words"]),
        "expiry before issue": with_lines([*lines, "Expiration Time: 2020-01-01T00:00:00Z"]),
        "bad chain id": replaced(
            "Chain ID: solana:mainnet" if chain == "solana" else "Chain ID: 1",
            "Chain ID: solana:moon" if chain == "solana" else "Chain ID: mainnet",
        ),
    }
    if chain == "solana":
        cases["signature not base64"] = {"chain": chain, "message": good, "signature": "!" * 86}
        cases["address of 24 bytes"] = with_lines([lines[0], "2" * 32, *lines[2:]])
        cases["address of 33 bytes"] = with_lines([lines[0], "z" * 44, *lines[2:]])
    else:
        cases["signature not hex"] = {"chain": chain, "message": good, "signature": "0x" + "zz" * 65}
        cases["no chain id"] = wallet.signed("\n".join(line for line in lines if not line.startswith("Chain ID")))
        wrong_case = wallet.address[:2] + wallet.address[2:].swapcase()
        if wrong_case[2:] not in (wallet.address[2:].lower(), wallet.address[2:].upper()):
            cases["bad checksum"] = with_lines([lines[0], wrong_case, *lines[2:]])
    return cases


@pytest.mark.parametrize("chain", CHAINS)
async def test_malformed_messages_and_signatures_are_validation_failed(client, admin, chain):
    for what, body in malformed(chain).items():
        before = snapshot(admin)
        status, answer = await post(client, body)
        assert (status, answer["code"]) == (400, "validation_failed"), (what, answer)
        assert snapshot(admin) == before, what


def refusals(chain):
    """(what, body) pairs GoTrue answers with an OAuth invalid_grant."""
    wallet = wallet_of(chain)
    other = wallet_of(chain)
    good = wallet.message()
    sig = wallet.sign(good)
    bad_v = sig[:64] + bytes([29])
    cases = {
        "another key's signature": {**wallet.signed(good), "signature": other.signed(good)["signature"]},
        "signature of another message": {**wallet.signed(good), "signature": wallet.signed(good + " ")["signature"]},
        "not https": wallet.signed(wallet.message(url="http://app.example.com/sign-in")),
        "URI not allowed": wallet.signed(wallet.message(url="https://evil.example.net/sign-in")),
        "domain not the URI's host": wallet.signed(wallet.message(domain="other.example.org")),
        "allowed URI, domain elsewhere": wallet.signed(
            wallet.message(url="https://other.example.org/app/x", domain="app.example.com")
        ),
        "allowed URI, its domain's root not": wallet.signed(wallet.message(url="https://other.example.org/app/x")),
        "not before in the future": wallet.signed(wallet.message(not_before=now() + timedelta(minutes=1))),
        "expired": wallet.signed(
            wallet.message(issued_at=now() - timedelta(minutes=2), expiration_time=now() - timedelta(minutes=1))
        ),
        "issued too long ago": wallet.signed(wallet.message(issued_at=now() - timedelta(minutes=11))),
        "issued too far ahead": wallet.signed(wallet.message(issued_at=now() + timedelta(minutes=11))),
    }
    if chain == "ethereum":
        cases["high s"] = {**wallet.signed(good), "signature": EthereumWallet.encode(high_s(sig))}
        cases["v neither 27/28 nor 0/1"] = {**wallet.signed(good), "signature": EthereumWallet.encode(bad_v)}
        cases["r zero"] = {**wallet.signed(good), "signature": EthereumWallet.encode(bytes(32) + sig[32:])}
    return cases


@pytest.mark.parametrize("chain", CHAINS)
async def test_what_the_server_does_not_accept_is_invalid_grant(client, admin, chain):
    for what, body in refusals(chain).items():
        before = snapshot(admin)
        status, answer = await post(client, body)
        assert (status, answer.get("error")) == (400, "invalid_grant"), (what, answer)
        assert answer["code"] == "invalid_credentials" and answer["error_description"] == answer["message"]
        assert snapshot(admin) == before, what


async def test_localhost_needs_neither_https_nor_a_matching_domain(make_client):
    client = await make_client(web3_solana_enabled=True, site_url="http://localhost:3000")
    wallet = SolanaWallet()
    message = wallet.message(url="http://localhost:3000/", domain="localhost:3000")
    assert (await post(client, wallet.signed(message)))[0] == 200


async def test_an_old_style_error_body_carries_the_oauth_members(client):
    wallet = SolanaWallet()
    response = await client.post(
        "/token?grant_type=web3",
        json={**wallet.signed(wallet.message()), "signature": SolanaWallet().signed("x")["signature"]},
    )
    body = await response.json()
    assert response.status == 400
    assert body["error"] == "invalid_grant" and body["error_code"] == "invalid_credentials"


async def test_captcha_guards_the_grant(make_client, admin, siteverify):  # noqa: F811
    client = await make_client(**ON, captcha_enabled=True, captcha_secret=SECRET, captcha_verify_url=siteverify.url)
    wallet = EthereumWallet()
    body = wallet.signed(wallet.message())
    await refused(client, admin, body, 400, "captcha_failed")
    await refused(client, admin, {**body, "gotrue_meta_security": {"captcha_token": "forged"}}, 400, "captcha_failed")
    status, _ = await post(client, {**body, "gotrue_meta_security": {"captcha_token": GOOD}})
    assert status == 200


async def test_sign_ins_are_limited_per_client_ip(make_client, admin):
    client = await make_client(**ON, rate_limit_web3=2)
    wallet = SolanaWallet()
    for _ in range(2):
        assert (await post(client, wallet.signed(wallet.message())))[0] == 200
    answer = await refused(client, admin, wallet.signed(wallet.message()), 429, "over_request_rate_limit")
    assert answer["message"]


async def test_prune_forgets_messages_past_their_validity(client, admin, service):
    wallet = SolanaWallet()
    assert (await post(client, wallet.signed(wallet.message())))[0] == 200
    [valid_until] = admin.execute("select valid_until - used_at from auth.web3_used_messages").fetchone()
    assert timedelta(minutes=9) < valid_until <= timedelta(minutes=10)
    service.execute("select auth.prune()")
    assert admin.execute("select count(*) from auth.web3_used_messages").fetchone()[0] == 1
    admin.execute("update auth.web3_used_messages set valid_until = now() - interval '61 minutes'")
    service.execute("select auth.prune()")
    assert admin.execute("select count(*) from auth.web3_used_messages").fetchone()[0] == 0


async def test_a_new_wallet_needs_sign_ups_an_existing_one_does_not(make_client, admin):
    wallet = EthereumWallet()
    assert (await post(await make_client(**ON), wallet.signed(wallet.message())))[0] == 200
    closed = await make_client(**ON, disable_signup=True)
    newcomer = SolanaWallet()
    await refused(closed, admin, newcomer.signed(newcomer.message()), 422, "signup_disabled")
    assert (await post(closed, wallet.signed(wallet.message())))[0] == 200


async def test_a_banned_wallet_user_is_refused_and_the_message_stays_unused(client, admin):
    wallet = SolanaWallet()
    assert (await post(client, wallet.signed(wallet.message())))[0] == 200
    admin.execute("update auth.users set banned_until = now() + interval '1 day'")
    body = wallet.signed(wallet.message())
    await refused(client, admin, body, 400, "user_banned")
    admin.execute("update auth.users set banned_until = null")
    assert (await post(client, body))[0] == 200
