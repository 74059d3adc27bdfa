"""Sign in with a wallet (POST /token?grant_type=web3): the signed message, parsed and checked.

The browser's wallet signs a text message that names this site, the account and a moment:
Sign-In with Solana (SIWS) for Solana, Sign-In with Ethereum (EIP-4361, SIWE) for Ethereum, as auth-js's
signInWithWeb3 writes them. `parse_message` reads one strictly into a `SignedMessage` (anything it cannot
read: `MessageRefused`, answered 400 validation_failed); `decode_signature` reads the signature as auth-js
encodes it (Solana: 64 bytes in base64 or base64url, padded or not; Ethereum: 65 bytes r||s||v in hex,
0x-prefixed); `signature_matches` checks it: Solana, ed25519 over the message's UTF-8 bytes with the
base58 address as the public key (or over the off-chain-message envelope a Ledger signs); Ethereum,
EIP-191 personal_sign, the public key recovered from (r, s, v) and its address compared with the
message's. `check` then applies the server's rules (https, an allowed URI, its host as the domain, the
validity window) and raises GoTrue's OAuth-shaped invalid_grant errors.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

import base58
import coincurve
from Crypto.Hash import keccak
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authgres.errors import AuthError, oauth_error
from authgres.redirects import safe_redirect

Chain = Literal["solana", "ethereum"]
CHAINS: tuple[Chain, ...] = ("solana", "ethereum")

MIN_MESSAGE = 64  # bytes of UTF-8, as GoTrue counts
MAX_MESSAGE = 20 * 1024

_HEADER = {
    "solana": " wants you to sign in with your Solana account:",
    "ethereum": " wants you to sign in with your Ethereum account:",
}
_DOMAIN = re.compile(r"(localhost|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,})(?::\d{1,5})?")
_ADDRESS = {
    "solana": re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}"),  # base58's alphabet
    "ethereum": re.compile(r"0x[0-9a-fA-F]{40}"),
}
_SOLANA_NETWORK = re.compile(r"solana:(main|dev|test|local)net")
_ETHEREUM_CHAIN_ID = re.compile(r"[1-9][0-9]{0,18}")  # EIP-155: a positive integer
# RFC 3339 date-times, as the message fields carry them (auth-js writes toISOString()).
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+|/[^\s]*")  # absolute, or an absolute path (refused later)
_FIELDS = {
    "URI": "uri",
    "Version": "version",
    "Chain ID": "chain_id",
    "Nonce": "nonce",
    "Issued At": "issued_at",
    "Expiration Time": "expiration_time",
    "Not Before": "not_before",
    "Request ID": "request_id",
}

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class MessageRefused(ValueError):
    """The message or signature cannot be read: 400 validation_failed."""


@dataclass(frozen=True)
class SignedMessage:
    """A sign-in message as parsed. address: Solana's base58 as written; Ethereum's in its EIP-55
    (checksummed) form, whatever case the message wrote it in."""

    chain: Chain
    raw: str
    domain: str
    address: str
    statement: str | None
    uri: str
    version: str
    chain_id: str | None
    nonce: str | None
    issued_at: datetime
    expiration_time: datetime | None
    not_before: datetime | None
    request_id: str | None
    resources: tuple[str, ...]

    @property
    def subject(self) -> str:
        """The identity's provider_id: web3:<chain>:<address>."""
        return f"web3:{self.chain}:{self.address}"

    def valid_until(self, maximum_validity: timedelta) -> datetime:
        """When the message stops being accepted: its expiration time or the validity limit, the earlier."""
        latest = self.issued_at + maximum_validity
        return min(latest, self.expiration_time) if self.expiration_time else latest


def invalid_grant(message: str) -> AuthError:
    """GoTrue's refusal of the signature, the URI, the domain or the time, and of a message used before
    (AUI07, errors.OAUTH_SQLSTATES)."""
    return oauth_error("invalid_grant", message, "invalid_credentials")


def _timestamp(value: str, field: str) -> datetime:
    match = _TIMESTAMP.fullmatch(value)
    if not match:
        raise MessageRefused(f"{field} is not an RFC 3339 timestamp")
    date, time, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]  # nanoseconds are cut to what datetime holds
    try:
        parsed = datetime.fromisoformat(f"{date}T{time}.{micro}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        raise MessageRefused(f"{field} is not a valid date and time") from None
    return parsed.astimezone(UTC)


def _uri(value: str, field: str) -> str:
    if not _URI.fullmatch(value):
        raise MessageRefused(f"{field} is not a URI")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError:
        raise MessageRefused(f"{field} is not a URI") from None
    return value


def eip55(address: str) -> str:
    """The EIP-55 (checksummed) form of a 0x address: a letter is upper case where the keccak-256 of the
    lowercase hex digits has a nibble of 8 or more."""
    digits = address[2:].lower()
    digest = keccak.new(digest_bits=256, data=digits.encode()).hexdigest()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, digest, strict=False))


