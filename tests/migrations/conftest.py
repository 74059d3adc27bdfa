"""Databases of their own for the migration tests: empty, or made by the first SQL layout."""

import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import CLUSTER, ROOT

SQL = ROOT / "sql"
FIRST_LAYOUT = Path(__file__).parent / "first_layout"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def conninfo(dbname: str, user: str = "postgres") -> str:
    return make_conninfo(host=CLUSTER.socket_dir.as_posix(), port=CLUSTER.port, user=user, dbname=dbname)


def run_migrate(dbname: str, sql_dir: Path = SQL) -> subprocess.CompletedProcess[str]:
    """sql/migrate.sh (of sql_dir) against dbname; its output and exit code, for the test to judge."""
    return subprocess.run(
        ["bash", str(sql_dir / "migrate.sh"), conninfo(dbname)], capture_output=True, text=True, check=False
    )


def applied(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What a migrate run says it applied, e.g. ['0012_adopt_function_files.sql', 'functions/jwt.sql']."""
    prefix = "migrate: applied "
    return [line.removeprefix(prefix) for line in result.stdout.splitlines() if line.startswith(prefix)]


def psql_file(dbname: str, *files: Path) -> None:
    command = ["psql", "-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1", "-d", conninfo(dbname)]
    for file in files:
        command += ["-f", str(file)]
    subprocess.run(command, check=True, capture_output=True)


@pytest.fixture
def empty_database(admin: Any) -> Any:
    """A factory of empty databases on the test cluster, dropped after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"migrate_{uuid.uuid4().hex[:12]}"
        admin.execute(f"create database {name}")
        made.append(name)
        return name

    yield make
    for name in made:
        admin.execute(f"drop database if exists {name} with (force)")


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A copy of sql/ that a test may change (a new migration, an edited file)."""
    return Path(shutil.copytree(SQL, tmp_path / "sql"))
