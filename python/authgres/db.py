"""The connection pool, and the one way the service talks to SQL: call auth.<function> by name.

Every call is a single statement on an autocommit connection, so it is its own transaction: the work
of a request commits or rolls back as one, in one round trip.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from authgres.errors import SQLSTATE_ERRORS, AuthError
from authgres.signing import TokenSigner, has_unsigned_tokens


class JsonText(str):
    """A jsonb value as PostgreSQL wrote it: most responses go out exactly as SQL built them."""

    __slots__ = ()


class _JsonTextLoader(Loader):
    def load(self, data: Any) -> JsonText:
        return JsonText(bytes(data).decode())


def _configurer(statement_timeout_ms: int) -> Any:
    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        conn.adapters.register_loader("jsonb", _JsonTextLoader)
        # Timestamps in responses read as UTC whatever the server's TimeZone; no request (a slow hook
        # included) holds a connection longer than the statement timeout.
        await conn.execute(
            sql.SQL("set timezone = 'UTC'; set statement_timeout = {}").format(sql.Literal(statement_timeout_ms))
        )

    return configure


@lru_cache(maxsize=256)
def _call_query(function: str, names: tuple[str, ...], *, rows: bool) -> bytes:
    arguments = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(f"p_{name}"), sql.Placeholder(name)) for name in names
    )
    template = "select * from auth.{}({})" if rows else "select auth.{}({})"
    return sql.SQL(template).format(sql.Identifier(function), arguments).as_bytes(None)


def _auth_error(error: psycopg.Error) -> AuthError | None:
    if error.sqlstate in SQLSTATE_ERRORS:
        return AuthError.from_sqlstate(error.sqlstate, error.diag.message_primary or "", error.diag.message_detail)
    if isinstance(error, psycopg.OperationalError) and (error.sqlstate or "57")[:2] in ("08", "57"):
        # The connection broke (database restart, network): the statement either never ran or rolled
        # back with its transaction. 503 tells the clients to retry; the pool replaces the connection.
        return AuthError(503, "unexpected_failure", "The database is unavailable, please retry")
    return None


class Database:
    def __init__(
        self, conninfo: str, *, min_size: int = 2, max_size: int = 10, statement_timeout_ms: int = 10000
    ) -> None:
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            configure=_configurer(statement_timeout_ms),
            open=False,
            name="authgres",
        )
        self.signer = TokenSigner(lambda: self.call_rows("signing_keys_for_service"))

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    async def call(self, function: str, **params: Any) -> Any:
        """Returns the value of auth.<function>(p_<name> => value, ...).

        jsonb comes back as JsonText, unparsed (but for signing the ES256 access tokens in it). A
        function that must commit its side effects and still fail (refresh-token replay revokes the
        session) returns {"error": SQLSTATE, "message": ...} instead of raising; that becomes the same
        AuthError a raised SQLSTATE would.
        """
        query = _call_query(function, tuple(params), rows=False)
        async with self.pool.connection() as conn:
            try:
                cursor = await conn.execute(query, params)
            except psycopg.Error as error:
                raise _auth_error(error) or error from None
            row = await cursor.fetchone()
        value = row[0] if row else None
        if isinstance(value, JsonText) and has_unsigned_tokens(value):
            value = JsonText(await self.signer.sign_tokens(value))
        # jsonb orders keys by length, so such an outcome always begins exactly like this.
        if isinstance(value, JsonText) and value.startswith('{"error": "AU'):
            outcome = json.loads(value)
            raise AuthError.from_sqlstate(outcome["error"], outcome["message"])
        return value

    async def call_rows(self, function: str, **params: Any) -> list[dict[str, Any]]:
        """The rows of a set- or record-returning auth.<function>, as dicts."""
        query = _call_query(function, tuple(params), rows=True)
        async with self.pool.connection() as conn:
            try:
                cursor = await conn.cursor(row_factory=dict_row).execute(query, params)
            except psycopg.Error as error:
                raise _auth_error(error) or error from None
            return await cursor.fetchall()

    async def call_row(self, function: str, **params: Any) -> dict[str, Any] | None:
        """The first row of a set- or record-returning auth.<function>, as a dict."""
        rows = await self.call_rows(function, **params)
        return rows[0] if rows else None
