"""Catalog lints: the security properties of the auth schema, checked on a migrated database."""

import pytest

# Functions anyone may execute: the RLS helpers, which read only the request's own claims.
PUBLIC_FUNCTIONS = {"uid", "role", "email", "jwt"}
# What an application's login role gets through authgres_authenticator: token verification for apps
# without PostgREST. auth.access_token_claims is SECURITY DEFINER: granted to no client role.
AUTHENTICATOR_FUNCTIONS = {"authenticate", "authenticate_api_key", "access_token_claims"}
# Hooks run as authgres_hook, through the one function that role owns.
HOOK_RUNNER = "_run_hook"
SECRET_COLUMNS = [
    ("users", "encrypted_password"),
    ("refresh_tokens", "token_hash"),
    ("sessions", "refresh_token_key"),
    ("signing_keys", "secret"),
    ("signing_keys", "mac_key"),
    ("one_time_tokens", "token_digest"),
    ("email_outbox", "payload"),
    ("mfa_factors", "secret"),
    ("mfa_recovery_codes", "code_digest"),
    ("mfa_challenges", "login_token_digest"),
    ("api_keys", "key_digest"),
    ("flow_state", "auth_code_digest"),
    ("flow_state", "code_challenge"),
    ("flow_state", "provider_access_token"),
    ("flow_state", "provider_refresh_token"),
]


def auth_functions(admin):
    return admin.execute("""
        select p.oid::regprocedure::text, p.proname, p.prosecdef, p.proconfig,
               coalesce(p.proacl, acldefault('f', p.proowner)) as acl
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'auth'
    """).fetchall()


def test_no_auth_function_resolves_names_through_the_callers_search_path(admin):
    # Either the function pins search_path, or it has a SQL-standard body, bound when it was created.
    exposed = admin.execute("""
        select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'auth'
           and not coalesce('search_path=""' = any(p.proconfig), false)
           and p.prosqlbody is null
    """).fetchall()
    assert exposed == []


def test_security_definer_functions_pin_an_empty_search_path(admin):
    functions = [f for f in auth_functions(admin) if f[2]]
    assert len(functions) > 10
    unpinned = [signature for signature, _, _, config, _ in functions if 'search_path=""' not in (config or [])]
    assert unpinned == []


def test_security_definer_functions_are_not_executable_by_clients(admin):
    exposed = []
    for signature, _, definer, _, _ in auth_functions(admin):
        if not definer:
            continue
        for role in ("anon", "authenticated"):
            if admin.execute("select has_function_privilege(%s, %s, 'EXECUTE')", (role, signature)).fetchone()[0]:
                exposed.append((role, signature))
        public = admin.execute(
            "select exists (select from pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
            " where p.oid = %s::regprocedure and a.grantee = 0)",
            (signature,),
        ).fetchone()[0]
        if public:
            exposed.append(("PUBLIC", signature))
    assert exposed == []


def test_only_the_intended_functions_are_public(admin):
    public = admin.execute("""
        select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace,
               aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
         where n.nspname = 'auth' and a.grantee = 0
    """).fetchall()
    assert {name for (name,) in public} == PUBLIC_FUNCTIONS


def test_rls_is_enabled_on_every_auth_table(admin):
    without = admin.execute("""
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'auth' and c.relkind in ('r', 'p') and not c.relrowsecurity
    """).fetchall()
    assert without == []


@pytest.mark.parametrize("role", ["anon", "authenticated", "service_role", "authgres_service"])
def test_client_roles_and_the_service_have_no_table_privileges(admin, role):
    readable = admin.execute(
        """
        select c.relname, a.attname from pg_class c
          join pg_namespace n on n.oid = c.relnamespace
          join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
         where n.nspname = 'auth' and c.relkind in ('r', 'p', 'v')
           and has_column_privilege(%s, c.oid, a.attnum, 'SELECT')
    """,
        (role,),
    ).fetchall()
    assert readable == []


@pytest.mark.parametrize(("table", "column"), SECRET_COLUMNS)
def test_secret_columns_are_unreadable_by_clients(admin, table, column):
    for role in ("anon", "authenticated"):
        assert (
            admin.execute(
                "select has_column_privilege(%s, %s, %s, 'SELECT')", (role, f"auth.{table}", column)
            ).fetchone()[0]
            is False
        )


def test_every_auth_table_and_function_is_commented(admin):
    uncommented = admin.execute("""
        select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'auth' and c.relkind in ('r', 'p', 'v') and obj_description(c.oid, 'pg_class') is null
        union all
        select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'auth' and obj_description(p.oid, 'pg_proc') is null
    """).fetchall()
    assert uncommented == []


def test_everything_in_auth_belongs_to_the_owner_role(admin):
    foreign = admin.execute(
        """
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'auth' and pg_get_userbyid(c.relowner) <> 'authgres_owner'
        union all
        select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'auth' and pg_get_userbyid(p.proowner) <> 'authgres_owner'
           and not (p.proname = %s and pg_get_userbyid(p.proowner) = 'authgres_hook')
    """,
        (HOOK_RUNNER,),
    ).fetchall()
    assert foreign == []
    owner = admin.execute("select rolcanlogin, rolsuper from pg_roles where rolname = 'authgres_owner'").fetchone()
    assert owner == (False, False)


def test_only_application_logins_may_verify_tokens(admin):
    granted = admin.execute("""
        select p.proname from pg_proc p, aclexplode(p.proacl) a
         where p.pronamespace = 'auth'::regnamespace and a.grantee = 'authgres_authenticator'::regrole
    """).fetchall()
    assert {name for (name,) in granted} == AUTHENTICATOR_FUNCTIONS
    for role in ("anon", "authenticated", "service_role"):
        for name in AUTHENTICATOR_FUNCTIONS:
            assert not admin.execute(
                "select has_function_privilege(%s, %s, 'EXECUTE')", (role, f"auth.{name}(text)")
            ).fetchone()[0], (role, name)


def test_the_hook_runner_runs_as_the_hook_role_and_only_the_owner_calls_it(admin):
    owner, definer, callers = admin.execute(
        """select pg_get_userbyid(p.proowner), p.prosecdef,
                  array(select a.grantee::regrole::text from aclexplode(p.proacl) a order by 1)
             from pg_proc p where p.oid = 'auth._run_hook(regproc, jsonb)'::regprocedure"""
    ).fetchone()
    assert (owner, definer) == ("authgres_hook", True)
    assert callers == ["authgres_hook", "authgres_owner"]
    hook = admin.execute(
        "select rolcanlogin, rolsuper, rolbypassrls from pg_roles where rolname = 'authgres_hook'"
    ).fetchone()
    assert hook == (False, False, False)
    assert not admin.execute("select has_schema_privilege('authgres_hook', 'auth', 'CREATE')").fetchone()[0]
    assert not admin.execute("select has_schema_privilege('authgres_hook', 'auth', 'USAGE')").fetchone()[0]
