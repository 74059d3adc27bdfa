-- bearer.sql: who a bearer credential speaks for: the one place that decides what a token or key is
-- worth.
set local role authgres_owner;

-- An API key is a bearer credential wherever an access token is: its claims have a sub and no
-- session_id, so auth._authorize() checks its user (deleted, banned) as it checks a token's.
create or replace function auth._verified_claims(p_token text) returns jsonb
  language sql volatile
  return case when p_token like 'ag\_%' then auth._api_key_claims(p_token)
              else auth._verified_jwt_claims(p_token) end;
comment on function auth._verified_claims(text) is
  'Claims of a bearer credential that verified; raises AUJ01 otherwise.';

create or replace function auth._authorize(
  p_token text, p_require_user boolean,
  out claims jsonb, out usr auth.users, out sess auth.sessions
)
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_sub text;
  v_session_id text;
begin
  claims := auth._verified_claims(p_token);
  v_sub := claims ->> 'sub';
  if v_sub is null then
    if p_require_user then
      raise exception using errcode = 'AUJ01', message = 'invalid claim: missing sub claim';
    end if;
    return;
  end if;
  if v_sub !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    raise exception using errcode = 'AUJ02', message = 'invalid claim: sub claim must be a UUID';
  end if;
  select * into usr from auth.users u where u.id = v_sub::uuid and u.deleted_at is null;
  if not found then
    raise exception using errcode = 'AUJ03', message = 'User from sub claim in JWT does not exist';
  end if;
  v_session_id := claims ->> 'session_id';
  if v_session_id is not null and v_session_id <> '00000000-0000-0000-0000-000000000000' then
    if v_session_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      select * into sess from auth.sessions s
       where s.id = v_session_id::uuid and s.user_id = usr.id
         and (s.not_after is null or s.not_after > pg_catalog.now());
    end if;
    if sess.id is null then
      raise exception using errcode = 'AUJ04', message = 'Session from session_id claim in JWT does not exist';
    end if;
  end if;
  if usr.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;
end
$$;
comment on function auth._authorize(text, boolean) is
  'Who a bearer token speaks for: its claims, and its user and session, which must still exist.';

create or replace function auth._signed_in(p_access_token text, out usr auth.users, out sess auth.sessions)
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_auth record;
begin
  select * into v_auth from auth._authorize(p_access_token, true);
  if (v_auth.sess).id is null then
    raise exception using errcode = 'AUK02', message = 'This action needs a signed-in session, not an API key';
  end if;
  usr := v_auth.usr;
  sess := v_auth.sess;
end
$$;
comment on function auth._signed_in(text) is 'The user and session of an access token; AUK02 for an API key or a sessionless token.';
