-- sign_in.sql: sign-in with a password (verified by the service) and anonymous sign-in.
set local role authgres_owner;

create or replace function auth.password_hash_by_email(p_email text, out user_id uuid, out password_hash text)
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
grant execute on function auth.password_hash_by_email(text) to authgres_service;

create or replace function auth.sign_in_with_password(
  p_user_id uuid, p_verified_hash text, p_rehash text default null,
  p_user_agent text default null, p_ip inet default null, p_phone boolean default false
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
  v_session jsonb;
  v_factor auth.mfa_factors;
  v_login_token text;
  v_challenge auth.mfa_challenges;
  v_hook jsonb;
begin
  select * into v_user from auth.users where id = p_user_id and deleted_at is null for no key update;
  -- The hash must still be the one the service verified: a password changed meanwhile wins.
  if not found or v_user.encrypted_password is distinct from p_verified_hash then
    raise exception using errcode = 'AUS05', message = 'Invalid login credentials';
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUS06', message = 'User is banned';
  end if;
  if p_phone and v_user.phone_confirmed_at is null then
    raise exception using errcode = 'AUP02', message = 'Phone not confirmed';
  end if;
  if not p_phone and v_user.email_confirmed_at is null and v_user.phone_confirmed_at is null then
    raise exception using errcode = 'AUS04', message = 'Email not confirmed';
  end if;
  v_hook := auth._password_attempt_hook(v_user, true);
  if v_hook ->> 'decision' = 'reject' then
    return pg_catalog.jsonb_build_object('error', 'AUH03',
      'message', coalesce(v_hook ->> 'message', 'Sign-in refused'));
  end if;
  update auth.users
     set last_sign_in_at = pg_catalog.now(),
         encrypted_password = coalesce(p_rehash, encrypted_password)
   where id = v_user.id
  returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', case when p_phone then 'phone' else 'email' end));
  if not auth._needs_email_step(v_user) then
    return auth._start_session(v_user, 'password', p_user_agent, p_ip);
  end if;

  v_factor := auth._email_factor(v_user);
  if (select s.mfa_email_strict from auth.settings s) then
    -- No session yet: the emailed code and this token, together, will create it.
    v_login_token := auth.url_encode(auth._random_bytes(32));
    v_challenge := auth._issue_mfa_email(v_user, v_factor, null, p_ip);
    update auth.mfa_challenges set login_token_digest = auth._token_hash(v_login_token) where id = v_challenge.id;
    return pg_catalog.jsonb_build_object('twofa_required', true, 'methods', '["email"]'::jsonb,
                                         'challenge_token', v_login_token,
                                         'expires_at', auth._epoch(v_challenge.expires_at));
  end if;
  v_session := auth._start_session(v_user, 'password', p_user_agent, p_ip);
  perform auth._issue_mfa_email(v_user, v_factor, auth._session_of(v_session), p_ip);
  return v_session;
end
$$;
comment on function auth.sign_in_with_password(uuid, text, text, text, inet, boolean) is
  'Signs a user in after the service verified p_verified_hash; p_rehash replaces an outdated hash. p_phone: '
  'the user was found by phone number, which must then be confirmed.';
grant execute on function auth.sign_in_with_password(uuid, text, text, text, inet, boolean) to authgres_service;

create or replace function auth._record_failed_login(
  p_user auth.users, p_username text, p_provider text, p_ip inet
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  -- An unknown address or number is recorded too (actor NULL, what was tried as the username): both are
  -- attacks' traces.
  insert into auth.audit_log_entries (payload, ip_address)
  values (pg_catalog.json_strip_nulls(pg_catalog.json_build_object(
            'actor_id', p_user.id, 'actor_username', pg_catalog.left(p_username, 255),
            'actor_via_sso', false, 'action', 'login_failed', 'log_type', 'account',
            'traits', pg_catalog.json_build_object('provider', p_provider, 'known_user', p_user.id is not null))),
          coalesce(pg_catalog.host(p_ip), ''));
  if p_user.id is not null then
    perform auth._password_attempt_hook(p_user, false);
  end if;
end
$$;
comment on function auth._record_failed_login(auth.users, text, text, inet) is
  'Audits a password sign-in by p_provider (email or phone) that failed verification (p_user NULL when nobody '
  'has that username), and tells the password_verification_attempt hook.';

create or replace function auth.record_failed_login(p_email text, p_ip inet default null) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  select * into v_user from auth.users where email = pg_catalog.lower(pg_catalog.btrim(p_email)) and deleted_at is null;
  perform auth._record_failed_login(v_user, coalesce(v_user.email, p_email), 'email', p_ip);
end
$$;
comment on function auth.record_failed_login(text, inet) is
  'Audits a password sign-in that failed verification, and tells the password_verification_attempt hook.';
grant execute on function auth.record_failed_login(text, inet) to authgres_service;

create or replace function auth.sign_in_anonymously(
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
  if p_ip is not null then
    perform auth._throttle('anonymous-ip-hour:' || pg_catalog.host(p_ip), v_settings.rate_limit_anonymous_users,
                           interval '1 hour', 'AUL02');
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
  'Creates an anonymous user (no email, phone or identity) and signs it in; AUL02 past '
  'rate_limit_anonymous_users per hour from p_ip.';
grant execute on function auth.sign_in_anonymously(jsonb, text, inet) to authgres_service;
