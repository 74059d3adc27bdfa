"""web3.py on its own: what the strict parser reads out of a message (every field, as typed values), the
signature encodings it takes, and when a message stops being valid."""

from datetime import UTC, datetime, timedelta

import pytest

from authgres.web3 import MessageRefused, decode_signature, parse_message, signature_matches
from tests.http.wallets import EthereumWallet, SolanaWallet

ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own example

FULL = f"""app.example.com:8443 wants you to sign in with your Ethereum account:
{ADDRESS}

I accept the Terms of Service: https://app.example.com/tos

URI: https://app.example.com:8443/login
Version: 1
Chain ID: 137
Nonce: 32891756
Issued At: 2026-01-01T12:00:00.123456789Z
Expiration Time: 2026-01-01T14:00:00+01:00
Not Before: 2026-01-01T11:59:00.5-00:30
Request ID: some-request
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json"""


def test_every_field_of_an_eip_4361_message():
    message = parse_message("ethereum", FULL)
    assert message.domain == "app.example.com:8443"
    assert message.address == ADDRESS
    assert message.statement == "I accept the Terms of Service: https://app.example.com/tos"
    assert message.uri == "https://app.example.com:8443/login"
    assert (message.version, message.chain_id, message.nonce, message.request_id) == (
        "1",
        "137",
        "32891756",
        "some-request",
    )
    assert message.issued_at == datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert message.expiration_time == datetime(2026, 1, 1, 13, 0, 0, tzinfo=UTC)
    assert message.not_before == datetime(2026, 1, 1, 12, 29, 0, 500000, tzinfo=UTC)
    assert message.resources == (
        "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
        "https://example.com/my-web2-claim.json",
    )
    assert message.subject == f"web3:ethereum:{ADDRESS}"


def test_an_ethereum_address_is_kept_in_its_eip_55_form():
    lower = FULL.replace(ADDRESS, ADDRESS.lower())
    assert parse_message("ethereum", lower).address == ADDRESS
    wrong = FULL.replace(ADDRESS, ADDRESS[:2] + ADDRESS[2:].swapcase())
    with pytest.raises(MessageRefused):
        parse_message("ethereum", wrong)


def test_valid_until_is_the_earlier_of_expiry_and_the_maximum_validity():
    message = parse_message("ethereum", FULL)
    assert message.valid_until(timedelta(minutes=10)) == message.issued_at + timedelta(minutes=10)
    assert message.valid_until(timedelta(hours=2)) == message.expiration_time


def test_a_solana_message_as_auth_js_writes_it_without_a_statement():
    wallet = SolanaWallet()
    text = wallet.message(statement=None, chain_id=None)
    message = parse_message("solana", text)
    assert (message.statement, message.chain_id, message.nonce, message.resources) == (None, None, None, ())
    assert message.address == wallet.address
    assert signature_matches(message, wallet.sign(text))
    assert not signature_matches(message, SolanaWallet().sign(text))


def test_a_chain_reads_only_its_own_messages():
    with pytest.raises(MessageRefused):
        parse_message("solana", FULL)
    with pytest.raises(MessageRefused):
        parse_message("ethereum", SolanaWallet().message())


@pytest.mark.parametrize(
    "signature",
    ["AA" * 43, "+/" * 43, "-_" * 43, "AA" * 43 + "==", "-_" * 43 + "=="],
)
def test_solana_signatures_in_base64_or_base64url(signature):
    assert len(decode_signature("solana", signature)) == 64


@pytest.mark.parametrize("signature", ["AA" * 44, "A" * 87, "AA" * 43 + "=", "A=" * 43, "AA" * 42 + "!!"])
def test_malformed_solana_signatures(signature):
    with pytest.raises(MessageRefused):
        decode_signature("solana", signature)


def test_ethereum_signatures_with_or_without_0x():
    wallet = EthereumWallet()
    text = wallet.message()
    raw = wallet.sign(text)
    assert decode_signature("ethereum", "0x" + raw.hex()) == raw == decode_signature("ethereum", raw.hex().upper())
    assert signature_matches(parse_message("ethereum", text), raw)
    for malformed in ("0x" + raw.hex()[:-2], "0x" + raw.hex() + "00", "0X" + raw.hex(), "0x" + "g" * 130):
        with pytest.raises(MessageRefused):
            decode_signature("ethereum", malformed)
