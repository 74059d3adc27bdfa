-- email.sql: The email flows: sign-up confirmation, passwordless sign-in, recovery, resend,
-- verification and email change.
--
-- Issuing a token and queueing its email happen in one transaction; the service's mailer delivers the
-- outbox afterwards, so an email is never sent for a rolled-back change nor lost when SMTP is down.
set local role authgres_owner;

create or replace function auth._throttle_email(p_address text, p_kind text, p_ip inet) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
begin
  select * into v_settings from auth.settings;
  -- Keyed by address, never by user: a known and an unknown address are throttled alike.
  if v_settings.smtp_max_frequency > 0 then
    perform auth._throttle('email-gap:' || p_kind || ':' || p_address, 1,
                           pg_catalog.make_interval(secs => v_settings.smtp_max_frequency));
  end if;
  perform auth._throttle('email-hour:' || p_address, v_settings.rate_limit_email_per_address, interval '1 hour');
  if p_ip is not null then
    perform auth._throttle('email-ip-hour:' || pg_catalog.host(p_ip), v_settings.rate_limit_email_per_ip,
                           interval '1 hour', 'AUL02');
  end if;
end
$$;
comment on function auth._throttle_email(text, text, inet) is
  'The send throttles: one email of a kind per address per smtp_max_frequency, and hourly budgets per '
  'address and per client IP.';

create or replace function auth._queue_email(
  p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_extra jsonb default '{}',
  p_pending_signup uuid default null, p_code_challenge text default null, p_code_challenge_method text default null
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_token record;
  v_payload jsonb;
  v_flow uuid;
begin
  select * into v_settings from auth.settings;
  if coalesce(p_code_challenge, '') <> '' then
    v_flow := auth._new_flow_state(p_user.id, p_token_type, p_code_challenge, p_code_challenge_method,
                                   coalesce(p_redirect_to, v_settings.site_url));
  end if;
  select * into v_token
    from auth._issue_token(p_user, p_token_type, p_address, p_redirect_to, p_pending_signup, v_flow);
  v_payload := pg_catalog.jsonb_build_object(
      'token', v_token.code,
      -- GoTrue marks a PKCE flow's link token with pkce_: the link then answers with an auth code.
      'token_hash', case when v_flow is null then v_token.link_token else 'pkce_' || v_token.link_token end,
      'email', p_address,
      'redirect_to', coalesce(p_redirect_to, v_settings.site_url),
      'site_url', v_settings.site_url,
      'data', p_user.raw_user_meta_data,
      'verify_type', auth._verification_type(p_token_type)) || p_extra;
  if auth._fixed_code(p_address) is not null then
    null;  -- a development address: its code is known, nothing is sent
  elsif v_settings.hook_send_email is not null then
    -- The hook takes over delivery, in this transaction: typically it queues the email its own way.
    perform auth._call_hook(v_settings.hook_send_email, pg_catalog.jsonb_build_object(
      'user', auth._user_json(p_user), 'email_data', v_payload || pg_catalog.jsonb_build_object(
        'email_action_type', p_token_type)));
  else
    insert into auth.email_outbox (kind, to_address, user_id, payload)
    values (p_token_type, p_address, p_user.id, v_payload);
    perform pg_catalog.pg_notify('authgres_outbox', '');
  end if;
  update auth.users
     set confirmation_sent_at = case when p_token_type in ('confirmation', 'invite') then pg_catalog.now() else confirmation_sent_at end,
         recovery_sent_at = case when p_token_type in ('magiclink', 'recovery') then pg_catalog.now() else recovery_sent_at end,
         email_change_sent_at = case when p_token_type like 'email_change%' then pg_catalog.now() else email_change_sent_at end,
         reauthentication_sent_at = case when p_token_type = 'reauthentication' then pg_catalog.now() else reauthentication_sent_at end
   where id = p_user.id;
end
$$;
comment on function auth._queue_email(auth.users, text, text, text, jsonb, uuid, text, text) is
  'Issues a fresh token of p_token_type and queues its email, in the caller''s transaction (for a pending '
  'sign-up: p_user holds only its address and metadata, p_pending_signup its id); with a code challenge the '
  'token is bound to a PKCE flow of its own.';

create or replace function auth._confirm_email(p_user auth.users) returns auth.users
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  if p_user.email_confirmed_at is not null then
    return p_user;
  end if;
  update auth.users
     set email_confirmed_at = pg_catalog.now(), updated_at = pg_catalog.now(),
         raw_user_meta_data = raw_user_meta_data || '{"email_verified": true}'
   where id = p_user.id
  returning * into v_user;
  update auth.identities
     set identity_data = identity_data || '{"email_verified": true}', updated_at = pg_catalog.now()
   where user_id = p_user.id and provider = 'email';
  perform auth._audit(v_user, 'user_confirmation_completed', 'user', null);
  return v_user;
end
$$;
comment on function auth._confirm_email(auth.users) is 'Marks the user''s email verified (user, metadata and email identity).';

create or replace function auth._new_email_user(p_email text, p_password_hash text, p_data jsonb, p_ip inet)
  returns auth.users
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_id uuid := pg_catalog.gen_random_uuid();
  v_identity_data jsonb;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if v_settings.hook_before_user_created is not null then
    perform auth._call_hook(v_settings.hook_before_user_created, pg_catalog.jsonb_build_object(
      'user', pg_catalog.jsonb_build_object('email', p_email, 'is_anonymous', false,
                                            'user_metadata', coalesce(p_data, '{}')),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip))));
  end if;
  v_identity_data := pg_catalog.jsonb_build_object(
    'sub', v_id, 'email', p_email, 'email_verified', false, 'phone_verified', false);
  insert into auth.users (id, aud, role, email, encrypted_password, raw_app_meta_data, raw_user_meta_data)
  values (v_id, v_settings.jwt_aud, v_settings.jwt_default_role, p_email, p_password_hash,
          '{"provider": "email", "providers": ["email"]}', coalesce(p_data, '{}') || v_identity_data)
  on conflict (email) where is_sso_user = false do nothing
  returning * into v_user;
  if not found then
    return null;
  end if;
  insert into auth.identities (provider_id, user_id, identity_data, provider)
  values (v_id::text, v_id, v_identity_data, 'email');
  perform auth._audit(v_user, 'user_signedup', 'team', p_ip, '{"provider": "email"}');
  return v_user;
