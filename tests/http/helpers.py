"""Small helpers for driving the HTTP API directly."""

from typing import Any

API_2024 = {"X-Supabase-Api-Version": "2024-01-01"}


async def sign_up(client: Any, email: str = "user@example.com", password: str = "a good password") -> dict[str, Any]:
    response = await client.post("/signup", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}
