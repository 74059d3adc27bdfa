"""Wallets for the sign-in-with-a-wallet tests: key pairs made here, messages written as auth-js's
signInWithWeb3 writes them (Solana: its signMessage path; Ethereum: createSiweMessage), signatures
encoded as auth-js sends them (Solana: base64url without padding; Ethereum: 0x and hex)."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime, timedelta

import base58
import coincurve
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authgres.web3 import eip55, ethereum_address, personal_sign_digest

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
URL = "https://app.example.com/sign-in"  # the page the wallet signs in to (the site URL's)


def iso(moment: datetime) -> str:
    """JavaScript's Date.toISOString(): milliseconds and Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now() -> datetime:
    return datetime.now(UTC)


def _host(url: str) -> str:
    return url.split("/")[2]


class SolanaWallet:
    chain = "solana"

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public_key = self.key.public_key().public_bytes_raw()
        self.address = base58.b58encode(self.public_key).decode()

    def message(
        self,
        *,
        url: str = URL,
        domain: str | None = None,
        statement: str | None = "Sign in to the example app",
        issued_at: datetime | None = None,
        not_before: datetime | None = None,
        expiration_time: datetime | None = None,
        chain_id: str | None = "solana:mainnet",
        nonce: str | None = None,
        address: str | None = None,
    ) -> str:
        """As auth-js writes it for a wallet's signMessage."""
        return "\n".join(
            [
                f"{domain or _host(url)} wants you to sign in with your Solana account:",
                address or self.address,
                *(["", statement, ""] if statement else [""]),
                "Version: 1",
                f"URI: {url}",
                f"Issued At: {iso(issued_at or now())}",
                *([f"Not Before: {iso(not_before)}"] if not_before else []),
                *([f"Expiration Time: {iso(expiration_time)}"] if expiration_time else []),
                *([f"Chain ID: {chain_id}"] if chain_id else []),
                *([f"Nonce: {nonce}"] if nonce else []),
            ]
        )

    def sign(self, message: str) -> bytes:
        return self.key.sign(message.encode())

    def sign_as_ledger(self, message: str) -> bytes:
        """As a Ledger signs: the off-chain message envelope around the text."""
        domain = message.split(" wants you")[0].encode()[:32].ljust(32, b"\0")
        raw = message.encode()
        envelope = b"\xffsolana offchain\0" + domain + b"\0\x01" + self.public_key + struct.pack("<H", len(raw)) + raw
        return self.key.sign(envelope)

    @staticmethod
    def encode(signature: bytes) -> str:
        """auth-js's bytesToBase64URL: base64url, no padding."""
        return base64.urlsafe_b64encode(signature).decode().rstrip("=")

    def signed(self, message: str) -> dict[str, str]:
        return {"chain": "solana", "message": message, "signature": self.encode(self.sign(message))}


class EthereumWallet:
    chain = "ethereum"

    def __init__(self) -> None:
        self.key = coincurve.PrivateKey()
        self.address = eip55(ethereum_address(self.key.public_key))

    def message(
        self,
        *,
        url: str = URL,
        domain: str | None = None,
        statement: str | None = "Sign in to the example app",
        issued_at: datetime | None = None,
        not_before: datetime | None = None,
        expiration_time: datetime | None = None,
        chain_id: str | None = "1",
        nonce: str | None = None,
        address: str | None = None,
    ) -> str:
        """As auth-js's createSiweMessage writes it."""
        prefix = (
            f"{domain or _host(url)} wants you to sign in with your Ethereum account:\n{address or self.address}\n\n"
        )
        prefix += f"{statement}\n" if statement else ""
        suffix = f"URI: {url}\nVersion: 1\nChain ID: {chain_id}"
        suffix += f"\nNonce: {nonce}" if nonce else ""
        suffix += f"\nIssued At: {iso(issued_at or now())}"
        suffix += f"\nExpiration Time: {iso(expiration_time)}" if expiration_time else ""
        suffix += f"\nNot Before: {iso(not_before)}" if not_before else ""
        return f"{prefix}\n{suffix}"

    def sign(self, message: str) -> bytes:
        """personal_sign: r || s || v, v 27 or 28 (libsecp256k1 signs with a low s)."""
        signature = self.key.sign_recoverable(personal_sign_digest(message), hasher=None)
        return signature[:64] + bytes([signature[64] + 27])

    @staticmethod
    def encode(signature: bytes) -> str:
        return "0x" + signature.hex()

    def signed(self, message: str) -> dict[str, str]:
        return {"chain": "ethereum", "message": message, "signature": self.encode(self.sign(message))}


def high_s(signature: bytes) -> bytes:
    """The same ECDSA signature with s replaced by n - s (and v flipped): valid to a lax verifier."""
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    flipped = 27 + (1 - (v - 27)) if v >= 27 else 1 - v
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped])


WALLETS = {"solana": SolanaWallet, "ethereum": EthereumWallet}
TEN_MINUTES = timedelta(minutes=10)
