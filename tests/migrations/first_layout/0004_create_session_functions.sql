-- 0004: RLS helpers, access tokens, sessions with rotating refresh tokens, and the service functions
-- behind sign-in, refresh, the current user and logout.
--
-- Error codes (SQLSTATE class AU; the service maps each to an HTTP status and GoTrue error_code in
-- python/authgres/errors.py, never by message text):
--   AUV01 validation_failed (400)            AUV02 weak or malformed input (422, validation_failed)
--   AUJ01 bad_jwt (403)                      AUJ02 bad_jwt, sub not a UUID (400)
--   AUJ03 user_not_found (403)               AUJ04 session_not_found (403)
--   AUJ05 user_banned (403)
--   AUR01 refresh_token_not_found (400)      AUR02 refresh_token_already_used (400)
--   AUR03 session_not_found (400)            AUR04 session_expired (400)
--   AUR05 user_banned (400)                  AUR06 validation_failed: malformed refresh token (400)
--   AUS01 user_already_exists (422)          AUS02 signup_disabled (422)
--   AUS03 anonymous_provider_disabled (422)  AUS04 email_not_confirmed (400)
--   AUS05 invalid_credentials (400)          AUS06 user_banned (400)
--   AUH01 a hook failed (500)                AUH02 a hook timed out (504)
--   AUH03 a hook rejected the request (400)
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0004');