def _checksummed(address: str) -> str:
    """The EIP-55 form of a 0x address; MessageRefused when a mixed-case one has a wrong checksum."""
    checksummed = eip55(address)
    digits = address[2:]
    if digits not in (digits.lower(), digits.upper()) and address != checksummed:
        raise MessageRefused("address in message has an invalid EIP-55 checksum")
    return checksummed


def parse_message(chain: Chain, raw: str) -> SignedMessage:
    """The message, read strictly: the header naming the domain, the address, an empty line, an optional
    statement followed by an empty line, then `Key: value` fields (Version 1, URI and Issued At required)
    and an optional Resources list."""
    lines = raw.split("\n")
    if len(lines) < 6:
        raise MessageRefused("message needs at least 6 lines")
    header = _HEADER[chain]
    if not lines[0].endswith(header):
        raise MessageRefused("message first line does not begin with the sign-in header")
    domain = lines[0][: -len(header)].strip()
    if not _DOMAIN.fullmatch(domain):
        raise MessageRefused("message does not name a valid domain")
    address = lines[1].strip()
    if not _ADDRESS[chain].fullmatch(address):
        raise MessageRefused("message does not name a valid address")
    if chain == "ethereum":
        address = _checksummed(address)
    elif len(_base58(address)) != 32:
        raise MessageRefused("address in message is not a 32-byte public key")
    if lines[2] != "":
        raise MessageRefused("message's third line must be empty")
    statement, start = None, 3
    if lines[3] != "" and lines[4] == "":
        statement, start = lines[3], 5

    values: dict[str, str] = {}
    resources: list[str] = []
    in_resources = False
    for number, original in enumerate(lines[start:], start + 1):
        line = original.strip()
        if in_resources and line.startswith("- "):
            resources.append(_uri(line[2:].strip(), f"resource {len(resources) + 1}"))
            continue
        in_resources = False
        if line == "Resources:":
            in_resources = True
            continue
        if line == "":
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise MessageRefused(f"line {number} of the message is not a `Key: value` field")
        field = _FIELDS.get(key)
        if field is None:
            raise MessageRefused(f"line {number} of the message has an unknown field {key!r}")
        if field in values:
            raise MessageRefused(f"message has {key} twice")
        values[field] = value.strip()

    if values.get("version") != "1":
        raise MessageRefused("message must be of version 1")
    if not values.get("issued_at"):
        raise MessageRefused("message needs an Issued At")
    if not values.get("uri"):
        raise MessageRefused("message needs a URI")
    chain_id = values.get("chain_id")
    if chain == "ethereum" and not (chain_id and _ETHEREUM_CHAIN_ID.fullmatch(chain_id)):
        raise MessageRefused("message needs a Chain ID, an EIP-155 chain ID")
    if chain == "solana" and chain_id and not _SOLANA_NETWORK.fullmatch(chain_id):
        raise MessageRefused("message's Chain ID is not a Solana network")
    issued_at = _timestamp(values["issued_at"], "Issued At")
    expiration = _timestamp(values["expiration_time"], "Expiration Time") if "expiration_time" in values else None
    not_before = _timestamp(values["not_before"], "Not Before") if "not_before" in values else None
    if expiration and issued_at > expiration:
        raise MessageRefused("message's Issued At is after its Expiration Time")
    if expiration and not_before and not_before > expiration:
        raise MessageRefused("message's Not Before is after its Expiration Time")
    return SignedMessage(
        chain=chain,
        raw=raw,
        domain=domain,
        address=address,
        statement=statement,
        uri=_uri(values["uri"], "URI"),
        version="1",
        chain_id=chain_id or None,
        nonce=values.get("nonce") or None,
        issued_at=issued_at,
        expiration_time=expiration,
        not_before=not_before,
        request_id=values.get("request_id") or None,
        resources=tuple(resources),
    )


def _base58(text: str) -> bytes:
    try:
        return base58.b58decode(text)
    except ValueError:
        raise MessageRefused("address in message is not base58") from None


def check_length(raw: str) -> None:
    size = len(raw.encode())
    if size < MIN_MESSAGE:
        raise MessageRefused("message is too short")
    if size > MAX_MESSAGE:
        raise MessageRefused("message must not exceed 20KB")


def decode_signature(chain: Chain, signature: str) -> bytes:
    """The signature's bytes: Solana 64 (base64 or base64url, 86 or 88 characters), Ethereum 65 (130 hex
    digits, with or without 0x)."""
    if chain == "solana":
        if len(signature) not in (86, 88):
            raise MessageRefused("signature must be 64 bytes encoded as base64 with or without padding")
        text = signature.rstrip("=").replace("+", "-").replace("/", "_")
        if not re.fullmatch(r"[A-Za-z0-9_-]{86}", text):
            raise MessageRefused("signature does not contain valid base64 characters")
        try:
            decoded = base64.urlsafe_b64decode(text + "==")
        except binascii.Error:
            raise MessageRefused("signature does not contain valid base64 characters") from None
        if len(decoded) != 64:
            raise MessageRefused("signature must be 64 bytes encoded as base64 with or without padding")
        return decoded
    digits = signature.removeprefix("0x")
    if len(digits) != 130 or not re.fullmatch(r"[0-9a-fA-F]{130}", digits):
        raise MessageRefused("signature must be 65 bytes long, encoded as a 130 character-long hexadecimal string")
    return bytes.fromhex(digits)


