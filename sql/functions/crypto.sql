-- crypto.sql: primitives every other file builds on: pgcrypto wherever it is installed, base64url,
-- digests and constant-time comparisons.
set local role authgres_owner;

-- pgcrypto may live in any schema (Supabase keeps it in `extensions`, which the first migration
-- creates when the database has no pgcrypto yet); these two wrappers are the only code that names it.
do $$
declare
  v_schema text;
begin
  select n.nspname into strict v_schema
    from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
   where e.extname = 'pgcrypto';
  execute pg_catalog.format($f$
    create or replace function auth._hmac(p_data bytea, p_key bytea, p_algorithm text) returns bytea
      language sql immutable strict parallel safe
      return %I.hmac(p_data, p_key, p_algorithm)$f$, v_schema);
  execute pg_catalog.format($f$
    create or replace function auth._random_bytes(p_count integer) returns bytea
      language sql volatile strict parallel safe
      return %I.gen_random_bytes(p_count)$f$, v_schema);
end
$$;
comment on function auth._hmac(bytea, bytea, text) is 'pgcrypto hmac(), wherever pgcrypto is installed.';
comment on function auth._random_bytes(integer) is 'pgcrypto gen_random_bytes(), wherever pgcrypto is installed.';
-- Executed inside auth.sign() and auth.verify(), which run as their caller.
grant execute on function auth._hmac(bytea, bytea, text) to authgres_service;

create or replace function auth.url_encode(data bytea) returns text
  language sql immutable strict parallel safe
  return pg_catalog.rtrim(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
    pg_catalog.encode(data, 'base64'), E'\n', ''), '+', '-'), '/', '_'), '=');
comment on function auth.url_encode(bytea) is 'base64url without padding (RFC 7515 section 2).';
grant execute on function auth.url_encode(bytea) to authgres_service;

create or replace function auth.url_decode(data text) returns bytea
  language sql immutable strict parallel safe
  return pg_catalog.decode(
    pg_catalog.replace(pg_catalog.replace(data, '-', '+'), '_', '/')
      || pg_catalog.substr('===', 1, (4 - pg_catalog.octet_length(data) % 4) % 4),
    'base64');
comment on function auth.url_decode(text) is 'Inverse of auth.url_encode(); raises on malformed input.';
grant execute on function auth.url_decode(text) to authgres_service;

-- Compares digests instead of the values: an early exit in the byte comparison then says something
-- only about SHA-256 of the secret value, which does not lead back to the value itself.
create or replace function auth._equal_secure(p_left text, p_right text) returns boolean
  language sql stable parallel safe
  return coalesce(
    pg_catalog.sha256(pg_catalog.convert_to(p_left, 'UTF8')) = pg_catalog.sha256(pg_catalog.convert_to(p_right, 'UTF8')),
    false);
comment on function auth._equal_secure(text, text) is
  'Equality of two secrets whose timing does not reveal them; false when either side is NULL.';
grant execute on function auth._equal_secure(text, text) to authgres_service;

create or replace function auth._equal_keyed(p_left bytea, p_right bytea) returns boolean
  language plpgsql volatile
  set search_path = ''
as $$
declare
  -- A fresh key: the compared digests cannot be computed by a caller probing short codes.
  v_key bytea := auth._random_bytes(32);
begin
  return coalesce(auth._hmac(p_left, v_key, 'sha256') = auth._hmac(p_right, v_key, 'sha256'), false);
end
$$;
comment on function auth._equal_keyed(bytea, bytea) is
  'Equality of a secret with a guess that leaks nothing through timing, even for a small guess space.';

create or replace function auth._token_hash(p_token text) returns bytea
  language sql stable strict parallel safe
  return pg_catalog.sha256(pg_catalog.convert_to(p_token, 'UTF8'));
comment on function auth._token_hash(text) is 'How refresh tokens (and other bearer secrets) are stored: SHA-256.';