end
$$;
comment on function auth._new_email_user(text, text, jsonb, inet) is
  'Inserts an unconfirmed email user with its identity; NULL when the address is taken (concurrently too).';

-- Deferred sign-up (signup_deferred): until its address is proven a sign-up is a pending_signups row and
-- a one-time token pointing at it; the user is made only when that token is verified. Several may wait
-- for one address (whoever asked, only the mailbox's owner gets the codes); the first verified wins.
-- Phone numbers are deferred alike (phone.sql: _queue_pending_phone_signup), one pending sign-up a number.
create or replace function auth._pending_signup_answer(p_email text, p_phone text, p_data jsonb) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
begin
  -- Nothing in it depends on whether the address or number is new, pending or registered: the id is
  -- derived from the address (it is not the id the user will have), the times are this transaction's.
  return (select pg_catalog.jsonb_build_object(
    'id', pg_catalog.encode(pg_catalog.substr(pg_catalog.sha256(pg_catalog.convert_to(
            'authgres pending sign-up ' || coalesce(p_email, p_phone), 'UTF8')), 1, 16), 'hex')::uuid,
    'aud', s.jwt_aud, 'role', '', 'email', coalesce(p_email, ''), 'phone', coalesce(p_phone, ''),
    'confirmation_sent_at', pg_catalog.now(),
    'app_metadata', case when p_email is null then '{"provider": "phone", "providers": ["phone"]}'::jsonb
                         else '{"provider": "email", "providers": ["email"]}'::jsonb end,
    'user_metadata', coalesce(p_data, '{}'), 'identities', '[]'::jsonb,
    'created_at', pg_catalog.now(), 'updated_at', pg_catalog.now(), 'is_anonymous', false)
    from auth.settings s);
end
$$;
comment on function auth._pending_signup_answer(text, text, jsonb) is
  'What a deferred sign-up answers for an address (or a number): a look-alike user without identities, the '
  'same whether it is new, pending or registered.';

create or replace function auth._defer_signup(
  p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_code_challenge text default null,
  p_code_challenge_method text default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_user auth.users;
  v_pending auth.pending_signups;
begin
  select * into v_settings from auth.settings;
  select * into v_user from auth.users where email = p_email and not is_sso_user;
  if not found then
    insert into auth.pending_signups (email, password_hash, data, expires_at)
    values (p_email, p_password_hash, coalesce(p_data, '{}'),
            pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mailer_otp_exp))
    returning * into v_pending;
    perform auth._queue_pending_signup_email(v_pending, p_redirect_to, p_code_challenge, p_code_challenge_method);
  elsif v_user.email_confirmed_at is null then
    -- A user made before sign-ups were deferred, still unconfirmed: confirmed as before.
    perform auth._queue_email(v_user, 'confirmation', p_email, p_redirect_to, '{}', null,
                              p_code_challenge, p_code_challenge_method);
  end if;
  return auth._pending_signup_answer(p_email, null, p_data);
end
$$;
comment on function auth._defer_signup(text, text, jsonb, text, text, text) is
  'Deferred sign-up: records a pending sign-up and emails its code (nothing for a registered address); '
  'the answer is the same for new, pending and registered addresses.';

create or replace function auth._queue_pending_signup_email(
  p_pending auth.pending_signups, p_redirect_to text, p_code_challenge text, p_code_challenge_method text
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_user auth.users;  -- no row yet: only what the email shows of the user
begin
  v_user.email := p_pending.email;
  v_user.raw_user_meta_data := p_pending.data;
  perform auth._queue_email(v_user, 'confirmation', p_pending.email, p_redirect_to, '{}', p_pending.id,
                            p_code_challenge, p_code_challenge_method);
end
$$;
comment on function auth._queue_pending_signup_email(auth.pending_signups, text, text, text) is
  'Issues a fresh code for a pending sign-up (replacing its live one) and queues its confirmation email.';

create or replace function auth._user_from_pending_signup(p_pending_signup uuid, p_ip inet) returns auth.users
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_pending auth.pending_signups;
  v_user auth.users;
begin
  delete from auth.pending_signups where id = p_pending_signup returning * into v_pending;
  if not found or v_pending.expires_at <= pg_catalog.now() then
    return null;
  end if;
  -- Two pending sign-ups of one address verified at once: the unique address lets one insert win, and
  -- the other finds it taken.
  if v_pending.phone is not null then
    return auth._new_phone_user(v_pending.phone, v_pending.password_hash, v_pending.data, p_ip);
  end if;
  return auth._new_email_user(v_pending.email, v_pending.password_hash, v_pending.data, p_ip);
end
$$;
comment on function auth._user_from_pending_signup(uuid, inet) is
  'The user a verified pending sign-up (of an address or a number) becomes, unconfirmed yet; NULL when it '
  'expired or its address or number is taken.';

create or replace function auth._user_of_spent_token(p_token auth.one_time_tokens, p_ip inet) returns auth.users
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  if p_token.pending_signup_id is not null then  -- a deferred sign-up's: its user is made now
    return auth._user_from_pending_signup(p_token.pending_signup_id, p_ip);
  end if;
  select * into strict v_user from auth.users where id = p_token.user_id;
  return v_user;
end
$$;
comment on function auth._user_of_spent_token(auth.one_time_tokens, inet) is
  'The user a verified code or link (emailed or texted) is for; a pending sign-up''s is made now (NULL when it '
  'expired or its address or number is taken).';

create or replace function auth.sign_up(
  p_email text, p_password_hash text, p_data jsonb default '{}', p_redirect_to text default null,
  p_user_agent text default null, p_ip inet default null, p_code_challenge text default null,
  p_code_challenge_method text default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  select * into v_settings from auth.settings;
  if v_settings.disable_signup then
    raise exception using errcode = 'AUS02', message = 'Signups not allowed for this instance';
  end if;
  if p_password_hash is null then
    raise exception using errcode = 'AUV01', message = 'Signup requires a valid password';
  end if;
  if not v_settings.mailer_autoconfirm then
    perform auth._throttle_email(v_email, 'confirmation', p_ip);
    if v_settings.signup_deferred then
      return auth._defer_signup(v_email, p_password_hash, p_data, p_redirect_to, p_code_challenge, v_method);
    end if;
  end if;

  v_user := auth._new_email_user(v_email, p_password_hash, p_data, p_ip);
  if v_user.id is null then
    if v_settings.mailer_autoconfirm then
      raise exception using errcode = 'AUS01', message = 'User already registered';
    end if;
    select * into strict v_user from auth.users where email = v_email and not is_sso_user;
    if v_user.email_confirmed_at is null then
      perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
      return auth._user_json(v_user);
    end if;
    -- A confirmed address: answer with a look-alike user that has no identity, as GoTrue does, so the
    -- response does not confirm that the address is registered.
    return pg_catalog.jsonb_build_object(
      'id', pg_catalog.gen_random_uuid(), 'aud', v_settings.jwt_aud, 'role', '', 'email', v_email, 'phone', '',
      'confirmation_sent_at', pg_catalog.now(),
      'app_metadata', '{"provider": "email", "providers": ["email"]}'::jsonb,
      'user_metadata', coalesce(p_data, '{}'), 'identities', '[]'::jsonb,
      'created_at', pg_catalog.now(), 'updated_at', pg_catalog.now(), 'is_anonymous', false);
  end if;

  if not v_settings.mailer_autoconfirm then
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
    select * into strict v_user from auth.users where id = v_user.id;
    return auth._user_json(v_user);
  end if;
  v_user := auth._confirm_email(v_user);
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  update auth.identities set last_sign_in_at = pg_catalog.now() where user_id = v_user.id;
  perform auth._audit(v_user, 'login', 'account', p_ip, '{"provider": "email"}');
  return auth._start_session(v_user, 'password', p_user_agent, p_ip);
end
$$;
comment on function auth.sign_up(text, text, jsonb, text, text, inet, text, text) is
  'Email + password sign-up. Autoconfirm: a new user and a session, or AUS01 for a taken address. '
  'Deferred: a pending sign-up (see _defer_signup). Otherwise the unconfirmed user with a confirmation '
  'email queued (a look-alike without identities when the address is already confirmed). With a code '
  'challenge the emailed link is a PKCE flow''s.';
grant execute on function auth.sign_up(text, text, jsonb, text, text, inet, text, text) to authgres_service;

create or replace function auth.send_magic_link(
  p_email text, p_create_user boolean default true, p_data jsonb default '{}',
  p_redirect_to text default null, p_ip inet default null, p_code_challenge text default null,
  p_code_challenge_method text default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  select * into v_settings from auth.settings;
  perform auth._throttle_email(v_email, 'magiclink', p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if not found then
    -- Unknown address without permission to create it: nothing to send, and the caller is not told.
    if not p_create_user or v_settings.disable_signup then
      return '{}';
    end if;
    if v_settings.signup_deferred then
      perform auth._defer_signup(v_email, null, p_data, p_redirect_to, p_code_challenge, v_method);
      return '{}';
    end if;
    v_user := auth._new_email_user(v_email, null, p_data, p_ip);
    if v_user.id is null then
      return '{}';
    end if;
  end if;
  if v_user.email_confirmed_at is null then
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
  else
    perform auth._queue_email(v_user, 'magiclink', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
  end if;
  return '{}';
end
$$;
comment on function auth.send_magic_link(text, boolean, jsonb, text, inet, text, text) is
  'POST /otp and /magiclink: emails a sign-in code and link (a confirmation for an unconfirmed or new '
  'user). Always {} so that the answer does not tell whether the address is registered.';
grant execute on function auth.send_magic_link(text, boolean, jsonb, text, inet, text, text) to authgres_service;

create or replace function auth.send_recovery(
  p_email text, p_redirect_to text default null, p_ip inet default null, p_code_challenge text default null,
  p_code_challenge_method text default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  perform auth._throttle_email(v_email, 'recovery', p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if found then
    perform auth._queue_email(v_user, 'recovery', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
    perform auth._audit(v_user, 'user_recovery_requested', 'user', p_ip);
  end if;
  return '{}';
end
$$;
comment on function auth.send_recovery(text, text, inet, text, text) is
  'POST /recover: emails a recovery code and link (a PKCE flow''s with a code challenge); always {}.';
grant execute on function auth.send_recovery(text, text, inet, text, text) to authgres_service;

create or replace function auth._resend_pending_signup(
  p_email text, p_redirect_to text, p_code_challenge text default null, p_code_challenge_method text default null
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_pending auth.pending_signups;
begin
  update auth.pending_signups
     set expires_at = pg_catalog.now() + pg_catalog.make_interval(secs => (select s.mailer_otp_exp from auth.settings s))
   where id = (select p.id from auth.pending_signups p
                where p.email = p_email and p.expires_at > pg_catalog.now()
                order by p.created_at desc limit 1)
  returning * into v_pending;
  if found then
    perform auth._queue_pending_signup_email(v_pending, p_redirect_to, p_code_challenge, p_code_challenge_method);
  end if;
end
$$;
comment on function auth._resend_pending_signup(text, text, text, text) is
  'POST /resend for an address with a pending sign-up: a fresh code for the newest one, which lives on.';

create or replace function auth.resend(
  p_type text, p_email text, p_redirect_to text default null, p_ip inet default null,
  p_code_challenge text default null, p_code_challenge_method text default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  if p_type not in ('signup', 'email_change') then
    raise exception using errcode = 'AUV01', message = 'Missing one of these types: signup, email_change';
  end if;
  perform auth._throttle_email(v_email, 'resend-' || p_type, p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if not found then
    if p_type = 'signup' then
      perform auth._resend_pending_signup(v_email, p_redirect_to, p_code_challenge, v_method);
    end if;
    return '{}';
  end if;
  if p_type = 'signup' and v_user.email_confirmed_at is null then
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
  elsif p_type = 'email_change' and v_user.email_change <> '' then
    if exists (select from auth.one_time_tokens where user_id = v_user.id and token_type = 'email_change_current') then
      perform auth._queue_email(v_user, 'email_change_current', v_user.email, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_user.email_change), null,
                                p_code_challenge, v_method);
    end if;
    if exists (select from auth.one_time_tokens where user_id = v_user.id and token_type = 'email_change_new') then
      perform auth._queue_email(v_user, 'email_change_new', v_user.email_change, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_user.email_change), null,
                                p_code_challenge, v_method);
    end if;
  end if;
  return '{}';
end
$$;
comment on function auth.resend(text, text, text, inet, text, text) is
  'POST /resend: re-sends a pending sign-up confirmation or email change (as PKCE flows with a code '
  'challenge); always {}.';
grant execute on function auth.resend(text, text, text, inet, text, text) to authgres_service;

create or replace function auth.verify_email_token(
  p_type text, p_email text default null, p_code text default null, p_token_hash text default null,
  p_user_agent text default null, p_ip inet default null, p_password_hash text default null,
  p_link boolean default false
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_types text[];
  v_token auth.one_time_tokens;
  v_user auth.users;
  v_email text;
  v_found boolean := false;
  v_auth_code text;
begin
  v_types := case p_type
    when 'signup' then array['confirmation']
    when 'invite' then array['invite']
    when 'magiclink' then array['magiclink']
    when 'recovery' then array['recovery']
    when 'email' then array['confirmation', 'invite', 'magiclink', 'recovery']
    when 'email_change' then array['email_change_current', 'email_change_new']
    when 'email_change_current' then array['email_change_current']
    when 'email_change_new' then array['email_change_new']
  end;
  if v_types is null then
    raise exception using errcode = 'AUV01', message = 'Unsupported verification type';
  end if;
  select * into v_settings from auth.settings;

  if p_token_hash is not null then
    -- A link token: 224 bits, found by its digest; guessing is hopeless, so attempts are not counted.
    select * into v_token from auth.one_time_tokens
     where token_digest = auth._token_hash(pg_catalog.regexp_replace(pg_catalog.lower(p_token_hash), '^pkce_', ''))
       and token_type = any (v_types)
     for update;
    v_found := found and v_token.expires_at > pg_catalog.now();
    if not v_found then
      return auth._verify_error('Email link is invalid or has expired');
    end if;
  else
    if p_code is null or p_email is null then
      raise exception using errcode = 'AUV01', message = 'Verify requires either a token or a token hash';
    end if;
    v_email := auth._normalize_email(p_email);
    v_token := auth._spend_code(v_email, v_types, p_code);
    if v_token.id is null then
      return auth._verify_error('Token has expired or is invalid');
    end if;
  end if;

  if p_password_hash is not null and v_token.token_type <> 'recovery' then
    raise exception using errcode = 'AUV01', message = 'A new password can only be set with a recovery code';
  end if;
  delete from auth.one_time_tokens where id = v_token.id;
  v_user := auth._user_of_spent_token(v_token, p_ip);
  if v_user.id is null then
    return auth._verify_error('Email link is invalid or has expired');
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;

  if v_token.token_type like 'email_change%' then
    -- This address is proven: its other links (of other PKCE flows) are spent with this one.
    delete from auth.one_time_tokens where user_id = v_user.id and token_type = v_token.token_type;
    if exists (select from auth.one_time_tokens
                where user_id = v_user.id and token_type in ('email_change_current', 'email_change_new')) then
      update auth.users set email_change_confirm_status = 1 where id = v_user.id;
      return pg_catalog.jsonb_build_object(
        'msg', 'Confirmation link accepted. Please proceed to confirm link sent to the other email',
        'code', '200');
    end if;
    if exists (select from auth.users where email = v_user.email_change and id <> v_user.id) then
      raise exception using errcode = 'AUE01', message = 'A user with this email address has already been registered';
    end if;
    update auth.users
       set email = email_change, email_change = '', email_change_confirm_status = 0,
           email_confirmed_at = pg_catalog.now(), is_anonymous = false, updated_at = pg_catalog.now(),
           raw_user_meta_data = raw_user_meta_data || pg_catalog.jsonb_build_object('email', email_change)
     where id = v_user.id
    returning * into v_user;
    insert into auth.identities (provider_id, user_id, identity_data, provider)
    values (v_user.id::text, v_user.id, pg_catalog.jsonb_build_object(
              'sub', v_user.id, 'email', v_user.email, 'email_verified', true, 'phone_verified', false), 'email')
    on conflict (provider_id, provider) do update
       set identity_data = auth.identities.identity_data || pg_catalog.jsonb_build_object('email', v_user.email),
           updated_at = pg_catalog.now();
    if v_user.raw_app_meta_data -> 'provider' is null then
      update auth.users set raw_app_meta_data = raw_app_meta_data || '{"provider": "email", "providers": ["email"]}'
       where id = v_user.id returning * into v_user;
    end if;
    perform auth._audit(v_user, 'user_modified', 'user', p_ip, '{"change": "email"}');
  else
    if v_token.token_type = 'invite' then
      update auth.users set invited_at = coalesce(invited_at, pg_catalog.now()) where id = v_user.id
      returning * into v_user;
    end if;
    -- Whoever reads the mailbox owns the address: every emailed token also confirms it.
    v_user := auth._confirm_email(v_user);
  end if;

  if p_password_hash is not null then
    -- The one-call reset: the new password, and every session that knew the old one ends.
    update auth.users set encrypted_password = p_password_hash, updated_at = pg_catalog.now()
     where id = v_user.id
    returning * into v_user;
    delete from auth.sessions where user_id = v_user.id;
    perform auth._audit(v_user, 'user_updated_password', 'user', p_ip, '{"via": "recovery"}');
    perform auth._user_event(v_user.id, 'password_changed');
  end if;
  delete from auth.one_time_tokens
   where user_id = v_user.id and token_type in ('confirmation', 'invite', 'magiclink', 'recovery');
  if p_link and v_token.flow_state_id is not null then
    -- A PKCE flow's link, followed: the session waits for whoever holds the code and the verifier.
    v_auth_code := auth._issue_auth_code(v_token.flow_state_id, v_user.id);
    if v_auth_code is null then
      raise exception using errcode = 'AUF01', message = 'No associated flow state found.';
    end if;
    return pg_catalog.jsonb_build_object('auth_code', v_auth_code, 'redirect_to', v_token.redirect_to,
                                         'verification_type', v_token.token_type);
  end if;
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', 'email', 'via', v_token.token_type));
  return auth._start_session(v_user, 'otp', p_user_agent, p_ip)
    || pg_catalog.jsonb_build_object('redirect_to', v_token.redirect_to, 'verification_type', v_token.token_type);
end
$$;
comment on function auth.verify_email_token(text, text, text, text, text, inet, text, boolean) is
  'POST/GET /verify: consumes an emailed token (by address + code, or by link token) and signs the user '
  'in, in one transaction; with p_password_hash (recovery tokens only) it also sets the new password and '
  'ends the user''s other sessions. Wrong codes count against the token; the failure is returned as '
  '{"error": "AUO01"} so that the count commits. The response also names the token''s redirect_to. With '
  'p_link (the link was followed: GET /verify), a token of a PKCE flow answers {auth_code} instead of a '
  'session (see pkce.sql).';
grant execute on function auth.verify_email_token(text, text, text, text, text, inet, text, boolean) to authgres_service;
