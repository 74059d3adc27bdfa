-- 0011: the busiest requests, GET /user and refresh, made cheaper (figures from bench/ on the 2-core box).
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0011');

-- A SQL-standard expression is inlined into the query that calls it: no call, no search_path switch.
-- Its body is bound when created, so a caller's search_path cannot reach it (the catalog lint checks).
create or replace function auth._identity_json(p_identity auth.identities) returns jsonb
  language sql stable
  return pg_catalog.jsonb_build_object(
      'identity_id', p_identity.id,
      'id', p_identity.provider_id,
      'user_id', p_identity.user_id,
      'identity_data', p_identity.identity_data,
      'provider', p_identity.provider,
      'created_at', p_identity.created_at,
      'updated_at', p_identity.updated_at)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'last_sign_in_at', p_identity.last_sign_in_at,
      'email', p_identity.email));

-- Requests that arrive while every connection is busy are answered together: one round trip and one
-- transaction for the lot instead of one each, which on a loaded box also means a fraction of the
-- context switches. Each item is still handled on its own (in a subtransaction), and one that fails
-- gets its own {"error": ...} without touching the others. The service sends at most 32 items at a
-- time: more subtransactions than PostgreSQL caches per backend (64) would slow every snapshot.
create function auth.get_users(p_access_tokens text[]) returns jsonb[]
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_users jsonb[] := '{}';
begin
  for i in 1 .. coalesce(pg_catalog.array_length(p_access_tokens, 1), 0) loop
    begin
      v_users[i] := auth.get_user(p_access_tokens[i]);
    exception when others then
      v_users[i] := pg_catalog.jsonb_build_object('error', sqlstate, 'message', sqlerrm);
    end;
  end loop;
  return v_users;
end
$$;
comment on function auth.get_users(text[]) is
  'auth.get_user() for each token, in order; a token that fails gets {"error": SQLSTATE, "message": ...}.';
grant execute on function auth.get_users(text[]) to authgres_service;

create function auth.refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[])
  returns jsonb[]
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_sessions jsonb[] := '{}';
begin
  for i in 1 .. coalesce(pg_catalog.array_length(p_refresh_tokens, 1), 0) loop
    begin
      v_sessions[i] := auth.refresh_session(p_refresh_tokens[i], p_user_agents[i], p_ips[i]::inet);
    exception when others then
      v_sessions[i] := pg_catalog.jsonb_build_object('error', sqlstate, 'message', sqlerrm);
    end;
  end loop;
  return v_sessions;
end
$$;
comment on function auth.refresh_sessions(text[], text[], text[]) is
  'auth.refresh_session() for each token (with its user agent and IP), in order, all committed together; '
  'one that fails gets {"error": SQLSTATE, "message": ...}.';
grant execute on function auth.refresh_sessions(text[], text[], text[]) to authgres_service;
