-- pkce.sql: PKCE (RFC 7636) flows: a client's code challenge, the auth code its emailed link issues, and
-- the exchange of that code and the verifier for a session.
--
-- A request that sends email with a code challenge starts a flow per emailed token (one_time_tokens.
-- flow_state_id), in its own transaction: every link stays bound to the flow that asked for it, so an
-- older link works after a newer one was sent. Following the link (GET /verify) spends the token as
-- without PKCE, then issues the flow's auth code instead of a session; POST /token?grant_type=pkce
-- gives the session to whoever holds the code and the verifier, once, within flow_state_expiry seconds
-- of the click. The code is stored as its SHA-256 only.
set local role authgres_owner;

create or replace function auth._pkce_method(p_code_challenge text, p_code_challenge_method text) returns text
  language plpgsql immutable
  set search_path = ''
as $$
declare
  v_method text := pg_catalog.lower(p_code_challenge_method);
begin
  if coalesce(p_code_challenge, '') = '' and coalesce(p_code_challenge_method, '') = '' then
    return null;  -- no PKCE: the implicit flow
  end if;
  if coalesce(p_code_challenge, '') = '' or coalesce(p_code_challenge_method, '') = '' then
    raise exception using errcode = 'AUV01', message = 'PKCE flow requires code_challenge_method and code_challenge';
  end if;
  if v_method not in ('s256', 'plain') then
    raise exception using errcode = 'AUV01', message = 'code challenge method not supported';
  end if;
  if p_code_challenge !~ '^[A-Za-z0-9._~-]{43,128}$' then
    raise exception using errcode = 'AUV01',
      message = 'code challenge must be 43 to 128 characters of A-Z, a-z, 0-9, hyphen, period, underscore and tilde';
  end if;
  return v_method;
end
$$;
comment on function auth._pkce_method(text, text) is
  'The code challenge method, lowercased (s256 or plain), or NULL without PKCE; AUV01 when only one of the '
  'pair is given or either is malformed.';

create or replace function auth._flow_authentication_method(p_token_type text) returns text
  language sql immutable parallel safe
  return case p_token_type when 'confirmation' then 'email/signup'
                           else auth._verification_type(p_token_type) end;
comment on function auth._flow_authentication_method(text) is
  'What a flow whose emailed token is of this kind signs in with, as GoTrue names it.';

create or replace function auth._new_flow_state(
  p_user_id uuid, p_token_type text, p_code_challenge text, p_code_challenge_method text, p_referrer text
) returns uuid
  language sql volatile
  set search_path = ''
begin atomic
  insert into auth.flow_state (user_id, code_challenge, code_challenge_method, authentication_method, referrer)
  values (p_user_id, p_code_challenge, auth._pkce_method(p_code_challenge, p_code_challenge_method),
          auth._flow_authentication_method(p_token_type), p_referrer)
  returning id;
end;
comment on function auth._new_flow_state(uuid, text, text, text, text) is
  'Starts the PKCE flow of one emailed token (user_id NULL for a pending sign-up); returns its id.';

create or replace function auth._issue_auth_code(p_flow_state uuid, p_user_id uuid) returns text
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_code text := pg_catalog.gen_random_uuid()::text;  -- 122 random bits, GoTrue's shape
begin
  update auth.flow_state
     set user_id = p_user_id, auth_code_digest = auth._token_hash(v_code), auth_code_issued_at = pg_catalog.now()
   where id = p_flow_state and auth_code_digest is null;
  if not found then
    return null;
  end if;
  return v_code;
end
$$;
comment on function auth._issue_auth_code(uuid, uuid) is
  'Issues the flow''s single-use auth code for the user (once per flow; NULL when the flow is gone or has '
  'one); only its digest is kept.';

