"""The seam between the service and SQL: every function the Python calls exists with the argument
names it uses and is executable by the service role, nothing else is granted to that role, and the
SQLSTATEs the SQL raises are exactly those the error map knows."""

import ast
import re

import pytest

from authgres.errors import SQLSTATE_ERRORS
from tests.conftest import ROOT

PACKAGE = ROOT / "python" / "authgres"
FUNCTION_FILES = sorted((ROOT / "sql" / "functions").glob("*.sql"))
SQL_FILES = sorted((ROOT / "sql").rglob("*.sql"))

# Granted to the service but not called from Python, each for a reason.
SQL_API = {
    # auth.sign() and auth.verify() (pgjwt's API) run as their caller, and so do the helpers inside them.
    "verify": "pgjwt-compatible verification, for SQL callers",
    "_hmac": "inside auth.sign() and auth.verify()",
    "url_encode": "inside auth.sign() and auth.verify()",
    "url_decode": "inside auth.verify()",
    "algorithm_sign": "inside auth.sign() and auth.verify()",
    "_equal_secure": "inside auth.verify()",
    "_decode_json_segment": "inside auth.verify()",
    "_check_jwt": "inside auth.verify()",
    # Pure functions of the key they are given: they read no secret of ours.
    "hotp": "RFC 4226 codes, for SQL callers and the RFC's test vectors",
    "totp": "RFC 6238 codes, for SQL callers and the RFC's test vectors",
}
BY_NAME = {"call", "call_row", "call_rows"}
# outbox.OutboxDrain.drain calls each outbox's `claim` function by the name its class gives.
OUTBOX_CLAIM = ("claim", ("lease_seconds", "limit"))


def python_calls():
    """(function, argument names or None, arity or None) for every SQL function the service calls."""
    calls = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                first = node.args[0]
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    continue
                if node.func.attr in BY_NAME:
                    calls.add((first.value, tuple(sorted(k.arg for k in node.keywords if k.arg)), None))
                elif node.func.attr == "call_batched":
                    calls.add((first.value, None, len(node.args) - 1))
            if (
                isinstance(node, ast.Assign)
                and [getattr(target, "id", None) for target in node.targets] == [OUTBOX_CLAIM[0]]
                and isinstance(node.value, ast.Constant)
            ):
                calls.add((node.value.value, OUTBOX_CLAIM[1], None))
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                calls.update((name, None, None) for name in re.findall(r"\bauth\.(\w+)\(", node.value))
    return calls


def service_grants(admin):
    return {
        name
        for (name,) in admin.execute("""
            select p.proname from pg_proc p, aclexplode(p.proacl) a
             where p.pronamespace = 'auth'::regnamespace and a.grantee = 'authgres_service'::regrole
               and a.privilege_type = 'EXECUTE'
        """).fetchall()
    }


def test_the_scan_finds_the_service_calls():
    names = {name for name, _, _ in python_calls()}
    assert {"get_users", "refresh_sessions", "sign_in_with_password", "configure", "sign"} <= names


@pytest.mark.parametrize(("function", "names", "arity"), sorted(python_calls(), key=str))
def test_every_called_function_exists_with_its_argument_names(admin, function, names, arity):
    rows = admin.execute(
        """select p.oid, coalesce(p.proargnames, '{}'), p.pronargs, p.proargtypes::regtype[]::text[]
             from pg_proc p where p.pronamespace = 'auth'::regnamespace and p.proname = %s""",
        (function,),
    ).fetchall()
    assert len(rows) == 1, f"auth.{function} is not one function"
    oid, argument_names, count, types = rows[0]
    assert admin.execute("select has_function_privilege('authgres_service', %s, 'EXECUTE')", (oid,)).fetchone()[0]
    if names is not None:
        assert {f"p_{name}" for name in names} <= set(argument_names[:count])
    if arity is not None:
        assert types == ["text[]"] * arity


def test_nothing_else_is_granted_to_the_service(admin):
    called = {name for name, _, _ in python_calls()}
    assert service_grants(admin) == called | set(SQL_API)


def test_public_sql_api_entries_are_granted(admin):
    assert set(SQL_API) <= service_grants(admin)


def sqlstates_in_sql():
    return {code for path in FUNCTION_FILES for code in re.findall(r"'(AU[A-Z][0-9]{2})'", path.read_text())}


def test_every_sqlstate_the_sql_raises_is_in_the_error_map():
    client_errors = {code for code in sqlstates_in_sql() if not code.startswith("AUX")}
    assert client_errors - set(SQLSTATE_ERRORS) == set()


def test_every_error_map_entry_is_raised_somewhere():
    assert set(SQLSTATE_ERRORS) - sqlstates_in_sql() == set()


def test_server_faults_stay_out_of_the_error_map():
    assert {code for code in SQLSTATE_ERRORS if code.startswith("AUX")} == set()
    assert any(code.startswith("AUX") for code in sqlstates_in_sql())


DEFINITION = re.compile(r"create\s+(?:or\s+replace\s+)?function\s+auth\.(\w+)\s*\(", re.IGNORECASE)


def test_every_auth_function_is_defined_exactly_once_in_sql(admin):
    definitions: dict[str, list[str]] = {}
    for path in SQL_FILES:
        if path.name == "schema.sql":  # generated from the rest
            continue
        for name in DEFINITION.findall(path.read_text()):
            definitions.setdefault(name, []).append(str(path.relative_to(ROOT)))
    catalog = [
        name for (name,) in admin.execute("select proname from pg_proc where pronamespace = 'auth'::regnamespace")
    ]
    assert len(catalog) == len(set(catalog)), "overloaded names: count them by signature"
    assert set(definitions) == set(catalog)
    assert {name: places for name, places in definitions.items() if len(places) != 1} == {}
    assert all(places[0].startswith("sql/functions/") for places in definitions.values())


def test_every_function_file_begins_as_the_owner():
    for path in FUNCTION_FILES:
        if path.name != "all.sql":
            lines = [line for line in path.read_text().splitlines() if line and not line.startswith("--")]
            assert lines[0] == "set local role authgres_owner;", path.name
