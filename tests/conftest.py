"""Real parts only: a throwaway PostgreSQL cluster, a database per test cloned from a migrated
template, and the real aiohttp application on a loopback port."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from pytest_postgresql import factories
from supabase_auth import AsyncGoTrueClient

from authgres.app import create_app
from authgres.localpg import LocalCluster
from authgres.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "test-secret-test-secret-test-secret-0123456789"
CLUSTER = LocalCluster(Path(tempfile.mkdtemp(prefix="authgres-test-")), port=5432)


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


@pytest.fixture
def settings(dsn: Any) -> Settings:
    # Cheap argon2 parameters keep the suite fast; tests/unit checks the production defaults.
    return Settings(
        database_url=dsn("authgres_service"),
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