-------------------------------------------------------------------------------------------------------
-- RLS helpers, exactly as Supabase defines them: they read the claims PostgREST (or auth.authenticate)
-- puts in request.jwt.claims, or the per-claim settings of PostgREST before v9.
-------------------------------------------------------------------------------------------------------
create function auth.uid() returns uuid
  language sql stable
  return coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
    (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid;
comment on function auth.uid() is
  'The sub claim of the request''s JWT. In policies write (select auth.uid()) so it is evaluated once per statement.';

create function auth.role() returns text
  language sql stable
  return coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
    (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text;
comment on function auth.role() is 'The role claim of the request''s JWT.';

create function auth.email() returns text
  language sql stable
  return coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.email', true), ''),
    (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text;
comment on function auth.email() is 'The email claim of the request''s JWT.';

create function auth.jwt() returns jsonb
  language sql stable
  return coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim', true), ''),
    nullif(pg_catalog.current_setting('request.jwt.claims', true), '')
  )::jsonb;
comment on function auth.jwt() is 'All claims of the request''s JWT, e.g. auth.jwt() ->> ''aal''.';

grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt() to public;

-------------------------------------------------------------------------------------------------------
-- Small private helpers.
-------------------------------------------------------------------------------------------------------
create function auth._token_hash(p_token text) returns bytea
  language sql stable strict parallel safe
  return pg_catalog.sha256(pg_catalog.convert_to(p_token, 'UTF8'));
comment on function auth._token_hash(text) is 'How refresh tokens (and other bearer secrets) are stored: SHA-256.';

create function auth._epoch(p_at timestamptz) returns bigint
  language sql stable strict parallel safe
  return pg_catalog.floor(extract(epoch from p_at))::bigint;
comment on function auth._epoch(timestamptz) is 'Whole seconds since 1970, as JWT NumericDate.';

create function auth._strip_nulls(p_object jsonb) returns jsonb
  language sql immutable strict parallel safe
  return (select coalesce(pg_catalog.jsonb_object_agg(e.key, e.value), '{}'::jsonb)
            from pg_catalog.jsonb_each(p_object) e
           where pg_catalog.jsonb_typeof(e.value) <> 'null');
comment on function auth._strip_nulls(jsonb) is
  'Drops top-level null members only: jsonb_strip_nulls() would also reach into the values.';

create function auth._merge_metadata(p_current jsonb, p_changes jsonb) returns jsonb
  language sql immutable parallel safe
  return case when p_changes is null then p_current
              else (p_current - array(select e.key from pg_catalog.jsonb_each(p_changes) e
                                       where pg_catalog.jsonb_typeof(e.value) = 'null'))
                   || auth._strip_nulls(p_changes) end;
comment on function auth._merge_metadata(jsonb, jsonb) is 'GoTrue''s metadata merge: null removes a key, other keys are set.';

create function auth._normalize_email(p_email text) returns text
  language plpgsql immutable parallel safe
  set search_path = ''
as $$
declare
  v_email text := pg_catalog.lower(pg_catalog.btrim(p_email));
begin
  if v_email is null or v_email = '' then
    raise exception using errcode = 'AUV01', message = 'An email address is required';
  end if;
  if pg_catalog.length(v_email) > 255 then
    raise exception using errcode = 'AUV01', message = 'An email address is too long';
  end if;
  if v_email !~ '^[^@[:space:]]+@[^@[:space:].]+(\.[^@[:space:].]+)+$' then
    raise exception using errcode = 'AUV01', message = 'Unable to validate email address: invalid format';
  end if;
  return v_email;
end
$$;
comment on function auth._normalize_email(text) is 'Lower-cased, trimmed email; raises AUV01 when it is not one.';

create function auth._audit(
  p_user auth.users, p_action text, p_log_type text, p_ip inet, p_traits jsonb default null
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  insert into auth.audit_log_entries (payload, ip_address)
  values (
    pg_catalog.json_strip_nulls(pg_catalog.json_build_object(
      'actor_id', p_user.id,
      'actor_username', p_user.email,
      'actor_via_sso', false,
      'action', p_action,
      'log_type', p_log_type,
      'traits', p_traits)),
    coalesce(pg_catalog.host(p_ip), ''));
end
$$;
comment on function auth._audit(auth.users, text, text, inet, jsonb) is
  'Appends one audit_log_entries row, in the caller''s transaction.';

-------------------------------------------------------------------------------------------------------
-- User and identity JSON, in GoTrue's shapes.
-------------------------------------------------------------------------------------------------------
-- Optional members are built apart and passed through jsonb_strip_nulls(), which would also strip
-- nulls nested inside metadata: those objects go in the part that is kept whole.
create function auth._identity_json(p_identity auth.identities) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
begin
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
end
$$;
comment on function auth._identity_json(auth.identities) is 'An identity as GoTrue serialises it.';

create function auth._user_json(p_user auth.users) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
begin
  return pg_catalog.jsonb_build_object(
      'id', p_user.id,
      'aud', coalesce(p_user.aud, ''),
      'role', coalesce(p_user.role, ''),
      'email', coalesce(p_user.email, ''),
      'phone', coalesce(p_user.phone, ''),
      'app_metadata', p_user.raw_app_meta_data,
      'user_metadata', p_user.raw_user_meta_data,
      'identities', coalesce(
        (select pg_catalog.jsonb_agg(auth._identity_json(i) order by i.created_at, i.id)
           from auth.identities i
          where i.user_id = p_user.id),
        '[]'::jsonb),
      'created_at', p_user.created_at,
      'updated_at', p_user.updated_at,
      'is_anonymous', p_user.is_anonymous)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'email_confirmed_at', p_user.email_confirmed_at,
      'invited_at', p_user.invited_at,
      'phone_confirmed_at', p_user.phone_confirmed_at,
      'confirmation_sent_at', p_user.confirmation_sent_at,
      'confirmed_at', p_user.confirmed_at,
      'recovery_sent_at', p_user.recovery_sent_at,
      'new_email', nullif(p_user.email_change, ''),
      'email_change_sent_at', p_user.email_change_sent_at,
      'new_phone', nullif(p_user.phone_change, ''),
      'phone_change_sent_at', p_user.phone_change_sent_at,
      'reauthentication_sent_at', p_user.reauthentication_sent_at,
      'last_sign_in_at', p_user.last_sign_in_at,
      'banned_until', p_user.banned_until,
      'deleted_at', p_user.deleted_at));
end
$$;
comment on function auth._user_json(auth.users) is
  'A user as GoTrue serialises it: email and phone always present, no secrets, identities embedded.';

-------------------------------------------------------------------------------------------------------
-- Access tokens.
-------------------------------------------------------------------------------------------------------
create function auth._sign_claims(p_claims jsonb) returns text
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_key auth.signing_keys;
  v_signables text;
begin
  select * into v_key from auth.signing_keys where status = 'current';
  if not found then
    raise exception using errcode = 'AUX01', message = 'No current signing key: run auth.configure()';
  end if;
  v_signables := auth.url_encode(pg_catalog.convert_to(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'alg', v_key.algorithm, 'typ', 'JWT', 'kid', v_key.kid))::text, 'UTF8'))
    || '.' || auth.url_encode(pg_catalog.convert_to(p_claims::text, 'UTF8'));
  return v_signables || '.' || auth.algorithm_sign(v_signables, v_key.secret, v_key.algorithm);
end
$$;
comment on function auth._sign_claims(jsonb) is 'Signs claims with the current signing key.';

create function auth._verified_jwt_claims(p_token text) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_key record;
  v_check record;
begin
  for v_key in
    select k.secret, k.algorithm from auth.signing_keys k
     where k.status in ('current', 'previous')
     order by k.status = 'current' desc, k.created_at desc
  loop
    select * into v_check from auth._check_jwt(p_token, v_key.secret, v_key.algorithm);
    if v_check.unexpired then
      return v_check.payload::jsonb;
    elsif v_check.signed then
      raise exception using errcode = 'AUJ01',
        message = 'invalid JWT: unable to parse or verify signature, token has invalid claims: token is expired';
    end if;
  end loop;
  raise exception using errcode = 'AUJ01',
    message = 'invalid JWT: unable to parse or verify signature, signature is invalid';
end
$$;
comment on function auth._verified_jwt_claims(text) is
  'Claims of a JWT signed by a current or previous key and not expired; raises AUJ01 otherwise.';

-- What kind of credential a bearer is gets decided here, and only here (0008 adds API keys).
create function auth._verified_claims(p_token text) returns jsonb
  language sql stable
  return auth._verified_jwt_claims(p_token);
comment on function auth._verified_claims(text) is
  'Claims of a bearer credential that verified; raises AUJ01 otherwise.';

create function auth._authorize(
  p_token text, p_require_user boolean,
  out claims jsonb, out usr auth.users, out sess auth.sessions
)
  language plpgsql stable
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

create function auth.access_token_claims(p_token text) returns jsonb
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  return (auth._authorize(p_token, false)).claims;
end
$$;
comment on function auth.access_token_claims(text) is
  'Claims of a token this server issued (or an API-role key signed with its secret), after checking '
  'signature, expiry, and that its user and session still exist. Raises AUJ0x otherwise.';

create function auth.authenticate(p_token text) returns jsonb
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
  'auth.uid() apply. The connecting role must be a member of that role (grant authenticated to app).';

-- auth.authenticate() must stay SECURITY INVOKER: PostgreSQL refuses SET ROLE inside a SECURITY
-- DEFINER function. Its checks run in the definer function auth.access_token_claims().
grant execute on function auth.access_token_claims(text), auth.authenticate(text) to public;

create function auth._call_hook(p_function text, p_event jsonb) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_result jsonb;
begin
  -- The hook runs in a subtransaction of the request's own: whatever it did is undone when it fails,
  -- and the request's statement_timeout bounds it.
  begin
    execute pg_catalog.format('select %s($1)', p_function::regproc) using p_event into v_result;
  exception
    when query_canceled then
      raise exception using errcode = 'AUH02', message = pg_catalog.format('Hook %s timed out', p_function);
    when others then
      raise exception using errcode = 'AUH01',
        message = pg_catalog.format('Error running hook %s: %s', p_function, sqlerrm);
  end;
  if v_result ? 'error' then
    raise exception using errcode = 'AUH03',
      message = coalesce(v_result -> 'error' ->> 'message', 'Rejected by a hook');
  end if;
  return coalesce(v_result, '{}');
