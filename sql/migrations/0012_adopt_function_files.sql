-- 0012: functions leave the migrations. Each now lives once in sql/functions/<area>.sql, which
-- sql/migrate.sh applies after the migrations and re-applies when its checksum changes; the
-- migrations keep state only, and a released one is never edited again (its checksum is checked).
--
-- On a fresh install this adds the ledgers' new parts. On a database made by the first layout it
-- also drops what the function files no longer define and the column defaults that called
-- auth._random_bytes(); the function files then replace every function body.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0012');

alter table auth.schema_migrations add column if not exists checksum text;
comment on column auth.schema_migrations.checksum is
  'SHA-256 of the migration file: sql/migrate.sh refuses to run when an applied migration has changed.';
-- 0001-0010 of the first layout were squashed into 0011.
delete from auth.schema_migrations where version < '0011';

create table if not exists auth.schema_function_files (
  file text primary key,
  checksum text not null,
  applied_at timestamptz not null default now()
);
comment on table auth.schema_function_files is
  'Each sql/functions file as last applied: sql/migrate.sh re-applies a file whose SHA-256 differs.';
alter table auth.schema_function_files enable row level security;

-- Migrations run before the function files, so state never calls a function of the auth schema:
-- the functions that insert sessions and signing keys draw these keys themselves.
alter table auth.sessions alter column refresh_token_key drop default;
alter table auth.signing_keys alter column mac_key drop default;

-- The batched auth.get_users() and auth.refresh_sessions() are what the service calls; the
-- single-item bodies became the private auth._get_user() and auth._refresh_session().
drop function if exists auth.get_user(text);
drop function if exists auth.refresh_session(text, text, inet);
