-- sessions.sql: sessions and their rotating refresh tokens: start, refresh, list, end, log out.
set local role authgres_owner;

create or replace function auth._access_token(
  p_user auth.users, p_session auth.sessions, out token text, out expires_at bigint
)
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_iat bigint := auth._epoch(pg_catalog.now());
  v_claims jsonb;
  v_custom jsonb;
begin
  select * into v_settings from auth.settings;
  expires_at := v_iat + v_settings.jwt_exp;
  v_claims := pg_catalog.jsonb_build_object(
    'sub', p_user.id,
    'aud', coalesce(p_user.aud, v_settings.jwt_aud),
    'exp', expires_at,
    'iat', v_iat,
    'email', coalesce(p_user.email, ''),
    'phone', coalesce(p_user.phone, ''),
    'app_metadata', p_user.raw_app_meta_data,
    'user_metadata', p_user.raw_user_meta_data,
    'role', coalesce(p_user.role, v_settings.jwt_default_role),
    'aal', p_session.aal,
    'amr', coalesce(
      (select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'method', c.authentication_method, 'timestamp', auth._epoch(c.updated_at))
              order by c.updated_at desc)
         from auth.mfa_amr_claims c
        where c.session_id = p_session.id),
      '[]'::jsonb),
    'session_id', p_session.id,
    'is_anonymous', p_user.is_anonymous)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('iss', v_settings.jwt_issuer));
  if v_settings.hook_custom_access_token is not null then
    v_custom := auth._call_hook(v_settings.hook_custom_access_token, pg_catalog.jsonb_build_object(
      'user_id', p_user.id, 'claims', v_claims,
      'authentication_method', v_claims -> 'amr' -> 0 ->> 'method'));
    if pg_catalog.jsonb_typeof(v_custom -> 'claims') <> 'object'
       or not (v_custom -> 'claims') ?& array['aud', 'email', 'phone', 'role', 'is_anonymous'] then
      raise exception using errcode = 'AUH01',
        message = 'Hook custom_access_token must return claims with at least aud, email, phone, role and is_anonymous';
    end if;
    -- Who, which session, how strongly and for how long are not the hook's to change.
    v_claims := (v_custom -> 'claims') || pg_catalog.jsonb_build_object(
      'sub', v_claims -> 'sub', 'session_id', v_claims -> 'session_id', 'aal', v_claims -> 'aal',
      'amr', v_claims -> 'amr', 'exp', v_claims -> 'exp', 'iat', v_claims -> 'iat');
  end if;
  token := auth._sign_claims(v_claims);
end
$$;
comment on function auth._access_token(auth.users, auth.sessions) is
  'A signed access token for a session, with GoTrue''s claims (changed by the custom_access_token hook, if any).';

-- Sessions and refresh tokens.
create or replace function auth._next_refresh_token(p_token text, p_chain_key bytea) returns text
  language sql stable strict parallel safe
  return auth.url_encode(auth._hmac(pg_catalog.convert_to(p_token, 'UTF8'), p_chain_key, 'sha256'));
comment on function auth._next_refresh_token(text, bytea) is
  'The token that replaces p_token: derivable only by whoever holds both p_token and the session key.';

