"""PKCE (RFC 7636) in the request bodies that send email: the code challenge and its method, declared
once for every such body. SQL keeps the flow (sql/functions/pkce.sql); this only decodes and checks
the pair before any work, as GoTrue does."""

from __future__ import annotations

from typing import Annotated

import msgspec

from authgres.errors import validation_failed

# Empty is allowed (the same as absent): both official clients send null or nothing without PKCE.
CodeChallenge = Annotated[
    str,
    msgspec.Meta(
        max_length=128,
        pattern="^([A-Za-z0-9._~-]{43,128})?$",
        description="PKCE (RFC 7636): the code challenge, 43 to 128 characters of A-Z a-z 0-9 - . _ ~; with "
        "code_challenge_method, the emailed link answers with ?code= for POST /token?grant_type=pkce",
    ),
]
CodeChallengeMethod = Annotated[
    str,
    msgspec.Meta(
        pattern="^([sS]256|[pP][lL][aA][iI][nN])?$",
        description="s256 or plain, in any case; required with code_challenge",
    ),
]


def challenge(code_challenge: str | None, method: str | None) -> tuple[str | None, str | None]:
    """The pair as SQL takes it (p_code_challenge, p_code_challenge_method): both or neither."""
    if not code_challenge and not method:
        return None, None
    if not code_challenge or not method:
        raise validation_failed("PKCE flow requires code_challenge_method and code_challenge")
    return code_challenge, method.lower()
