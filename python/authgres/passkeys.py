"""The WebAuthn ceremonies' cryptography, with py_webauthn: the options a browser's navigator.credentials
create() and get() take, and the checks of what the authenticator answered (attestation, signature,
origin, RP id hash, user presence and verification).

The relying party (RP id, origins, name) comes from the settings only. SQL keeps the ceremony state and
decides who the result belongs to: a verification here takes as its challenge the one the authenticator
signed (clientDataJSON, covered by the signature), and SQL compares it with the stored challenge while it
consumes that challenge, in the statement that records the result (sql/functions/passkeys.sql).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authgres.errors import AuthError
from authgres.settings import Settings

TIMEOUT_MS = 60000
# What a malformed credential can raise while it is parsed (base64url, CBOR, COSE, JSON shapes).
_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)


def verification_failed() -> AuthError:
    """What a passkey ceremony whose answer does not verify is told (GoTrue's)."""
    return AuthError(400, "webauthn_verification_failed", "Credential verification failed")


def factor_failed() -> AuthError:
    """What a WebAuthn factor's answer that does not verify is told: as a wrong code."""
    return AuthError(422, "mfa_verification_failed", "Invalid WebAuthn response")


Failure = Callable[[], AuthError]


def _descriptors(ids: list[str]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(each)) for each in ids]


def registration_options(
    config: Settings, state: dict[str, Any], exclude: list[str], *, passkey: bool
) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptions (JSON) for SQL's registration state: a passkey is a discoverable
    credential with user verification required; an MFA factor's credential needs neither."""
    user = state["user"]
    options = generate_registration_options(
        rp_id=config.rp_id,
        rp_name=config.webauthn_rp_display_name,
        user_id=str(user["id"]).encode(),  # the user handle: the user's id, as GoTrue has it
        user_name=user["name"],
        user_display_name=user["display_name"],
        challenge=base64url_to_bytes(state["challenge"]),
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED if passkey else ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.REQUIRED
            if passkey
            else UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(exclude),
    )
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


def authentication_options(
    config: Settings, challenge: str, allow: list[str] | None = None, *, passkey: bool
) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions (JSON): a discoverable sign-in (no allowed credentials named) for a
    passkey, the factor's own credential for an MFA factor."""
    options = generate_authentication_options(
        rp_id=config.rp_id,
        challenge=base64url_to_bytes(challenge),
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(allow or []),
        user_verification=UserVerificationRequirement.REQUIRED if passkey else UserVerificationRequirement.PREFERRED,
    )
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


@dataclass(frozen=True)
class Registered:
    """A verified registration: what SQL stores of the new credential."""

    challenge: bytes
    credential_id: bytes
    public_key: bytes
    aaguid: str
    sign_count: int
    transports: list[str]
    backup_eligible: bool
    backed_up: bool
    attestation_type: str

    def params(self) -> dict[str, Any]:
        return {
            "challenge": self.challenge,
            "credential_id": self.credential_id,
            "public_key": self.public_key,
            "aaguid": str(uuid.UUID(self.aaguid)),
            "sign_count": self.sign_count,
            "transports": Jsonb(self.transports),
            "backup_eligible": self.backup_eligible,
            "backed_up": self.backed_up,
            "attestation_type": self.attestation_type,
        }


@dataclass(frozen=True)
class Asserted:
    """A verified assertion: the credential that signed, and what it reported."""

    challenge: bytes
    credential_id: bytes
    user_handle: bytes | None
    sign_count: int
    backed_up: bool


def _text(value: Any) -> str:
    """An enum member of py_webauthn's (an Enum or a plain string, by version) as its text."""
    return str(getattr(value, "value", value))


def _signed_challenge(client_data_json: bytes) -> bytes:
    challenge: bytes = parse_client_data_json(client_data_json).challenge
    return challenge


def verify_registration(
    config: Settings, credential: Any, *, require_user_verification: bool, failure: Failure = verification_failed
) -> Registered:
    """Checks a navigator.credentials.create() answer (as JSON); raises failure() otherwise."""
    try:
        parsed: RegistrationCredential = parse_registration_credential_json(credential)
        challenge = _signed_challenge(parsed.response.client_data_json)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=config.rp_id,
            expected_origin=list(config.rp_origins),
            require_user_verification=require_user_verification,
        )
    except _MALFORMED:
        raise failure() from None
    transports = [_text(each) for each in parsed.response.transports or []]
    return Registered(
        challenge=challenge,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        aaguid=verified.aaguid,
        sign_count=verified.sign_count,
        transports=transports,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        attestation_type=_text(verified.fmt),
    )


def assertion_credential(credential: Any, *, failure: Failure = verification_failed) -> AuthenticationCredential:
    """A navigator.credentials.get() answer, parsed (its rawId names the key to check it with)."""
    try:
        parsed: AuthenticationCredential = parse_authentication_credential_json(credential)
    except _MALFORMED:
        raise failure() from None
    return parsed


def verify_assertion(
    config: Settings,
    parsed: AuthenticationCredential,
    public_key: bytes | None,
    *,
    require_user_verification: bool,
    failure: Failure = verification_failed,
) -> Asserted:
    """Checks an assertion's signature with the credential's registered public key (None: unknown
    credential). The signature counter is left to SQL, which compares it under the credential's lock."""
    if public_key is None:
        raise failure()
    try:
        challenge = _signed_challenge(parsed.response.client_data_json)
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=config.rp_id,
            expected_origin=list(config.rp_origins),
            credential_public_key=public_key,
            credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except _MALFORMED:
        raise failure() from None
    return Asserted(
        challenge=challenge,
        credential_id=verified.credential_id,
        user_handle=parsed.response.user_handle,
        sign_count=verified.new_sign_count,
        backed_up=verified.credential_backed_up,
    )