create or replace function auth._session_response(
  p_user auth.users, p_session auth.sessions, p_refresh_token text
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_access record;
begin
  select * into v_access from auth._access_token(p_user, p_session);
  return pg_catalog.jsonb_build_object(
    'access_token', v_access.token,
    'token_type', 'bearer',
    'expires_in', v_access.expires_at - auth._epoch(pg_catalog.now()),
    'expires_at', v_access.expires_at,
    'refresh_token', p_refresh_token,
    'user', auth._user_json(p_user));
end
$$;
comment on function auth._session_response(auth.users, auth.sessions, text) is
  'GoTrue''s AccessTokenResponse for a session and the refresh token just handed out.';

create or replace function auth._start_session(
  p_user auth.users, p_method text, p_user_agent text, p_ip inet
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_session auth.sessions;
  v_refresh_token text := auth.url_encode(auth._random_bytes(32));
begin
  insert into auth.sessions (user_id, user_agent, ip, refresh_token_key)
  values (p_user.id, p_user_agent, p_ip, auth._random_bytes(32))
  returning * into v_session;
  insert into auth.mfa_amr_claims (session_id, authentication_method) values (v_session.id, p_method);
  insert into auth.refresh_tokens (token_hash, user_id, session_id)
  values (auth._token_hash(v_refresh_token), p_user.id, v_session.id);
  return auth._session_response(p_user, v_session, v_refresh_token);
end
$$;
comment on function auth._start_session(auth.users, text, text, inet) is
  'Creates a session signed in by p_method, with its first refresh token; returns the token response.';

create or replace function auth._refresh_session(
  p_refresh_token text, p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_token auth.refresh_tokens;
  v_live auth.refresh_tokens;
  v_session auth.sessions;
  v_user auth.users;
  v_next text;
begin
  if p_refresh_token is null or p_refresh_token !~ '^[A-Za-z0-9_-]{12,}$' then
    raise exception using errcode = 'AUR06', message = 'Refresh token is not valid';
  end if;
  select * into v_token from auth.refresh_tokens where token_hash = auth._token_hash(p_refresh_token);
  if not found then
    raise exception using errcode = 'AUR01', message = 'Invalid Refresh Token: Refresh Token Not Found';
  end if;

  -- Refreshes of one session queue here, so each sees the chain as the previous one left it.
  select * into v_session from auth.sessions where id = v_token.session_id for no key update;
  if not found then
    raise exception using errcode = 'AUR03', message = 'Invalid Refresh Token: No Valid Session Found';
  end if;
  select * into strict v_token from auth.refresh_tokens where id = v_token.id;
  select * into strict v_user from auth.users where id = v_session.user_id;
  select * into v_settings from auth.settings;

  if v_user.deleted_at is not null then
    raise exception using errcode = 'AUR03', message = 'Invalid Refresh Token: No Valid Session Found';
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUR05', message = 'Invalid Refresh Token: User Banned';
  end if;
  if v_session.not_after <= pg_catalog.now() then
    raise exception using errcode = 'AUR04', message = 'Invalid Refresh Token: Session Expired';
  end if;
  if v_session.created_at + pg_catalog.make_interval(secs => v_settings.sessions_timebox) <= pg_catalog.now() then
    delete from auth.sessions where id = v_session.id;
    return pg_catalog.jsonb_build_object('error', 'AUR04', 'message', 'Invalid Refresh Token: Session Expired');
  end if;
  if coalesce(v_session.refreshed_at, v_session.created_at)
       + pg_catalog.make_interval(secs => v_settings.sessions_inactivity_timeout) <= pg_catalog.now() then
    delete from auth.sessions where id = v_session.id;
    return pg_catalog.jsonb_build_object('error', 'AUR04', 'message', 'Invalid Refresh Token: Session Expired (Inactivity)');
  end if;
  if v_settings.sessions_single_per_user and exists (
       select from auth.sessions s where s.user_id = v_user.id and s.created_at > v_session.created_at) then
    delete from auth.sessions where id = v_session.id;
    return pg_catalog.jsonb_build_object('error', 'AUR04', 'message', 'Invalid Refresh Token: Session Expired (Revoked by Newer Login)');
  end if;

  if not v_token.revoked then
    v_next := auth._next_refresh_token(p_refresh_token, v_session.refresh_token_key);
    update auth.refresh_tokens set revoked = true, updated_at = pg_catalog.now() where id = v_token.id;
    insert into auth.refresh_tokens (token_hash, user_id, parent, session_id, generation)
    values (auth._token_hash(v_next), v_user.id, v_token.token_hash, v_session.id, v_token.generation + 1);
  else
    select * into v_live from auth.refresh_tokens where session_id = v_session.id and not revoked;
    -- The live token's parent was presented (its response was lost), or an older token came back
    -- within the reuse interval (another tab refreshed first): both get the live token, derived
    -- along the chain, and nothing new is issued.
    if v_live.id is not null
       and (v_live.parent = v_token.token_hash
            or v_token.updated_at + pg_catalog.make_interval(secs => v_settings.refresh_token_reuse_interval)
               > pg_catalog.now()) then
      v_next := p_refresh_token;
      for i in 1 .. v_live.generation - v_token.generation loop
        v_next := auth._next_refresh_token(v_next, v_session.refresh_token_key);
      end loop;
    end if;
    if v_next is null or auth._token_hash(v_next) <> v_live.token_hash then
      -- Anything else is a replay of a spent token: the chain may be in a thief's hands.
      if v_settings.refresh_token_replay_revokes = 'user' then
        delete from auth.sessions where user_id = v_user.id;
      else
        delete from auth.sessions where id = v_session.id;
      end if;
      perform auth._audit(v_user, 'token_revoked', 'token', p_ip,
        pg_catalog.jsonb_build_object('reason', 'refresh_token_reused', 'session_id', v_session.id,
                                      'scope', v_settings.refresh_token_replay_revokes));
      -- Returned, not raised, so that the revocation commits; the service answers
      -- 400 refresh_token_already_used.
      return pg_catalog.jsonb_build_object(
        'error', 'AUR02', 'message', 'Invalid Refresh Token: Already Used');
    end if;
  end if;

  update auth.sessions
     set refreshed_at = pg_catalog.now(), updated_at = pg_catalog.now(),
         user_agent = coalesce(p_user_agent, user_agent), ip = coalesce(p_ip, ip)
   where id = v_session.id
  returning * into v_session;
  return auth._session_response(v_user, v_session, v_next);
end
$$;
comment on function auth._refresh_session(text, text, inet) is
  'Rotates a refresh token. A spent token gets the live one back when it is the live token''s parent '
  'or was rotated within settings.refresh_token_reuse_interval; any other spent token ends the session '
  '(or all the user''s sessions) and returns {"error": "AUR02"} so that the revocation commits.';

create or replace function auth.refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[])
  returns jsonb[]
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_sessions jsonb[] := '{}';
begin
  for i in 1 .. coalesce(pg_catalog.array_length(p_refresh_tokens, 1), 0) loop
    begin
      v_sessions[i] := auth._refresh_session(p_refresh_tokens[i], p_user_agents[i], p_ips[i]::inet);
    exception when others then
      v_sessions[i] := pg_catalog.jsonb_build_object('error', sqlstate, 'message', sqlerrm);
    end;
  end loop;
  return v_sessions;
end
$$;
comment on function auth.refresh_sessions(text[], text[], text[]) is
  'auth._refresh_session() for each token (with its user agent and IP), in order, all committed together; '
  'one that fails gets {"error": SQLSTATE, "message": ...}.';
grant execute on function auth.refresh_sessions(text[], text[], text[]) to authgres_service;

create or replace function auth.list_sessions(p_access_token text) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  return coalesce((
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'id', s.id, 'created_at', s.created_at, 'updated_at', s.updated_at, 'refreshed_at', s.refreshed_at,
             'user_agent', s.user_agent, 'ip', pg_catalog.host(s.ip), 'aal', s.aal, 'not_after', s.not_after,
             'current', s.id = (v_ctx.sess).id)
             order by s.created_at desc)
      from auth.sessions s where s.user_id = (v_ctx.usr).id), '[]'::jsonb);
