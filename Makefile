# The two commands: `make dev` (serve locally) and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Flags argon2-cffi's bindings are compiled with, for password hashing about twice as fast as PyPI's portable
# wheel (README: Installing). Empty keeps the wheel; a build for another machine wants e.g. -march=x86-64-v3.
ARGON2_CFLAGS ?= -march=native

.PHONY: install argon2 postgres node chromium dev test lint bench schema clean

install: $(VENV)/.installed argon2 postgres node chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Compiles only when the bindings' version or ARGON2_CFLAGS changed; without a C compiler the wheel stays.
argon2: $(VENV)/.installed
	@$(BIN)/python -m authgres.argon2_build $(ARGON2_CFLAGS)

# PostgreSQL server binaries (initdb, pg_ctl), psql, and PgBouncer (the tests put it in front of the
# service); installed from Debian's packages when missing.
postgres:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-contrib; }
	@command -v psql >/dev/null 2>&1 || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-client; }
	@command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer; }

# The official JavaScript clients the compat tests drive (tests/node: exact versions, package-lock.json),
# installed with npm ci into tests/node/node_modules; Node.js and npm from Debian's packages when missing.
node: tests/node/node_modules/.installed

tests/node/node_modules/.installed: tests/node/package.json tests/node/package-lock.json
	@command -v npm >/dev/null 2>&1 || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The headless browser of the browser tests (tests/browser): Debian's Chromium, which Playwright drives as the
# system browser (Playwright downloads no browser of its own).
chromium:
	@command -v chromium >/dev/null 2>&1 || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

dev: install
	$(BIN)/authgres dev

# Everything, then the HTTP and client suites again with the service behind PgBouncer (transaction mode).
test: install
	$(BIN)/pytest
	AUTHGRES_TEST_POOLER=pgbouncer $(BIN)/pytest tests/http tests/compat

lint: install
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy

# sql/schema.sql: the DDL of a fresh install (a test fails when it is stale).
schema: install
	$(BIN)/python -m authgres.schema

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .authgres tests/node/node_modules
