"""The connection pool, and the one way the service talks to SQL: call auth.<function> by name.

Every call is a single statement on an autocommit connection, so it is its own transaction: the work
of a request commits or rolls back as one, in one round trip.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from authgres.errors import SQLSTATE_ERRORS, AuthError
from authgres.metrics import Metrics
from authgres.notifications import Notifications
from authgres.signing import TokenSigner, has_unsigned_tokens

log = logging.getLogger("authgres")

OPEN_SECONDS = 30  # how long the service waits at start for the database (as the pool waits for it)

# How long a request waits for a connection before it answers 503 (the database is away, say).
POOL_WAIT_SECONDS = 10.0
READY_SECONDS = 2.0  # how long /ready waits for the database before it answers 503
BATCH_LIMIT = 32  # items per batched call; sql/functions/users.sql (auth.get_users) says why not more


class JsonText(str):
    """A jsonb value as PostgreSQL wrote it: most responses go out exactly as SQL built them."""

    __slots__ = ()


class _JsonTextLoader(Loader):
    def load(self, data: Any) -> JsonText:
        return JsonText(bytes(data).decode())


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("jsonb", _JsonTextLoader)


async def _session_defaults(conninfo: str, statement_timeout_ms: int) -> bool:
    """Makes the service's connections start in UTC with its statement timeout, and says whether a
    pooler stands between the service and PostgreSQL.

    Behind a transaction pooler (PgBouncer, Supavisor) a SET would stay on a server connection that
    other clients get next, and would not follow this client to the next one. Defaults of the login
    role in this database do both right: every server connection the role opens starts with them (a
    pooler's connections opened before a change keep the old values until the pooler replaces them).
    A pooler also hands out its own process ids, which is how it is recognised.
    """
    wanted = ["TimeZone=UTC", f"statement_timeout={statement_timeout_ms}ms"]
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
        # Set only when they differ: a catalog write per start would be harmless but pointless.
        await conn.execute(
            sql.SQL("""
            do $$
            declare
              v_setting text;
            begin
              -- Workers start together: one at a time, or two inserts of the same setting collide.
              perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('authgres session defaults'));
              foreach v_setting in array array[{}] loop
                if not exists (
                     select from pg_catalog.pg_db_role_setting s
                      where s.setrole = (select r.oid from pg_catalog.pg_roles r where r.rolname = current_user)
                        and s.setdatabase = (select d.oid from pg_catalog.pg_database d
                                              where d.datname = pg_catalog.current_database())
                        and v_setting = any(s.setconfig)) then
                  execute pg_catalog.format('alter role %I in database %I set %I = %L', current_user,
                    pg_catalog.current_database(), pg_catalog.split_part(v_setting, '=', 1),
                    pg_catalog.split_part(v_setting, '=', 2));
                end if;
                -- The server connection this runs on may be older than the defaults: a pooler keeps
                -- it for this role and database, that is, for this service alone.
                perform pg_catalog.set_config(pg_catalog.split_part(v_setting, '=', 1),
                                              pg_catalog.split_part(v_setting, '=', 2), false);
              end loop;
            end
            $$""").format(sql.SQL(", ").join(map(sql.Literal, wanted)))
        )
        cursor = await conn.execute("select pg_catalog.pg_backend_pid()")
        row = await cursor.fetchone()
        assert row is not None
        return bool(row[0] != conn.info.backend_pid)


def _raise_failure(value: Any) -> Any:
    """value, unless it is a committed failure {"error": SQLSTATE, "message": ...}: then its AuthError."""
    # jsonb orders keys by length, so such an outcome always begins exactly like this.
    if isinstance(value, JsonText) and value.startswith('{"error": "'):
        outcome = json.loads(value)
        if outcome["error"] in SQLSTATE_ERRORS:
            raise AuthError.from_sqlstate(outcome["error"], outcome["message"])
        if outcome["error"].startswith("40"):
            # A batched item chosen as a deadlock (or serialization) victim rolled back alone: retryable.
            raise AuthError(503, "unexpected_failure", "The request conflicted with another, please retry")
        raise RuntimeError(f"auth function failed with SQLSTATE {outcome['error']}: {outcome['message']}")
    return value


@lru_cache(maxsize=16)
def _batch_query(function: str, arity: int) -> bytes:
    arrays = sql.SQL(", ").join([sql.SQL("%s::text[]")] * arity)
    return sql.SQL("select auth.{}({})").format(sql.Identifier(function), arrays).as_bytes(None)


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
        self,
        conninfo: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        statement_timeout_ms: int = 10000,
        prepared_statements: str = "auto",
        metrics: Metrics | None = None,
        listen_url: str | None = None,
    ) -> None:
        self.conninfo = conninfo
        self._listen_url = listen_url
        self.statement_timeout_ms = statement_timeout_ms
        self.prepared_statements = prepared_statements
        self.behind_pooler = False
        self._connect_kwargs: dict[str, Any] = {"autocommit": True}
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=self._connect_kwargs,
            configure=_configure,
            timeout=POOL_WAIT_SECONDS,
            open=False,
            name="authgres",
        )
        # Requests queue here rather than in the pool: a pool waiter costs a timer task and a condition
        # variable, a semaphore waiter one future, and at 64 concurrent requests most of them wait.
        self._slots = asyncio.Semaphore(max_size)
        self._queues: dict[str, list[tuple[tuple[str | None, ...], asyncio.Future[Any]]]] = {}
        self._batches: set[asyncio.Task[None]] = set()
        self.signer = TokenSigner(lambda: self.call_rows("signing_keys_for_service"))
        self.metrics = metrics or Metrics()
        self.notifications = Notifications(self)

    def load(self) -> tuple[int, int, int, int]:
        """Connections in use, idle connections, calls waiting for a connection (a batch counts once),
        and requests queued for the next batched call: what the metrics show of the pool."""
        stats = self.pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        waiting = len(self._slots._waiters or ())
        return size - idle, idle, waiting, sum(map(len, self._queues.values()))

    async def open(self) -> None:
        self.behind_pooler = await self._first_connection()
        # Prepared statements save the planning of every call (a third of GET /user's database time),
        # but a transaction pooler runs the next statement on another server connection, which does
        # not know them (PgBouncer before 1.21 in transaction mode, for one).
        prepare = self.prepared_statements == "on" or (self.prepared_statements == "auto" and not self.behind_pooler)
        self._connect_kwargs["prepare_threshold"] = 5 if prepare else None
        await self.pool.open(wait=True, timeout=30)

    async def _first_connection(self) -> bool:
        """_session_defaults, tried again while the database cannot be reached yet (starting, restarting,
        or a pooler that answers "try again later" for a second after a failed server login), for as
        long as the pool itself waits at start."""
        deadline, pause = time.monotonic() + OPEN_SECONDS, 0.1
        while True:
            try:
                return await _session_defaults(self.conninfo, self.statement_timeout_ms)
            except psycopg.OperationalError as error:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("database not reachable yet (%s); trying again in %.1f s", error, pause)
                await asyncio.sleep(pause)
                pause = min(2 * pause, 2.0)

    @property
    def listen_conninfo(self) -> str | None:
        """Where LISTEN can run: AUTHGRES_DB_LISTEN_URL, else the service's own URL when no pooler stands
        between it and PostgreSQL; None when neither (then whoever would listen polls instead).

        LISTEN needs a connection of its own (one per process, notifications.py): through a transaction pooler
        it would be left on a server connection that other clients share, and its notifications would reach
        whoever holds that one.
        """
        return self._listen_url or (None if self.behind_pooler else self.conninfo)

    async def reachable(self) -> bool:
        """Whether a pooled connection answers within READY_SECONDS (readiness)."""
        try:
            async with asyncio.timeout(READY_SECONDS), self.pool.connection() as conn:
                await conn.execute("select 1")
        except (psycopg.Error, TimeoutError):  # psycopg_pool.PoolTimeout is a psycopg.Error
            return False
        return True

    async def close(self) -> None:
        for batch in self._batches:
            batch.cancel()
        await self.pool.close()

    async def call(self, function: str, **params: Any) -> Any:
        """Returns the value of auth.<function>(p_<name> => value, ...).

        jsonb comes back as JsonText, unparsed (but for signing the ES256 access tokens in it). A
        function that must commit its side effects and still fail (refresh-token replay revokes the
        session) returns {"error": SQLSTATE, "message": ...} instead of raising; that becomes the same
        AuthError a raised SQLSTATE would.
        """
        query = _call_query(function, tuple(params), rows=False)
        # Getting the connection is inside the try too: while the database is away, the pool's wait
        # ends in PoolTimeout, which like a broken connection is a retryable 503.
        async with self._slots:
            try:
                async with self.pool.connection() as conn:
                    cursor = await conn.execute(query, params)
                    row = await cursor.fetchone()
            except psycopg.Error as error:
                raise _auth_error(error) or error from None
        return _raise_failure(await self._signed(row[0] if row else None))

    async def _signed(self, value: Any) -> Any:
        """value with the ES256 access tokens SQL left unsigned in it signed."""
        if isinstance(value, JsonText) and has_unsigned_tokens(value):
            return JsonText(await self.signer.sign_tokens(value))
        return value

    async def call_batched(self, function: str, *values: str | None) -> Any:
        """auth.<function>(array[value, ...], ...) for these values and any others queued meanwhile.

        Values queue while every connection is busy; the batch that gets the next connection takes
        (up to BATCH_LIMIT of) them, so under load many requests share one round trip and one
        transaction, while with a connection free a request goes alone at once. auth.<function>
        takes one array per argument and answers per item, in order, {"error": ...} for failures.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(function, [])
        queue.append((values, future))
        if len(queue) % BATCH_LIMIT == 1:
            batch = asyncio.create_task(self._run_batch(function))
            self._batches.add(batch)
            batch.add_done_callback(self._batches.discard)
        return _raise_failure(await future)

    async def _run_batch(self, function: str) -> None:
        queued: list[tuple[tuple[str | None, ...], asyncio.Future[Any]]] = []
        try:
            async with self._slots:
                queue = self._queues.get(function, [])
                queued, queue[:BATCH_LIMIT] = queue[:BATCH_LIMIT], []
                if not queued:
                    return
                self.metrics.batch_size.labels(function).observe(len(queued))
                columns = [list(column) for column in zip(*(values for values, _ in queued), strict=True)]
                async with self.pool.connection() as conn:
                    cursor = await conn.execute(_batch_query(function, len(columns)), columns)
                    row = await cursor.fetchone()
            # Signing may fetch keys through the pool, so it waits until this batch has let go of its slot.
            outcomes = [await self._signed(outcome) for outcome in (row[0] if row else [])]
            results = list(zip([future for _, future in queued], outcomes, strict=True))
        except Exception as error:
            failure = (_auth_error(error) if isinstance(error, psycopg.Error) else None) or error
            results = []
            for _, future in queued:
                if not future.done():
                    future.set_exception(failure)
        except asyncio.CancelledError:
            for _, future in queued:
                future.cancel()
            raise
        for future, outcome in results:
            if not future.done():
                future.set_result(outcome)

    async def call_rows(self, function: str, **params: Any) -> list[dict[str, Any]]:
        """The rows of a set- or record-returning auth.<function>, as dicts."""
        query = _call_query(function, tuple(params), rows=True)
        async with self._slots:
            try:
                async with self.pool.connection() as conn:
                    cursor = await conn.cursor(row_factory=dict_row).execute(query, params)
                    return await cursor.fetchall()
            except psycopg.Error as error:
                raise _auth_error(error) or error from None

    async def call_row(self, function: str, **params: Any) -> dict[str, Any] | None:
        """The first row of a set- or record-returning auth.<function>, as a dict."""
        rows = await self.call_rows(function, **params)
        return rows[0] if rows else None