end
$$;
comment on function auth._call_hook(text, jsonb) is
  'Calls a configured hook f(event jsonb) returns jsonb. Raises AUH01 if it fails, AUH02 if it times out, '
  'AUH03 when it answers {"error": {"message": ...}}.';

create function auth._access_token(
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

-------------------------------------------------------------------------------------------------------
-- Sessions and refresh tokens.
-------------------------------------------------------------------------------------------------------
create function auth._next_refresh_token(p_token text, p_chain_key bytea) returns text
  language sql stable strict parallel safe
  return auth.url_encode(auth._hmac(pg_catalog.convert_to(p_token, 'UTF8'), p_chain_key, 'sha256'));
comment on function auth._next_refresh_token(text, bytea) is
  'The token that replaces p_token: derivable only by whoever holds both p_token and the session key.';

create function auth._session_response(
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

create function auth._start_session(
  p_user auth.users, p_method text, p_user_agent text, p_ip inet
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_session auth.sessions;
  v_refresh_token text := auth.url_encode(auth._random_bytes(32));
begin
  insert into auth.sessions (user_id, user_agent, ip)
  values (p_user.id, p_user_agent, p_ip)
  returning * into v_session;
  insert into auth.mfa_amr_claims (session_id, authentication_method) values (v_session.id, p_method);
  insert into auth.refresh_tokens (token_hash, user_id, session_id)
  values (auth._token_hash(v_refresh_token), p_user.id, v_session.id);
  return auth._session_response(p_user, v_session, v_refresh_token);
end
$$;
comment on function auth._start_session(auth.users, text, text, inet) is
  'Creates a session signed in by p_method, with its first refresh token; returns the token response.';

create function auth.refresh_session(
  p_refresh_token text, p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
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
comment on function auth.refresh_session(text, text, inet) is
  'Rotates a refresh token. A spent token gets the live one back when it is the live token''s parent '
  'or was rotated within settings.refresh_token_reuse_interval; any other spent token ends the session '
  '(or all the user''s sessions) and returns {"error": "AUR02"} so that the revocation commits.';

-------------------------------------------------------------------------------------------------------
-- Service functions: what the HTTP layer calls, one per request.
-------------------------------------------------------------------------------------------------------
create function auth.configure(p_settings jsonb, p_jwt_secret text) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_hook text;
begin
  select * into strict v_settings from auth.settings;
  v_settings := pg_catalog.jsonb_populate_record(v_settings, p_settings - 'singleton');
  v_settings.updated_at := pg_catalog.now();
  for v_hook in select unnest(array[v_settings.hook_custom_access_token, v_settings.hook_before_user_created,
                                    v_settings.hook_password_verification_attempt, v_settings.hook_send_email]) loop
    if v_hook is not null and pg_catalog.to_regprocedure(v_hook || '(jsonb)') is null then
      raise exception using errcode = 'AUV01',
        message = pg_catalog.format('Hook function %s(jsonb) does not exist', v_hook);
    end if;
  end loop;
  delete from auth.settings;
  insert into auth.settings select v_settings.*;

  if p_jwt_secret is not null then
    if pg_catalog.length(p_jwt_secret) < 32 then
      raise exception using errcode = 'AUV01', message = 'The JWT secret must be at least 32 characters';
    end if;
    update auth.signing_keys set secret = p_jwt_secret
     where status = 'current' and kid is null and algorithm = 'HS256' and secret <> p_jwt_secret;
    if not exists (select from auth.signing_keys where status = 'current') then
      insert into auth.signing_keys (algorithm, secret, status) values ('HS256', p_jwt_secret, 'current');
    end if;
  end if;
end
$$;
comment on function auth.configure(jsonb, text) is
  'Writes the settings row (members of p_settings override) and the HS256 signing secret. '
  'The service calls it at start-up with its environment.';

create function auth.sign_in_anonymously(
  p_data jsonb default '{}', p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if not v_settings.anonymous_users_enabled then
    raise exception using errcode = 'AUS03', message = 'Anonymous sign-ins are disabled';
  end if;
  if v_settings.disable_signup then
    raise exception using errcode = 'AUS02', message = 'Signups not allowed for this instance';
  end if;
  if v_settings.hook_before_user_created is not null then
    perform auth._call_hook(v_settings.hook_before_user_created, pg_catalog.jsonb_build_object(
      'user', pg_catalog.jsonb_build_object('email', '', 'is_anonymous', true, 'user_metadata', coalesce(p_data, '{}')),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip))));
  end if;
  insert into auth.users (aud, role, raw_user_meta_data, is_anonymous, last_sign_in_at)
  values (v_settings.jwt_aud, v_settings.jwt_default_role, coalesce(p_data, '{}'), true, pg_catalog.now())
  returning * into v_user;
  perform auth._audit(v_user, 'user_signedup', 'team', p_ip, '{"provider": "anonymous"}');
  return auth._start_session(v_user, 'anonymous', p_user_agent, p_ip);
end
$$;
comment on function auth.sign_in_anonymously(jsonb, text, inet) is
  'Creates an anonymous user (no email, phone or identity) and signs it in.';

create function auth.password_hash_by_email(p_email text, out user_id uuid, out password_hash text)
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  select u.id, u.encrypted_password into user_id, password_hash
    from auth.users u
   where u.email = pg_catalog.lower(pg_catalog.btrim(p_email))
     and not u.is_sso_user and u.deleted_at is null;
end
$$;
comment on function auth.password_hash_by_email(text) is
  'The password hash the service verifies before auth.sign_in_with_password(); NULLs when there is none.';

create function auth.sign_in_with_password(
  p_user_id uuid, p_verified_hash text, p_rehash text default null,
  p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  select * into v_user from auth.users where id = p_user_id and deleted_at is null for no key update;
  -- The hash must still be the one the service verified: a password changed meanwhile wins.
  if not found or v_user.encrypted_password is distinct from p_verified_hash then
    raise exception using errcode = 'AUS05', message = 'Invalid login credentials';
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUS06', message = 'User is banned';
  end if;
  if v_user.email_confirmed_at is null and v_user.phone_confirmed_at is null then
    raise exception using errcode = 'AUS04', message = 'Email not confirmed';
  end if;
  update auth.users
     set last_sign_in_at = pg_catalog.now(),
         encrypted_password = coalesce(p_rehash, encrypted_password)
   where id = v_user.id
  returning * into v_user;
  update auth.identities set last_sign_in_at = pg_catalog.now()
   where user_id = v_user.id and provider = 'email';
  perform auth._audit(v_user, 'login', 'account', p_ip, '{"provider": "email"}');
  return auth._start_session(v_user, 'password', p_user_agent, p_ip);
end
$$;
comment on function auth.sign_in_with_password(uuid, text, text, text, inet) is
  'Signs a user in after the service verified p_verified_hash; p_rehash replaces an outdated hash.';

create function auth.get_user(p_access_token text) returns jsonb
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  return auth._user_json((auth._authorize(p_access_token, true)).usr);
end
$$;
comment on function auth.get_user(text) is 'The user an access token speaks for (GET /user).';

create function auth.current_password_hash(p_access_token text) returns text
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  return ((auth._authorize(p_access_token, true)).usr).encrypted_password;
end
$$;
comment on function auth.current_password_hash(text) is
  'The token user''s password hash, for the service to compare a new password with the old one.';

create function auth.logout(p_access_token text, p_scope text default 'global', p_ip inet default null)
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

grant execute on function
  auth.refresh_session(text, text, inet),
  auth.configure(jsonb, text),
  auth.sign_in_anonymously(jsonb, text, inet),
  auth.password_hash_by_email(text),
  auth.sign_in_with_password(uuid, text, text, text, inet),
  auth.get_user(text),
  auth.current_password_hash(text),
  auth.logout(text, text, inet)
  to authgres_service;
