"""Small helpers for driving the HTTP API directly."""

import base64
import json
from typing import Any

API_2024 = {"X-Supabase-Api-Version": "2024-01-01"}


async def sign_up(client: Any, email: str = "user@example.com", password: str = "a good password") -> dict[str, Any]:
    response = await client.post("/signup", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


def header_of(token: str) -> dict[str, Any]:
    """A JWT's header, unverified."""
    return _segment(token, 0)


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified."""
    return _segment(token, 1)


def _segment(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded
