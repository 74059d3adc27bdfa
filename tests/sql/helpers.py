"""Calling the service functions as the service role, the way the HTTP layer does."""

import json
import uuid
from typing import Any

import psycopg


def call(conn: psycopg.Connection[Any], function: str, **params: Any) -> Any:
    arguments = ", ".join(f"p_{name} => %({name})s" for name in params)
    return conn.execute(f"select auth.{function}({arguments})", params).fetchone()[0]


def refresh(conn: psycopg.Connection[Any], token: str) -> Any:
    """One refresh as the service makes it (a batch of one): the session, or {"error": SQLSTATE, "message"}."""
    return conn.execute("select (auth.refresh_sessions(array[%s], array[null], array[null]))[1]", (token,)).fetchone()[
        0
    ]


def get_user(conn: psycopg.Connection[Any], access_token: str) -> Any:
    """GET /user as the service makes it (a batch of one): the user, or {"error": SQLSTATE, "message"}."""
    return conn.execute("select (auth.get_users(array[%s]))[1]", (access_token,)).fetchone()[0]


def sign_up(conn: psycopg.Connection[Any], email: str | None = None) -> dict[str, Any]:
    """A confirmed user with a fresh session (the test settings autoconfirm)."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    return call(conn, "sign_up", email=email, password_hash="$argon2id$not-checked-here", data=json.dumps({}))


def sqlstate_of(error: psycopg.Error) -> str | None:
    return error.sqlstate
