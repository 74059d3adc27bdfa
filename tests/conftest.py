"""Real parts only: a throwaway PostgreSQL cluster, a database per test cloned from a migrated
template, and the real aiohttp application on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from pytest_postgresql import factories
from supabase_auth import AsyncGoTrueClient

from authgres.app import create_app
from authgres.localpg import LocalCluster, LocalPgBouncer
from authgres.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "test-secret-test-secret-test-secret-0123456789"
CLUSTER = LocalCluster(Path(tempfile.mkdtemp(prefix="authgres-test-")), port=5432)
# AUTHGRES_TEST_POOLER=pgbouncer: the service under test reaches PostgreSQL through PgBouncer in
# transaction mode, as in most production set-ups (`make test` runs the HTTP and client suites so too).
THROUGH_POOLER = os.environ.get("AUTHGRES_TEST_POOLER", "") == "pgbouncer"


def _migrate(host: str, port: int, user: str, dbname: str, **_: Any) -> None:
    target = make_conninfo(host=host, port=port, user=user, dbname=dbname)
    subprocess.run(["bash", str(ROOT / "sql" / "migrate.sh"), target], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    CLUSTER.start(durable=False)
    yield CLUSTER
    CLUSTER.stop()
    shutil.rmtree(CLUSTER.root, ignore_errors=True)


postgresql_template = factories.postgresql_noproc(
    host=str(CLUSTER.socket_dir), port=CLUSTER.port, user="postgres", dbname="authgres_test", load=[_migrate]
)


@pytest.fixture(scope="session")
def pg_server(pg_cluster: LocalCluster, postgresql_template: Any) -> Any:
    return postgresql_template


postgresql = factories.postgresql("pg_server")


@pytest.fixture
def dsn(postgresql: psycopg.Connection[Any]) -> Any:
    """conninfo for a role on this test's database."""

    def for_role(user: str = "postgres") -> str:
        return make_conninfo(
            host=CLUSTER.socket_dir.as_posix(), port=CLUSTER.port, user=user, dbname=postgresql.info.dbname
        )

    return for_role


@pytest.fixture(scope="session")
def pgbouncer(pg_cluster: LocalCluster) -> Iterator[LocalPgBouncer]:
    bouncer = LocalPgBouncer(Path(tempfile.mkdtemp(prefix="authgres-pgbouncer-")), CLUSTER, port=free_port())
    bouncer.start()
    yield bouncer
    bouncer.stop()
    shutil.rmtree(bouncer.root, ignore_errors=True)


@pytest.fixture
def service_url(dsn: Any, request: pytest.FixtureRequest) -> str:
    """Where the service under test connects: directly, or through PgBouncer (AUTHGRES_TEST_POOLER)."""
    if THROUGH_POOLER:
        bouncer: LocalPgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.conninfo("authgres_service", request.getfixturevalue("postgresql").info.dbname)
    return str(dsn("authgres_service"))


@pytest.fixture
def settings(service_url: str) -> Settings:
    # Cheap argon2 parameters keep the suite fast; tests/unit checks the production defaults.
    return Settings(
        database_url=service_url,
        jwt_secret=JWT_SECRET,
        mailer_autoconfirm=True,
        anonymous_users_enabled=True,
        argon2_memory_kib=1024,
        argon2_time_cost=1,
        db_pool_min=1,
        # Throttles have tests of their own; elsewhere they would only couple unrelated requests.
        smtp_max_frequency=0,
        mailer_sweep_seconds=0.05,
        mailer_retry_base_seconds=0.01,
    )


@pytest.fixture
def admin(dsn: Any) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection, for arranging data and reading tables directly."""
    with psycopg.connect(dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def service(dsn: Any, settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the service's login role, configured as the service would configure it."""
    with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        conn.execute("select auth.configure(%s, %s)", (Jsonb(settings.sql_settings()), settings.jwt_secret))
        yield conn


@pytest.fixture
def make_settings(settings: Settings) -> Any:
    def build(**changes: Any) -> Settings:
        return replace(settings, **changes)

    return build


@pytest.fixture
async def server(settings: Settings, aiohttp_server: Any) -> Any:
    # settings first: the database is set up before the server and so torn down after it.
    return await aiohttp_server(create_app(settings))


@pytest.fixture
async def client(aiohttp_client: Any, server: Any) -> Any:
    return await aiohttp_client(server)


@pytest.fixture
async def gotrue(server: Any) -> AsyncIterator[AsyncGoTrueClient]:
    """The official Python client, pointed at the live server the way supabase-py points it."""
    auth = AsyncGoTrueClient(url=str(server.make_url("/auth/v1")), auto_refresh_token=False, persist_session=True)
    yield auth
    await auth.close()


@pytest.fixture
async def make_client(make_settings: Any, aiohttp_client: Any) -> Any:
    """A client for a server configured differently from the default test server."""

    async def build(**changes: Any) -> Any:
        return await aiohttp_client(create_app(make_settings(**changes)))

    return build


class Inbox:
    """An aiosmtpd handler keeping what it receives; tests wait on it without sleeping."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._arrived:
            self.messages.append(message)  # type: ignore[arg-type]
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 20) -> list[EmailMessage]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.messages) >= count, timeout), (
                f"{len(self.messages)} of {count} emails arrived"
            )
            return list(self.messages)

    async def next_to(self, address: str, index: int = 0) -> EmailMessage:
        """The index-th email to an address (waits for it)."""

        def to_address() -> list[EmailMessage]:
            return [m for m in self.messages if m["To"] == address]

        def wait() -> EmailMessage:
            with self._arrived:
                assert self._arrived.wait_for(lambda: len(to_address()) > index, 20), f"no email #{index} to {address}"
                return to_address()[index]

        return await asyncio.to_thread(wait)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[Any]:
    """A real SMTP server on loopback; .start() and .stop() simulate an outage."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.inbox = inbox  # type: ignore[attr-defined]
    controller.start()
    yield controller
    with contextlib.suppress(Exception):
        controller.stop()


@pytest.fixture
def mail_settings(settings: Settings, smtp: Any) -> Settings:
    return replace(settings, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls="none", mailer_autoconfirm=False)


@pytest.fixture
async def mail_server(mail_settings: Settings, aiohttp_server: Any) -> Any:
    return await aiohttp_server(create_app(mail_settings))


@pytest.fixture
async def mail_client(mail_server: Any, aiohttp_client: Any) -> Any:
    return await aiohttp_client(mail_server)


@pytest.fixture
def inbox(smtp: Any) -> Inbox:
    return smtp.inbox  # type: ignore[no-any-return]


@pytest.fixture
def superuser(admin: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The superuser connection, for tests where `admin` names the admin API client."""
    return admin


@pytest.fixture
def notes(admin: psycopg.Connection[Any]) -> None:
    """An application table owned by the app, guarded by a Supabase-style policy."""
    admin.execute("""
        create table public.notes (
          id serial primary key,
          owner uuid not null default auth.uid() references auth.users (id) on delete cascade,
          body text not null
        );
        alter table public.notes enable row level security;
        create policy own_notes on public.notes
          using (owner = (select auth.uid())) with check (owner = (select auth.uid()));
        grant select, insert on public.notes to authenticated;
        grant usage on sequence public.notes_id_seq to authenticated;
        do $$ begin
          if not exists (select from pg_roles where rolname = 'app_login') then
            create role app_login login;
          end if;
        end $$;
        grant authgres_authenticator, authenticated, anon to app_login;
    """)


@pytest.fixture
def app_conn(dsn: Any, notes: None) -> Iterator[psycopg.Connection[Any]]:
    """A connection as an app's own login role, which may take the authenticated and anon roles."""
    with psycopg.connect(dsn("app_login")) as conn:
        yield conn


# Identity providers on the loopback (third-party sign-in): tests/http and tests/compat use them.
from tests.http.identity_providers import github, issuer, oidc_provider  # noqa: E402, F401
