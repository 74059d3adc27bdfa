"""Password hashing: argon2id for new hashes, bcrypt accepted from GoTrue imports and upgraded.

Hashing runs in a small thread pool of its own (argon2 releases the GIL), sized to the cores: more
threads would not hash faster, and each argon2 call holds its memory cost (19 MiB by default).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter

import argon2
import bcrypt

from authgres.argon2_build import build_info, fastest_verify
from authgres.errors import AuthError
from authgres.metrics import Metrics
from authgres.settings import Settings

log = logging.getLogger("authgres")

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


@dataclass(frozen=True)
class Verification:
    ok: bool
    rehash: str | None = None  # a fresh argon2id hash when the stored one is outdated


@dataclass(frozen=True)
class Weakness:
    message: str
    reasons: list[str]

    def as_json(self) -> dict[str, object]:
        return {"message": self.message, "reasons": self.reasons}


class Passwords:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.min_length = settings.password_min_length
        self.required_characters = settings.password_required_characters
        self.hasher = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=argon2.Type.ID,
        )
        self.executor = ThreadPoolExecutor(max_workers=settings.hash_workers, thread_name_prefix="argon2")
        hash_seconds = (metrics or Metrics()).hash_seconds
        self._hash_seconds, self._verify_seconds = hash_seconds.labels("hash"), hash_seconds.labels("verify")
        # Verified when there is no user or no password, so that answering takes as long either way.
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(24))
        # "$argon2id$v=19$m=...,t=...,p=...$": a hash that starts so has today's parameters, which spares
        # the hashing thread argon2-cffi's parse of them (check_needs_rehash) on nearly every sign-in.
        self._current_prefix = self._dummy_hash.rsplit("$", 2)[0] + "$"

    def log_build(self) -> None:
        """Logs which argon2 build runs and how fast it verifies, measured in a hashing thread (not blocking)."""
        self.executor.submit(self._log_build)

    def _log_build(self) -> None:
        try:
            took = fastest_verify(lambda: self._verify_argon2(self._dummy_hash, "not the password"))
            parameters = self.hasher.time_cost, self.hasher.memory_cost, self.hasher.parallelism
            log.info(
                "argon2id t=%d m=%d KiB p=%d: %s; one verify %.1f ms", *parameters, build_info().describe(), took * 1000
            )
        except Exception:
            log.exception("could not tell which argon2 build runs")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def queue_length(self) -> int:
        """Passwords waiting for a hashing thread (for the metrics)."""
        return self.executor._work_queue.qsize()

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._hash_timed, password)

    async def verify(self, stored_hash: str | None, password: str) -> Verification:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._verify_timed, stored_hash, password)

    # Timed in the hashing thread: the time a hash takes, not the time it waited for a thread.
    def _hash_timed(self, password: str) -> str:
        started = perf_counter()
        try:
            return self.hasher.hash(password)
        finally:
            self._hash_seconds.observe(perf_counter() - started)

    def _verify_timed(self, stored_hash: str | None, password: str) -> Verification:
        started = perf_counter()
        try:
            return self._verify_sync(stored_hash, password)
        finally:
            self._verify_seconds.observe(perf_counter() - started)

    def _verify_sync(self, stored_hash: str | None, password: str) -> Verification:
        if stored_hash and stored_hash.startswith(_BCRYPT_PREFIXES):
            encoded = password.encode()
            if len(encoded) > 72:  # bcrypt cannot have produced it
                return Verification(False)
            if bcrypt.checkpw(encoded, stored_hash.encode()):
                return Verification(True, self.hasher.hash(password))
            return Verification(False)
        if not stored_hash or not stored_hash.startswith("$argon2"):
            self._verify_argon2(self._dummy_hash, password)
            return Verification(False)
        if not self._verify_argon2(stored_hash, password):
            return Verification(False)
        if not stored_hash.startswith(self._current_prefix) and self.hasher.check_needs_rehash(stored_hash):
            return Verification(True, self.hasher.hash(password))
        return Verification(True)

    def _verify_argon2(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def weakness(self, password: str) -> Weakness | None:
        """What the password policy finds wrong with a password, if anything (GoTrue's reasons)."""
        messages: list[str] = []
        reasons: list[str] = []
        if len(password) < self.min_length:
            reasons.append("length")
            messages.append(f"Password should be at least {self.min_length} characters.")
        missing = [chars for chars in self.required_characters if not any(c in password for c in chars)]
        if missing:
            reasons.append("characters")
            messages.append(
                "Password should contain at least one character of each: " + ", ".join(self.required_characters) + "."
            )
        if not reasons:
            return None
        return Weakness(" ".join(messages), reasons)

    def require_strong(self, password: str) -> None:
        weakness = self.weakness(password)
        if weakness:
            raise AuthError(422, "weak_password", weakness.message, {"weak_password": {"reasons": weakness.reasons}})