def _ledger_envelope(message: SignedMessage, public_key: bytes) -> bytes | None:
    """The off-chain message a Ledger signs in place of the bare text (Solana's off-chain signing
    proposal: signing domain, version 0, the domain padded to 32 bytes, ASCII format, one signer)."""
    raw = message.raw.encode()
    if len(raw) > 0xFFFF:
        return None
    domain = message.domain.encode()[:32].ljust(32, b"\0")
    return b"\xffsolana offchain" + b"\0" + domain + b"\0\x01" + public_key + struct.pack("<H", len(raw)) + raw


def _solana_matches(message: SignedMessage, signature: bytes) -> bool:
    public_key = base58.b58decode(message.address)
    key = Ed25519PublicKey.from_public_bytes(public_key)
    for signed in (message.raw.encode(), _ledger_envelope(message, public_key)):
        if signed is None:
            continue
        try:
            key.verify(signature, signed)
            return True
        except InvalidSignature:
            continue
    return False


def personal_sign_digest(text: str) -> bytes:
    """EIP-191 personal_sign: keccak-256 of the prefix, the byte length in decimal and the message."""
    data = text.encode()
    return keccak.new(digest_bits=256, data=b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data).digest()


def ethereum_address(public_key: coincurve.PublicKey) -> str:
    """The 0x address of a public key (the last 20 bytes of keccak-256 of its uncompressed point), lowercase."""
    point = public_key.format(compressed=False)[1:]
    return "0x" + keccak.new(digest_bits=256, data=point).digest()[-20:].hex()


def _ethereum_matches(message: SignedMessage, signature: bytes) -> bool:
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    recovery = v - 27 if v >= 27 else v
    # r and s in range, s in the lower half (no malleable twin), v 27/28 or 0/1.
    if recovery not in (0, 1) or not 0 < r < _SECP256K1_N or not 0 < s <= _SECP256K1_N // 2:
        return False
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([recovery]), personal_sign_digest(message.raw), hasher=None
        )
    except ValueError:  # no point recovers (libsecp256k1 refuses)
        return False
    return ethereum_address(public_key) == message.address.lower()


def signature_matches(message: SignedMessage, signature: bytes) -> bool:
    """Whether the signature is the message's, by the key of the address it names."""
    if message.chain == "solana":
        return _solana_matches(message, signature)
    return _ethereum_matches(message, signature)


def check(
    message: SignedMessage,
    signature: bytes,
    *,
    now: datetime,
    maximum_validity: timedelta,
    site_url: str,
    allow_list: tuple[str, ...],
) -> None:
    """GoTrue's rules, in its order; raises invalid_grant for the first that fails."""
    name = message.chain.capitalize()
    if not signature_matches(message, signature):
        raise invalid_grant("Signature does not match address in message")
    uri = urlsplit(message.uri)
    local = uri.hostname == "localhost"
    if uri.scheme != "https" and not local:
        raise invalid_grant(f"Signed {name} message is using URI which does not use HTTPS")
    if not _allowed(message.uri, site_url, allow_list):
        raise invalid_grant(
            f"Signed {name} message is using URI which is not allowed on this server, "
            "message was signed for another app"
        )
    if not local and (uri.netloc != message.domain or not _allowed(f"https://{message.domain}/", site_url, allow_list)):
        raise invalid_grant(
            f"Signed {name} message is using a Domain that does not match the one in URI "
            "which is not allowed on this server"
        )
    if message.not_before and now < message.not_before:
        raise invalid_grant(f"Signed {name} message becomes valid in the future")
    if message.expiration_time and now > message.expiration_time:
        raise invalid_grant(f"Signed {name} message is expired")
    if now > message.issued_at + maximum_validity:
        raise invalid_grant(f"{name} message was issued too long ago")
    if now < message.issued_at - maximum_validity:
        raise invalid_grant(f"{name} message was issued too far in the future")


def _allowed(uri: str, site_url: str, allow_list: tuple[str, ...]) -> bool:
    """Whether a flow may send the browser to uri: the check every redirect_to gets (redirects.py)."""
    return safe_redirect(uri, site_url, allow_list) == uri


def identity_claims(message: SignedMessage) -> dict[str, str | None]:
    """The identity's data, as GoTrue stores it: a Solana message's absent statement and network as "",
    an Ethereum message's absent statement as null."""
    absent = "" if message.chain == "solana" else None
    return {
        "address": message.address,
        "chain": message.chain,
        "network": message.chain_id or absent,
        "domain": message.domain,
        "statement": message.statement or absent,
    }


def audit_details(message: SignedMessage) -> dict[str, str | None]:
    """What the login's audit entry says about the wallet, as GoTrue's does."""
    return {
        "chain": message.chain,
        "network": message.chain_id,
        "address": message.address,
        "domain": message.domain,
        "uri": message.uri,
    }
