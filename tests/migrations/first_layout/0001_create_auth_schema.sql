-- 0001: roles, the auth schema, its migration ledger and the pgcrypto primitives.
--
-- Run by a superuser (it creates cluster roles and the pgcrypto extension). Every later file starts
-- with `set local role authgres_owner`, so all auth objects belong to one NOLOGIN owner: SECURITY
-- DEFINER functions run as that owner, and nobody logs in with its privileges.
--
-- Name resolution: PL/pgSQL and SECURITY DEFINER functions pin `search_path = ''` and qualify every
-- name. Small LANGUAGE sql helpers use SQL-standard bodies (`RETURN ...`) instead: those are parsed
-- and bound when created, so the caller's search_path cannot reach them, and without a SET clause the
-- planner can inline them (a SET clause would make every call a separate, re-planned function call).

-- Cluster-wide roles, created only when missing so that every database of a cluster can be migrated.
--   authgres_owner    owns the auth schema; never logs in
--   authgres_service  the login the authgres service uses; may only EXECUTE service functions
--   anon, authenticated, service_role   the request roles of PostgREST/Supabase, used by RLS policies
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'authgres_owner') then
    create role authgres_owner nologin noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authgres_service') then
    create role authgres_service login noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
end
$$;

-- pgcrypto goes where Supabase keeps it unless the database already has it elsewhere.
create schema if not exists extensions;
create extension if not exists pgcrypto with schema extensions;

create schema auth authorization authgres_owner;
comment on schema auth is 'authgres: users, sessions, tokens and the functions that manage them.';
grant usage on schema auth to authgres_service, anon, authenticated, service_role;

-- The owner calls pgcrypto from wherever it is installed; the wrappers below hide that location.
select format('grant usage on schema %I to authgres_owner', n.nspname)
  from pg_catalog.pg_extension e
  join pg_catalog.pg_namespace n on n.oid = e.extnamespace
 where e.extname = 'pgcrypto' \gexec

set local role authgres_owner;

do $$
declare
  v_schema text;
begin
  select n.nspname into strict v_schema
    from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
   where e.extname = 'pgcrypto';
  execute format($f$
    create function auth._hmac(p_data bytea, p_key bytea, p_algorithm text) returns bytea
      language sql immutable strict parallel safe
      return %I.hmac(p_data, p_key, p_algorithm)$f$, v_schema);
  execute format($f$
    create function auth._random_bytes(p_count integer) returns bytea
      language sql volatile strict parallel safe
      return %I.gen_random_bytes(p_count)$f$, v_schema);
end
$$;

-- Functions are not executable by PUBLIC unless a migration grants it explicitly.
alter default privileges for role authgres_owner revoke execute on functions from public;
revoke execute on function auth._hmac(bytea, bytea, text), auth._random_bytes(integer) from public;

comment on function auth._hmac(bytea, bytea, text) is 'pgcrypto hmac(), wherever pgcrypto is installed.';
comment on function auth._random_bytes(integer) is 'pgcrypto gen_random_bytes(), wherever pgcrypto is installed.';

create table auth.schema_migrations (
  version text primary key,
  applied_at timestamptz not null default now()
);
comment on table auth.schema_migrations is 'Versions of sql/migrations applied to this database, one row per file.';
alter table auth.schema_migrations enable row level security;

insert into auth.schema_migrations (version) values ('0001');
