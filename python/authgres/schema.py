"""sql/schema.sql: the DDL of a fresh install, as pg_dump prints it, so that a reviewer reads the
effect of every change on the schema. `make schema` (python -m authgres.schema) writes it; a test
fails when it is stale."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from authgres.cli import migrate, sql_dir
from authgres.localpg import LocalCluster, _bindir

# Lines that depend on the pg_dump build or on the run rather than on the schema.
_VOLATILE_PREFIXES = ("-- Dumped from database version", "-- Dumped by pg_dump version", "\\restrict", "\\unrestrict")


def dump_schema(conninfo: str) -> str:
    """pg_dump --schema-only (owners, grants and comments included), without its volatile lines."""
    dump = subprocess.run(
        [str(_bindir() / "pg_dump"), "--schema-only", "--dbname", conninfo],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [line for line in dump.splitlines() if not line.startswith(_VOLATILE_PREFIXES)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def fresh_install_schema() -> str:
    """The schema of a fresh install: sql/migrate.sh on an empty database of a throwaway cluster."""
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="authgres-schema-")), port=5432)
    try:
        cluster.start(durable=False)
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute("create database authgres")
        migrate(cluster.conninfo(dbname="authgres"))
        return dump_schema(cluster.conninfo(dbname="authgres"))
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def main() -> None:
    target = sql_dir() / "schema.sql"
    target.write_text(fresh_install_schema())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
