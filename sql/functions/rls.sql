-- rls.sql: what applications call from their own SQL: the RLS helpers Supabase policies use, and
-- auth.authenticate().
set local role authgres_owner;

-- RLS helpers, exactly as Supabase defines them: they read the claims PostgREST (or auth.authenticate)
-- puts in request.jwt.claims, or the per-claim settings of PostgREST before v9.
create or replace function auth.uid() returns uuid
  language sql stable
  return coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
    (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid;
comment on function auth.uid() is
  'The sub claim of the request''s JWT. In policies write (select auth.uid()) so it is evaluated once per statement.';
grant execute on function auth.uid() to public;

create or replace function auth.role() returns text
  language sql stable
  return coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
    (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text;
comment on function auth.role() is 'The role claim of the request''s JWT.';
grant execute on function auth.role() to public;

create or replace function auth.email() returns text
  language sql stable
  return coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.email', true), ''),
    (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text;
comment on function auth.email() is 'The email claim of the request''s JWT.';
grant execute on function auth.email() to public;

create or replace function auth.jwt() returns jsonb
  language sql stable
  return coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim', true), ''),
    nullif(pg_catalog.current_setting('request.jwt.claims', true), '')
  )::jsonb;
comment on function auth.jwt() is 'All claims of the request''s JWT, e.g. auth.jwt() ->> ''aal''.';
grant execute on function auth.jwt() to public;

create or replace function auth.access_token_claims(p_token text) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  return (auth._authorize(p_token, false)).claims;
end
$$;
comment on function auth.access_token_claims(text) is
  'Claims of a token this server issued (or an API-role key signed with its secret), after checking '
  'signature, expiry, and that its user and session still exist. Raises AUJ0x otherwise.';
grant execute on function auth.access_token_claims(text) to authgres_authenticator;

create or replace function auth.authenticate(p_token text) returns jsonb
  language plpgsql volatile security invoker
  set search_path = ''
as $$
declare
  v_claims jsonb := auth.access_token_claims(p_token);
begin
  perform pg_catalog.set_config('request.jwt.claims', v_claims::text, true);
  perform pg_catalog.set_config('role', coalesce(v_claims ->> 'role', 'anon'), true);
  return v_claims;
end
$$;
comment on function auth.authenticate(text) is
  'For applications that connect without PostgREST: verifies an access token, then sets '
  'request.jwt.claims and the token''s role for the rest of the transaction, so RLS policies using '
  'auth.uid() apply. The connecting role must be a member of authgres_authenticator and of the token''s '
  'role (grant authgres_authenticator, authenticated, anon to app_login).';
grant execute on function auth.authenticate(text) to authgres_authenticator;

create or replace function auth.authenticate_api_key(p_key text) returns jsonb
  language plpgsql volatile security invoker
  set search_path = ''
as $$
begin
  if p_key not like 'ag\_%' then
    raise exception using errcode = 'AUJ01', message = 'invalid API key: unknown, revoked or expired';
  end if;
  return auth.authenticate(p_key);
end
$$;
comment on function auth.authenticate_api_key(text) is
  'auth.authenticate() for an API key: sets request.jwt.claims and the role for the transaction, so RLS applies to scripts.';
grant execute on function auth.authenticate_api_key(text) to authgres_authenticator;