end
$$;
comment on function auth.list_sessions(text) is 'GET /sessions: the caller''s sessions, newest first, the current one flagged.';
grant execute on function auth.list_sessions(text) to authgres_service;

create or replace function auth.end_session(p_access_token text, p_session_id uuid, p_ip inet default null) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  delete from auth.sessions where id = p_session_id and user_id = (v_ctx.usr).id;
  if not found then
    raise exception using errcode = 'AUJ04', message = 'Session not found';
  end if;
  perform auth._audit(v_ctx.usr, 'logout', 'account', p_ip,
                      pg_catalog.jsonb_build_object('scope', 'session', 'session_id', p_session_id));
  return pg_catalog.jsonb_build_object('id', p_session_id);
end
$$;
comment on function auth.end_session(text, uuid, inet) is 'DELETE /sessions/{id}: ends one of the caller''s sessions.';
grant execute on function auth.end_session(text, uuid, inet) to authgres_service;

create or replace function auth.logout(p_access_token text, p_scope text default 'global', p_ip inet default null)
  returns integer
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_auth record;
  v_ended integer;
begin
  if p_scope not in ('global', 'local', 'others') then
    raise exception using errcode = 'AUV01', message = pg_catalog.format('Unsupported logout scope %L', p_scope);
  end if;
  select * into v_auth from auth._authorize(p_access_token, true);
  if (v_auth.sess).id is null then
    raise exception using errcode = 'AUJ04', message = 'Session from session_id claim in JWT does not exist';
  end if;
  delete from auth.sessions
   where user_id = (v_auth.usr).id
     and case p_scope
           when 'local' then id = (v_auth.sess).id
           when 'others' then id <> (v_auth.sess).id
           else true
         end;
  get diagnostics v_ended = row_count;
  perform auth._audit(v_auth.usr, 'logout', 'account', p_ip, pg_catalog.jsonb_build_object('scope', p_scope));
  return v_ended;
end
$$;
comment on function auth.logout(text, text, inet) is
  'Ends the token''s session (local), the user''s other sessions (others) or all of them (global); '
  'returns how many ended.';
grant execute on function auth.logout(text, text, inet) to authgres_service;