create or replace function auth._pkce_verifier_matches(p_flow auth.flow_state, p_code_verifier text) returns boolean
  language sql stable
  set search_path = ''
  return case p_flow.code_challenge_method
    when 's256' then auth._equal_secure(
      auth.url_encode(pg_catalog.sha256(pg_catalog.convert_to(p_code_verifier, 'UTF8'))), p_flow.code_challenge)
    when 'plain' then auth._equal_secure(p_code_verifier, p_flow.code_challenge)
    else false end;
comment on function auth._pkce_verifier_matches(auth.flow_state, text) is
  'Whether the verifier answers the flow''s challenge (S256: base64url-nopad(SHA-256(verifier))), compared '
  'without revealing either through timing.';

create or replace function auth.exchange_auth_code(
  p_auth_code text, p_code_verifier text, p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_flow auth.flow_state;
  v_user auth.users;
begin
  if coalesce(p_auth_code, '') = '' or coalesce(p_code_verifier, '') = '' then
    raise exception using errcode = 'AUV01',
      message = 'invalid request: both auth code and code verifier should be non-empty';
  end if;
  -- Deleted first: a concurrent exchange of the same code waits on this row and then finds it gone, so a
  -- code gives one session. A check that fails below rolls the delete back with everything else.
  delete from auth.flow_state where auth_code_digest = auth._token_hash(p_auth_code) returning * into v_flow;
  if not found then
    raise exception using errcode = 'AUF01', message = 'invalid flow state, no valid flow state found';
  end if;
  if v_flow.auth_code_issued_at + pg_catalog.make_interval(secs => (select s.flow_state_expiry from auth.settings s))
     <= pg_catalog.now() then
    raise exception using errcode = 'AUF02', message = 'invalid flow state, flow state has expired';
  end if;
  if not auth._pkce_verifier_matches(v_flow, p_code_verifier) then
    raise exception using errcode = 'AUF03', message = 'code challenge does not match previously saved code verifier';
  end if;
  select * into v_user from auth.users where id = v_flow.user_id and deleted_at is null;
  if not found then  -- the account was (soft) deleted since the link was followed
    raise exception using errcode = 'AUF01', message = 'invalid flow state, no valid flow state found';
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;
  if v_flow.pending_link is not null then  -- a provider link, made only now, by the verifier's holder
    v_user := auth._identity_user(v_flow.pending_link ->> 'provider', v_flow.pending_link ->> 'subject',
                                  v_flow.pending_link -> 'claims', v_user.id, p_ip);
  end if;
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip, pg_catalog.jsonb_build_object(
    'provider', v_flow.provider_type, 'via', 'pkce', 'authentication_method', v_flow.authentication_method));
  -- A provider flow's session is an oauth sign-in, and hands back the provider's tokens, still sealed
  -- (the service opens them: the key is not the database's).
  return auth._start_session(v_user, case v_flow.authentication_method when 'oauth' then 'oauth' else 'otp' end,
                             p_user_agent, p_ip)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
         'sealed_provider_token', pg_catalog.encode(v_flow.provider_access_token, 'base64'),
         'sealed_provider_refresh_token', pg_catalog.encode(v_flow.provider_refresh_token, 'base64')));
end
$$;
comment on function auth.exchange_auth_code(text, text, text, inet) is
  'POST /token?grant_type=pkce: the session for a flow''s auth code and its code verifier; the flow ends '
  '(single use, concurrently too). AUF01 unknown or spent code, AUF02 expired (flow_state_expiry seconds '
  'after the code was issued), AUF03 a verifier that does not match; those leave the flow as it was. A '
  'provider flow''s answer also holds the provider''s tokens as sealed (sealed_provider_token, '
  'sealed_provider_refresh_token, base64), for the service to open; a provider link''s identity is added to '
  'the user here (AUI01 when it is another user''s).';
grant execute on function auth.exchange_auth_code(text, text, text, inet) to authgres_service;

-- Provider sign-in (OAuth 2.0 / OpenID Connect): GET /authorize starts a flow whose id is the `state` sent
-- to the provider; the callback reads it (auth.provider_flow) before it spends the provider's code, and
-- consumes it in the transaction that signs in (auth._consume_provider_flow): a PKCE flow's row then gets
-- its auth code, an implicit flow's row is deleted. Either way the state works once.
create or replace function auth._provider_state_lifetime() returns interval
  language sql immutable parallel safe
  return interval '10 minutes';
comment on function auth._provider_state_lifetime() is
  'How long the state of a provider sign-in (the time to log in at the provider) stays valid.';

create or replace function auth.start_provider_flow(
  p_provider text, p_referrer text, p_code_challenge text default null, p_code_challenge_method text default null,
  p_access_token text default null, p_browser_binding text default null
) returns uuid
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_target uuid;
  v_flow uuid;
begin
  if p_access_token is not null then  -- GET /user/identities/authorize: a link to the signed-in user
    if not (select s.manual_linking_enabled from auth.settings s) then
      raise exception using errcode = 'AUI03', message = 'Manual linking is disabled';
    end if;
    v_target := ((auth._signed_in(p_access_token)).usr).id;
  end if;
  insert into auth.flow_state (provider_type, authentication_method, code_challenge, code_challenge_method,
                               referrer, linking_target_id, browser_binding_digest)
  values (p_provider, 'oauth', nullif(p_code_challenge, ''), auth._pkce_method(p_code_challenge, p_code_challenge_method),
          p_referrer, v_target, pg_catalog.sha256(pg_catalog.convert_to(nullif(p_browser_binding, ''), 'UTF8')))
  returning id into v_flow;
  return v_flow;
end
$$;
comment on function auth.start_provider_flow(text, text, text, text, text, text) is
  'GET /authorize and GET /user/identities/authorize: starts a provider sign-in (with a code challenge, a '
  'PKCE flow; with the access token of a signed-in user, a link to that user, AUI03 when manual linking is '
  'off; with p_browser_binding, the value of the starting browser''s cookie, a flow only that browser can '
  'finish); returns its id, the single-use state sent to the provider.';
grant execute on function auth.start_provider_flow(text, text, text, text, text, text) to authgres_service;

create or replace function auth._live_provider_flow(p_state text) returns auth.flow_state
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_flow auth.flow_state;
begin
  if p_state ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select * into v_flow from auth.flow_state f
     where f.id = p_state::uuid and f.authentication_method = 'oauth' and f.auth_code_digest is null
       and f.created_at + auth._provider_state_lifetime() > pg_catalog.now()
       for update;
  end if;
  if v_flow.id is null then
    raise exception using errcode = 'AUI05', message = 'OAuth state parameter is invalid, used or expired';
  end if;
  return v_flow;
end
$$;
comment on function auth._live_provider_flow(text) is
  'The provider flow of a state that is still unused and unexpired, locked; AUI05 otherwise.';

create or replace function auth.provider_flow(p_state text, p_browser_binding text default null) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_flow auth.flow_state := auth._live_provider_flow(p_state);
begin
  -- Digests are compared: how long a comparison takes tells at most how much of a digest matched, which
  -- says nothing about the cookie's value.
  if v_flow.browser_binding_digest is not null
     and v_flow.browser_binding_digest is distinct from
         pg_catalog.sha256(pg_catalog.convert_to(coalesce(p_browser_binding, ''), 'UTF8')) then
    raise exception using errcode = 'AUI06', message = 'OAuth state was issued to another browser';
  end if;
  return pg_catalog.jsonb_build_object('provider', v_flow.provider_type, 'referrer', v_flow.referrer,
                                       'pkce', v_flow.code_challenge is not null,
                                       'linking', v_flow.linking_target_id is not null);
end
$$;
comment on function auth.provider_flow(text, text) is
  'The callback''s first look at its state: provider, referrer, whether PKCE and whether a link; AUI05 for a '
  'state that is unknown, used or expired, AUI06 when the flow belongs to another browser (p_browser_binding, '
  'the value of the browser''s cookie, is not the one it started with). Nothing is consumed: '
  'auth.sign_in_with_identity does that.';
grant execute on function auth.provider_flow(text, text) to authgres_service;
