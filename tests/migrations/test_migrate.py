"""sql/migrate.sh: pending migrations, then changed function files, in one transaction under a lock;
released migrations are never edited."""

import subprocess
from concurrent.futures import ThreadPoolExecutor

import psycopg

from authgres.schema import dump_schema
from tests.migrations.conftest import SQL, applied, conninfo, psql_file, run_migrate, sha256

MIGRATIONS = sorted((SQL / "migrations").glob("*.sql"))
FUNCTION_FILES = [
    line.split()[1] for line in (SQL / "functions" / "all.sql").read_text().splitlines() if line.startswith("\\ir ")
]


def migrated(dbname: str) -> None:
    result = run_migrate(dbname)
    assert result.returncode == 0, result.stderr


def query(dbname: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo(dbname), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def function_comment(dbname: str, signature: str) -> str:
    return query(dbname, "select obj_description(%s::regprocedure, 'pg_proc')", signature)[0][0]  # type: ignore[return-value]


def test_a_fresh_install_records_every_file_with_its_checksum(empty_database):
    db = empty_database()
    result = run_migrate(db)
    assert result.returncode == 0, result.stderr
    assert applied(result) == [p.name for p in MIGRATIONS] + [f"functions/{name}" for name in FUNCTION_FILES]
    assert query(db, "select version, checksum from auth.schema_migrations order by version") == [
        (p.name[:4], sha256(p)) for p in MIGRATIONS
    ]
    assert dict(query(db, "select file, checksum from auth.schema_function_files")) == {
        name: sha256(SQL / "functions" / name) for name in FUNCTION_FILES
    }


def test_migrations_are_numbered_in_sequence_and_every_function_file_is_listed():
    numbers = [int(p.name[:4]) for p in MIGRATIONS]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert sorted(FUNCTION_FILES) == sorted(p.name for p in (SQL / "functions").glob("*.sql") if p.name != "all.sql")


def test_migrating_again_applies_nothing(empty_database):
    db = empty_database()
    migrated(db)
    before = query(db, "select file, applied_at from auth.schema_function_files order by file")
    again = run_migrate(db)
    assert again.returncode == 0, again.stderr
    assert applied(again) == []
    assert query(db, "select file, applied_at from auth.schema_function_files order by file") == before


def test_a_changed_function_file_alone_is_applied_again(empty_database, sql_copy):
    db = empty_database()
    migrated(db)
    audit = sql_copy / "functions" / "audit.sql"
    audit.write_text(audit.read_text().replace("'Appends one audit_log_entries row", "'Appends one audit row"))

    result = run_migrate(db, sql_copy)

    assert result.returncode == 0, result.stderr
    assert applied(result) == ["functions/audit.sql"]
    assert function_comment(db, "auth._audit(auth.users, text, text, inet, jsonb)").startswith("Appends one audit row")
    assert query(db, "select checksum from auth.schema_function_files where file = 'audit.sql'") == [(sha256(audit),)]


def test_a_new_migration_is_applied_then_every_function_file(empty_database, sql_copy):
    db = empty_database()
    migrated(db)
    number = int(MIGRATIONS[-1].name[:4]) + 1
    migration = sql_copy / "migrations" / f"{number:04d}_create_probe.sql"
    migration.write_text(
        "set local role authgres_owner;\n"
        f"insert into auth.schema_migrations (version) values ('{number:04d}');\n"
        "create table auth.probe (id integer);\n"
    )

    result = run_migrate(db, sql_copy)

    assert result.returncode == 0, result.stderr
    assert applied(result) == [migration.name] + [f"functions/{name}" for name in FUNCTION_FILES]
    assert query(db, "select checksum from auth.schema_migrations where version = %s", f"{number:04d}") == [
        (sha256(migration),)
    ]
    assert query(db, "select to_regclass('auth.probe') is not null") == [(True,)]


def test_an_edited_released_migration_is_refused_and_nothing_is_applied(empty_database, sql_copy):
    db = empty_database()
    migrated(db)
    released = sql_copy / "migrations" / MIGRATIONS[-1].name
    released.write_text(released.read_text() + "\n-- edited after release\n")
    audit = sql_copy / "functions" / "audit.sql"
    audit.write_text(audit.read_text().replace("'Appends one audit_log_entries row", "'Appends one audit row"))

    result = run_migrate(db, sql_copy)

    assert result.returncode != 0
    assert MIGRATIONS[-1].name[:4] in result.stderr
    assert applied(result) == []
    assert function_comment(db, "auth._audit(auth.users, text, text, inet, jsonb)").startswith(
        "Appends one audit_log_entries row"
    )


def test_a_removed_released_migration_is_refused(empty_database, sql_copy):
    db = empty_database()
    migrated(db)
    (sql_copy / "migrations" / MIGRATIONS[-1].name).unlink()
    result = run_migrate(db, sql_copy)
    assert result.returncode != 0
    assert MIGRATIONS[-1].name[:4] in result.stderr


def test_a_failing_file_rolls_back_the_whole_run(empty_database, sql_copy):
    db = empty_database()
    migrated(db)
    number = int(MIGRATIONS[-1].name[:4]) + 1
    (sql_copy / "migrations" / f"{number:04d}_create_probe.sql").write_text(
        "set local role authgres_owner;\n"
        f"insert into auth.schema_migrations (version) values ('{number:04d}');\n"
        "create table auth.probe (id integer);\n"
    )
    prune = sql_copy / "functions" / "prune.sql"
    prune.write_text(prune.read_text() + "\nthis is not sql;\n")

    result = run_migrate(db, sql_copy)

    assert result.returncode != 0
    assert query(db, "select to_regclass('auth.probe') is null") == [(True,)]
    assert query(db, "select count(*) from auth.schema_migrations where version = %s", f"{number:04d}") == [(0,)]


def test_a_function_file_missing_from_the_list_is_refused(empty_database, sql_copy):
    db = empty_database()
    (sql_copy / "functions" / "stray.sql").write_text("select 1;\n")
    result = run_migrate(db, sql_copy)
    assert result.returncode != 0
    assert "stray.sql" in result.stderr
    assert query(db, "select to_regnamespace('auth') is null") == [(True,)]


def test_concurrent_runs_take_turns(empty_database):
    """Two service instances starting at once on an empty database: one installs, the other finds it done."""
    db = empty_database()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_migrate(db), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    installs = sorted(len(applied(r)) for r in results)
    assert installs == [0, len(MIGRATIONS) + len(FUNCTION_FILES)]
    assert query(db, "select count(*) from auth.schema_migrations") == [(len(MIGRATIONS),)]


def test_plain_psql_installs_the_same_schema_and_the_runner_takes_over(empty_database, postgresql):
    db = empty_database()
    psql_file(db, *MIGRATIONS, SQL / "functions" / "all.sql")
    assert dump_schema(conninfo(db)) == dump_schema(conninfo(postgresql.info.dbname))

    result = run_migrate(db)

    assert result.returncode == 0, result.stderr
    assert [name for name in applied(result) if not name.startswith("functions/")] == []
    assert query(db, "select count(*) from auth.schema_migrations where checksum is null") == [(0,)]
    assert dump_schema(conninfo(db)) == dump_schema(conninfo(postgresql.info.dbname))


def test_the_committed_schema_snapshot_is_current(postgresql):
    snapshot = (SQL / "schema.sql").read_text()
    assert dump_schema(conninfo(postgresql.info.dbname)) == snapshot, "sql/schema.sql is stale: run `make schema`"


def test_the_schema_snapshot_names_no_database_and_no_pg_dump_build():
    snapshot = (SQL / "schema.sql").read_text()
    assert "Dumped from" not in snapshot and "\\restrict" not in snapshot
    assert subprocess.run(["git", "check-ignore", "-q", str(SQL / "schema.sql")], check=False).returncode == 1


def test_function_definitions_live_in_function_files_only():
    for path in MIGRATIONS:
        text = path.read_text().lower()
        assert "create function" not in text and "create or replace function" not in text, path.name
