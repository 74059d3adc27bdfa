-- phone.sql: phone numbers as identities: sign-up, sign-in by texted code, phone change, and the SMS
-- outbox the service drains.
--
-- A number is kept as E.164 digits without the +, as GoTrue keeps it. Texted codes are ordinary one-time
-- tokens (one_time_tokens.sql: hashed, attempt-limited, expiring, single-use) with the sms_ settings'
-- length and lifetime. Issuing a code and queueing its text are one transaction; the service sends the
-- text afterwards (for POST /otp and /resend), or at once while the request waits (sign-up, a phone
-- change, a phone factor's challenge: the text is leased to that request, and its provider's refusal is
-- the request's error). Throttles are keyed by number, never by user, so known and unknown numbers are
-- throttled alike.
set local role authgres_owner;

create or replace function auth._normalize_phone(p_phone text) returns text
  language plpgsql immutable parallel safe
  set search_path = ''
as $$
declare
  v_phone text := pg_catalog.regexp_replace(coalesce(p_phone, ''), '[+[:space:]-]', '', 'g');
begin
  if v_phone !~ '^[1-9][0-9]{1,14}$' then
    raise exception using errcode = 'AUV01', message = 'Invalid phone number format (E.164 required)';
  end if;
  return v_phone;
end
$$;
comment on function auth._normalize_phone(text) is
  'E.164 digits without +: +, spaces and dashes removed; AUV01 unless 2-15 digits not starting with 0.';

create or replace function auth._throttle_sms(p_phone text, p_kind text) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
begin
  select * into v_settings from auth.settings;
  if v_settings.sms_max_frequency > 0 then
    perform auth._throttle('sms-gap:' || p_kind || ':' || p_phone, 1,
                           pg_catalog.make_interval(secs => v_settings.sms_max_frequency), 'AUL03');
  end if;
  perform auth._throttle('sms-hour', v_settings.rate_limit_sms_sent, interval '1 hour', 'AUL03');
end
$$;
comment on function auth._throttle_sms(text, text) is
  'The text throttles: one text of a kind per number per sms_max_frequency, and rate_limit_sms_sent texts '
  'per hour in all (GoTrue''s budget is the installation''s); AUL03 past either.';

create or replace function auth._queue_sms(
  p_user auth.users, p_token_type text, p_phone text, p_channel text, p_now boolean,
  p_created_user boolean default false, p_pending_signup uuid default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_token record;
  v_message auth.sms_outbox;
  v_channel text := coalesce(nullif(p_channel, ''), 'sms');
begin
  select * into v_settings from auth.settings;
  if v_channel not in ('sms', 'whatsapp') then
    raise exception using errcode = 'AUV01', message = 'Invalid channel, should be one of sms, whatsapp';
  end if;
  select * into v_token from auth._issue_token(p_user, p_token_type, p_phone, null, p_pending_signup);
  update auth.users
     set confirmation_sent_at = case when p_token_type = 'phone_confirmation' then pg_catalog.now() else confirmation_sent_at end,
         phone_change_sent_at = case when p_token_type = 'phone_change' then pg_catalog.now() else phone_change_sent_at end
   where id = p_user.id;
  if auth._fixed_code(p_phone) is not null then
    -- A development number: its code is known, nothing is sent.
    return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
  end if;
  if v_settings.hook_send_sms is not null then
    -- The hook takes over delivery, in this transaction.
    perform auth._call_hook(v_settings.hook_send_sms, pg_catalog.jsonb_build_object(
      'user', auth._user_json(p_user),
      'sms', pg_catalog.jsonb_build_object('otp', v_token.code, 'phone', p_phone, 'channel', v_channel,
                                           'sms_type', auth._verification_type(p_token_type))));
    return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
  end if;
  if p_now then
    -- Leased to the request that queued it, which sends it before answering; should that process die,
    -- the lease ends and the sender takes it over.
    insert into auth.sms_outbox
      (kind, channel, to_phone, user_id, pending_signup_id, payload, created_user, status, attempts, leased_until)
    values (p_token_type, v_channel, p_phone, p_user.id, p_pending_signup,
            pg_catalog.jsonb_build_object('code', v_token.code), p_created_user, 'sending', 1,
            pg_catalog.now() + interval '60 seconds')
    returning * into v_message;
    return pg_catalog.jsonb_build_object('message_id', v_message.message_id, 'sms', pg_catalog.to_jsonb(v_message));
  end if;
  insert into auth.sms_outbox (kind, channel, to_phone, user_id, pending_signup_id, payload, created_user)
  values (p_token_type, v_channel, p_phone, p_user.id, p_pending_signup,
          pg_catalog.jsonb_build_object('code', v_token.code), p_created_user)
  returning * into v_message;
  perform pg_catalog.pg_notify('authgres_sms_outbox', '');
  return pg_catalog.jsonb_build_object('message_id', v_message.message_id);
end
$$;
comment on function auth._queue_sms(auth.users, text, text, text, boolean, boolean, uuid) is
  'Issues a fresh texted code of p_token_type and queues its text (sms or whatsapp) in the caller''s '
  'transaction: {message_id}, plus with p_now the outbox row {sms}, leased to the caller to send at once. '
  'A fixed development number gets nothing; the send_sms hook, when set, delivers instead of the outbox. '
  'For a pending sign-up, p_user holds only its number and metadata, p_pending_signup its id.';

create or replace function auth._new_phone_user(p_phone text, p_password_hash text, p_data jsonb, p_ip inet)
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
      'user', pg_catalog.jsonb_build_object('email', '', 'phone', p_phone, 'is_anonymous', false,
                                            'user_metadata', coalesce(p_data, '{}')),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip))));
  end if;
  v_identity_data := pg_catalog.jsonb_build_object(
    'sub', v_id, 'phone', p_phone, 'email_verified', false, 'phone_verified', false);
  insert into auth.users (id, aud, role, phone, encrypted_password, raw_app_meta_data, raw_user_meta_data)
  values (v_id, v_settings.jwt_aud, v_settings.jwt_default_role, p_phone, p_password_hash,
          '{"provider": "phone", "providers": ["phone"]}', coalesce(p_data, '{}') || v_identity_data)
  on conflict (phone) do nothing
  returning * into v_user;
  if not found then
    return null;
  end if;
  insert into auth.identities (provider_id, user_id, identity_data, provider)
  values (v_id::text, v_id, v_identity_data, 'phone');
  perform auth._audit(v_user, 'user_signedup', 'team', p_ip, '{"provider": "phone"}');
  return v_user;
end
$$;
comment on function auth._new_phone_user(text, text, jsonb, inet) is
  'Inserts an unconfirmed phone user with its identity; NULL when the number is taken (concurrently too).';

create or replace function auth._confirm_phone(p_user auth.users) returns auth.users
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  if p_user.phone_confirmed_at is not null then
    return p_user;
  end if;
  update auth.users
     set phone_confirmed_at = pg_catalog.now(), updated_at = pg_catalog.now(),
         raw_user_meta_data = raw_user_meta_data || '{"phone_verified": true}'
   where id = p_user.id
  returning * into v_user;
  update auth.identities
     set identity_data = identity_data || '{"phone_verified": true}', updated_at = pg_catalog.now()
   where user_id = p_user.id and provider = 'phone';
  perform auth._audit(v_user, 'user_confirmation_completed', 'user', null, '{"provider": "phone"}');
  return v_user;
end
$$;
comment on function auth._confirm_phone(auth.users) is 'Marks the user''s phone verified (user, metadata and phone identity).';

-- Deferred sign-up of a number (signup_deferred, email.sql's _defer_signup for addresses): a pending_signups
-- row and a texted code pointing at it; the user is made only when that code is verified. One waits per
-- number: the newest sign-up's password and metadata are the ones its code (the only live one) confirms.
create or replace function auth._queue_pending_phone_signup(
  p_phone text, p_channel text, p_signup boolean, p_password_hash text default null, p_data jsonb default null
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_lifetime interval := pg_catalog.make_interval(secs => (select s.sms_otp_exp from auth.settings s));
  v_pending auth.pending_signups;
  v_user auth.users;  -- no row yet: only what the text's hook sees of the user
begin
  -- Sign-ups of one number queue here; then the number's codes are locked before its pending sign-up, in
  -- the order a verification locks them, so that a sign-up racing a verification waits instead of
  -- deadlocking.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('authgres pending phone sign-up ' || p_phone));
  perform from auth.one_time_tokens where relates_to = p_phone and token_type = 'phone_confirmation' for update;
  if p_signup then
    insert into auth.pending_signups (phone, password_hash, data, expires_at)
    values (p_phone, p_password_hash, coalesce(p_data, '{}'), pg_catalog.now() + v_lifetime)
    on conflict (phone) where phone is not null do update
       set password_hash = excluded.password_hash, data = excluded.data, created_at = excluded.created_at,
           expires_at = excluded.expires_at
    returning * into v_pending;
  else
    update auth.pending_signups set expires_at = pg_catalog.now() + v_lifetime
     where phone = p_phone and expires_at > pg_catalog.now()
    returning * into v_pending;
    if not found then
      return null;
    end if;
  end if;
  v_user.phone := p_phone;
  v_user.raw_user_meta_data := v_pending.data;
  return auth._queue_sms(v_user, 'phone_confirmation', p_phone, p_channel, false, false, v_pending.id);
end
$$;
comment on function auth._queue_pending_phone_signup(text, text, boolean, text, jsonb) is
  'Deferred phone sign-up: with p_signup records the number''s pending sign-up (replacing its password, '
  'metadata and code), else refreshes its live one (NULL when none); queues a fresh code''s text as '
  '_queue_sms does: {message_id}.';

create or replace function auth.sign_up_phone(
  p_phone text, p_password_hash text, p_data jsonb default '{}', p_channel text default 'sms',
  p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_phone text := auth._normalize_phone(p_phone);
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if v_settings.disable_signup then
    raise exception using errcode = 'AUS02', message = 'Signups not allowed for this instance';
  end if;
  if p_password_hash is null then
    raise exception using errcode = 'AUV01', message = 'Signup requires a valid password';
  end if;
  if not v_settings.sms_autoconfirm then
    perform auth._throttle_sms(v_phone, 'phone_confirmation');
    if v_settings.signup_deferred then
      select * into v_user from auth.users where phone = v_phone;
      if not found then
        perform auth._queue_pending_phone_signup(v_phone, p_channel, true, p_password_hash, p_data);
      elsif v_user.phone_confirmed_at is null then
        -- A user made before sign-ups were deferred, still unconfirmed: confirmed as before.
        perform auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false);
      end if;
      return auth._pending_signup_answer(null, v_phone, p_data);
    end if;
  end if;
  v_user := auth._new_phone_user(v_phone, p_password_hash, p_data, p_ip);
  if v_user.id is null then
    if v_settings.sms_autoconfirm then
      raise exception using errcode = 'AUS01', message = 'User already registered';
    end if;
    select * into strict v_user from auth.users where phone = v_phone;
    if v_user.phone_confirmed_at is null then
      perform auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false);
      select * into strict v_user from auth.users where id = v_user.id;
      return auth._user_json(v_user);
    end if;
    -- A confirmed number: a look-alike user without identities, as for email, so the answer does not
    -- confirm that the number is registered.
    return pg_catalog.jsonb_build_object(
      'id', pg_catalog.gen_random_uuid(), 'aud', v_settings.jwt_aud, 'role', '', 'email', '', 'phone', v_phone,
      'confirmation_sent_at', pg_catalog.now(),
      'app_metadata', '{"provider": "phone", "providers": ["phone"]}'::jsonb,
      'user_metadata', coalesce(p_data, '{}'), 'identities', '[]'::jsonb,
      'created_at', pg_catalog.now(), 'updated_at', pg_catalog.now(), 'is_anonymous', false);
  end if;
  if not v_settings.sms_autoconfirm then
    perform auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false, true);
    select * into strict v_user from auth.users where id = v_user.id;
    return auth._user_json(v_user);
  end if;
  v_user := auth._confirm_phone(v_user);
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  update auth.identities set last_sign_in_at = pg_catalog.now() where user_id = v_user.id;
  perform auth._audit(v_user, 'login', 'account', p_ip, '{"provider": "phone"}');
  return auth._start_session(v_user, 'password', p_user_agent, p_ip);
end
$$;
comment on function auth.sign_up_phone(text, text, jsonb, text, text, inet) is
  'Phone + password sign-up. Autoconfirm: a new user and a session, or AUS01 for a taken number. Deferred: '
  'a pending sign-up (_queue_pending_phone_signup) and a look-alike answer whatever the number. Otherwise '
  'the unconfirmed user (a look-alike without identities, and no text, when the number is already '
  'confirmed). The code''s text is queued for the sender, not sent while the request waits: how long the '
  'answer takes does not tell whether a text went, that is whether the number was registered.';
grant execute on function auth.sign_up_phone(text, text, jsonb, text, text, inet) to authgres_service;

create or replace function auth.send_phone_otp(
  p_phone text, p_create_user boolean default true, p_data jsonb default '{}', p_channel text default 'sms',
  p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_phone text := auth._normalize_phone(p_phone);
  v_user auth.users;
  v_created boolean := false;
begin
  select * into v_settings from auth.settings;
  if coalesce(nullif(p_channel, ''), 'sms') not in ('sms', 'whatsapp') then
    raise exception using errcode = 'AUV01', message = 'Invalid channel, should be one of sms, whatsapp';
  end if;
  perform auth._throttle_sms(v_phone, 'phone_confirmation');
  select * into v_user from auth.users where phone = v_phone and deleted_at is null;
  if not found then
    -- An unknown number without permission to create it: nothing is sent, and the answer is the same.
    if not p_create_user or v_settings.disable_signup then
      return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
    end if;
    if v_settings.signup_deferred then
      return auth._queue_pending_phone_signup(v_phone, p_channel, true, null, p_data);
    end if;
    v_user := auth._new_phone_user(v_phone, null, p_data, p_ip);
    if v_user.id is null then
      return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
    end if;
    v_created := true;
  end if;
  return auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false, v_created);
end
$$;
comment on function auth.send_phone_otp(text, boolean, jsonb, text, inet) is
  'POST /otp with a phone: queues a texted sign-in code (creating the user when p_create_user, or with '
  'signup_deferred a pending sign-up). Always {message_id}, whether or not the number is registered.';
grant execute on function auth.send_phone_otp(text, boolean, jsonb, text, inet) to authgres_service;

create or replace function auth.resend_phone(p_type text, p_phone text, p_channel text default 'sms', p_ip inet default null)
  returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_phone text := auth._normalize_phone(p_phone);
  v_user auth.users;
  v_sent jsonb;
begin
  if p_type not in ('sms', 'phone_change') then
    raise exception using errcode = 'AUV01', message = 'Missing one of these types: signup, email_change, sms, phone_change';
  end if;
  if coalesce(nullif(p_channel, ''), 'sms') not in ('sms', 'whatsapp') then
    raise exception using errcode = 'AUV01', message = 'Invalid channel, should be one of sms, whatsapp';
  end if;
  perform auth._throttle_sms(v_phone, 'resend-' || p_type);
  if p_type = 'sms' then
    select * into v_user from auth.users where phone = v_phone and phone_confirmed_at is null and deleted_at is null;
    if found then
      return auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false);
    end if;
    v_sent := auth._queue_pending_phone_signup(v_phone, p_channel, false);
    if v_sent is not null then
      return v_sent;
    end if;
  else
    select * into v_user from auth.users where phone_change = v_phone and deleted_at is null
     order by phone_change_sent_at desc nulls last limit 1;
    if found then
      return auth._queue_sms(v_user, 'phone_change', v_phone, p_channel, false);
    end if;
  end if;
  return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
end
$$;
comment on function auth.resend_phone(text, text, text, inet) is
  'POST /resend with type sms (an unconfirmed number''s code, or a pending sign-up''s, which lives on) or '
  'phone_change (the new number''s code): always {message_id}, whether or not anything was pending.';
grant execute on function auth.resend_phone(text, text, text, inet) to authgres_service;

create or replace function auth.verify_phone_token(
  p_type text, p_phone text, p_code text, p_user_agent text default null, p_ip inet default null,
  p_provider_approved boolean default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_phone text := auth._normalize_phone(p_phone);
  v_types text[];
  v_token auth.one_time_tokens;
  v_user auth.users;
begin
  v_types := case p_type when 'sms' then array['phone_confirmation'] when 'phone_change' then array['phone_change'] end;
  if v_types is null then
    raise exception using errcode = 'AUV01', message = 'Unsupported verification type';
  end if;
  if p_provider_approved is null and pg_catalog.btrim(coalesce(p_code, '')) = '' then
    raise exception using errcode = 'AUV01', message = 'Verify requires either a token or a token hash';
  end if;
  v_token := auth._spend_code(v_phone, v_types, p_code, p_provider_approved);
  if v_token.id is null then
    return auth._verify_error('Token has expired or is invalid');
  end if;
  delete from auth.one_time_tokens where id = v_token.id;
  v_user := auth._user_of_spent_token(v_token, p_ip);  -- a pending sign-up's is made now, confirmed below
  if v_user.id is null then
    return auth._verify_error('Token has expired or is invalid');
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;
  if v_token.token_type = 'phone_change' then
    if exists (select from auth.users where phone = v_phone and id <> v_user.id) then
      raise exception using errcode = 'AUP03', message = 'A user with this phone number has already been registered';
    end if;
    update auth.users
       set phone = phone_change, phone_change = '', phone_confirmed_at = pg_catalog.now(), is_anonymous = false,
           updated_at = pg_catalog.now(),
           raw_user_meta_data = raw_user_meta_data || pg_catalog.jsonb_build_object('phone', v_phone, 'phone_verified', true)
     where id = v_user.id
    returning * into v_user;
    insert into auth.identities (provider_id, user_id, identity_data, provider)
    values (v_user.id::text, v_user.id, pg_catalog.jsonb_build_object(
              'sub', v_user.id, 'phone', v_phone, 'email_verified', false, 'phone_verified', true), 'phone')
    on conflict (provider_id, provider) do update
       set identity_data = auth.identities.identity_data
                           || pg_catalog.jsonb_build_object('phone', v_phone, 'phone_verified', true),
           updated_at = pg_catalog.now();
    if v_user.raw_app_meta_data -> 'provider' is null then
      update auth.users set raw_app_meta_data = raw_app_meta_data || '{"provider": "phone", "providers": ["phone"]}'
       where id = v_user.id returning * into v_user;
    elsif not coalesce(v_user.raw_app_meta_data -> 'providers', '[]') ? 'phone' then
      update auth.users
         set raw_app_meta_data = pg_catalog.jsonb_set(raw_app_meta_data, '{providers}',
                                   coalesce(raw_app_meta_data -> 'providers', '[]') || '["phone"]')
       where id = v_user.id returning * into v_user;
    end if;
    perform auth._audit(v_user, 'user_modified', 'user', p_ip, '{"change": "phone"}');
  else
    v_user := auth._confirm_phone(v_user);
  end if;
  -- Whoever holds the phone has proven it: the other codes of this purpose die with this one.
  delete from auth.one_time_tokens where user_id = v_user.id and token_type = v_token.token_type;
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  update auth.identities set last_sign_in_at = pg_catalog.now() where user_id = v_user.id and provider = 'phone';
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', 'phone', 'via', v_token.token_type));
  return auth._start_session(v_user, 'otp', p_user_agent, p_ip);
end
$$;
comment on function auth.verify_phone_token(text, text, text, text, inet, boolean) is
  'POST /verify with type sms or phone_change: spends the texted code (counted against it when wrong; the '
  'failure returned as {"error": "AUO01"} so that the count commits), confirms the number (making the user of '
  'a pending sign-up) or completes the change, and signs the user in, in one transaction. '
  'p_provider_approved: Twilio Verify checked the code.';
grant execute on function auth.verify_phone_token(text, text, text, text, inet, boolean) to authgres_service;

create or replace function auth.password_hash_by_phone(p_phone text, out user_id uuid, out password_hash text)
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  select u.id, u.encrypted_password into user_id, password_hash
    from auth.users u
   where u.phone = pg_catalog.regexp_replace(coalesce(p_phone, ''), '[+[:space:]-]', '', 'g')
     and u.deleted_at is null;
end
$$;
comment on function auth.password_hash_by_phone(text) is
  'The password hash the service verifies before a phone sign-in; NULLs when there is none.';
grant execute on function auth.password_hash_by_phone(text) to authgres_service;

create or replace function auth.record_failed_phone_login(p_phone text, p_ip inet default null) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_phone text := pg_catalog.regexp_replace(coalesce(p_phone, ''), '[+[:space:]-]', '', 'g');
  v_user auth.users;
begin
  select * into v_user from auth.users where phone = v_phone and deleted_at is null;
  perform auth._record_failed_login(v_user, v_phone, 'phone', p_ip);
end
$$;
comment on function auth.record_failed_phone_login(text, inet) is
  'Audits a phone + password sign-in that failed verification, and tells the password_verification_attempt hook.';
grant execute on function auth.record_failed_phone_login(text, inet) to authgres_service;

create or replace function auth._start_phone_change(p_user auth.users, p_phone text, p_channel text, p_ip inet)
  returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_phone text := auth._normalize_phone(p_phone);
  v_user auth.users;
begin
  if v_phone is not distinct from p_user.phone then
    return '{}';
  end if;
  if exists (select from auth.users where phone = v_phone and id <> p_user.id) then
    raise exception using errcode = 'AUP03', message = 'A user with this phone number has already been registered';
  end if;
  perform auth._throttle_sms(v_phone, 'phone_change');
  update auth.users set phone_change = v_phone where id = p_user.id returning * into v_user;
  delete from auth.one_time_tokens where user_id = p_user.id and token_type = 'phone_change';
  return auth._queue_sms(v_user, 'phone_change', v_phone, p_channel, true) - 'message_id';
end
$$;
comment on function auth._start_phone_change(auth.users, text, text, inet) is
  'PUT /user {phone}: records the new number and texts it a phone_change code, leased to the caller in {sms}.';

-- The SMS outbox, drained by the service (python/authgres/sms.py) as the mailer drains the email outbox.
create or replace function auth.claim_sms_outbox(p_limit integer default 10, p_lease_seconds integer default 60)
  returns setof auth.sms_outbox
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  return query
  update auth.sms_outbox o
     set status = 'sending', attempts = o.attempts + 1,
         leased_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_seconds)
   where o.id in (
     select d.id from auth.sms_outbox d
      where (d.status = 'pending' and d.next_attempt_at <= pg_catalog.now())
         or (d.status = 'sending' and d.leased_until <= pg_catalog.now())
      order by d.id
      limit p_limit
      for update skip locked)
  returning o.*;
end
$$;
comment on function auth.claim_sms_outbox(integer, integer) is 'Leases up to p_limit due texts to the calling sender.';
grant execute on function auth.claim_sms_outbox(integer, integer) to authgres_service;

create or replace function auth.complete_sms_outbox(p_id bigint, p_provider_message_id text default null) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  update auth.sms_outbox
     set status = 'sent', sent_at = pg_catalog.now(), leased_until = null, last_error = null,
         provider_message_id = pg_catalog.left(p_provider_message_id, 200), payload = payload - 'code'
   where id = p_id and status = 'sending';
end
$$;
comment on function auth.complete_sms_outbox(bigint, text) is
  'Marks a text sent, keeps the provider''s message id and removes the code from the outbox.';
grant execute on function auth.complete_sms_outbox(bigint, text) to authgres_service;

create or replace function auth.fail_sms_outbox(
  p_id bigint, p_error text, p_max_attempts integer default 8, p_retry_base_seconds double precision default 5
) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  update auth.sms_outbox
     set status = case when attempts >= p_max_attempts then 'dead' else 'pending' end,
         payload = case when attempts >= p_max_attempts then payload - 'code' else payload end,
         last_error = pg_catalog.left(p_error, 1000), leased_until = null,
         next_attempt_at = pg_catalog.now()
           + pg_catalog.make_interval(secs => least(p_retry_base_seconds * 2 ^ (attempts - 1), 3600))
   where id = p_id and status = 'sending';
end
$$;
comment on function auth.fail_sms_outbox(bigint, text, integer, double precision) is
  'Records a failed delivery the provider may accept later (it was down): retried with exponential backoff, '
  'dead (with last_error kept) after p_max_attempts.';
grant execute on function auth.fail_sms_outbox(bigint, text, integer, double precision) to authgres_service;

create or replace function auth.reject_sms_outbox(p_id bigint, p_error text) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_message auth.sms_outbox;
  v_user auth.users;
begin
  update auth.sms_outbox
     set status = 'dead', payload = payload - 'code', last_error = pg_catalog.left(p_error, 1000), leased_until = null
   where id = p_id and status = 'sending'
  returning * into v_message;
  if not found then
    return;
  end if;
  -- The code can never arrive: it dies, and what was made only for it goes with it.
  delete from auth.one_time_tokens where user_id = v_message.user_id and token_type = v_message.kind
                                     and relates_to = v_message.to_phone;
  if v_message.kind = 'phone_change' then
    update auth.users set phone_change = '', phone_change_sent_at = null
     where id = v_message.user_id and phone_change = v_message.to_phone;
  elsif v_message.pending_signup_id is not null then
    -- A deferred sign-up's text: no user was made, the pending sign-up (and its code) goes. Its code first,
    -- in the order a verification locks them.
    delete from auth.one_time_tokens where pending_signup_id = v_message.pending_signup_id;
    delete from auth.pending_signups where id = v_message.pending_signup_id;
  elsif v_message.created_user then
    delete from auth.users
     where id = v_message.user_id and phone = v_message.to_phone and phone_confirmed_at is null
       and email is null and last_sign_in_at is null
    returning * into v_user;
    if found then
      perform auth._audit(v_user, 'user_deleted', 'user', null, '{"reason": "sms_refused"}');
    end if;
  end if;
end
$$;
comment on function auth.reject_sms_outbox(bigint, text) is
  'Records that the provider refused a text (a number it will not deliver to): dead at once with the provider''s '
  'error, its code void, a pending phone change dropped, and a user created for it (never confirmed, never '
  'signed in) or the deferred sign-up it was texted for removed, so that no half-made user is left.';
grant execute on function auth.reject_sms_outbox(bigint, text) to authgres_service;

create or replace function auth.sms_outbox_stats(
  out pending bigint, out sending bigint, out dead bigint, out oldest_seconds double precision
)
  language sql stable security definer
  set search_path = ''
as $$
  -- As auth.outbox_stats(): both counts read partial indexes (sms_outbox_due_idx, sms_outbox_dead_idx).
  select pg_catalog.count(*) filter (where o.status = 'pending'),
         pg_catalog.count(*) filter (where o.status = 'sending'),
         (select pg_catalog.count(*) from auth.sms_outbox d where d.status = 'dead'),
         coalesce(extract(epoch from pg_catalog.now() - pg_catalog.min(o.created_at))::double precision, 0)
    from auth.sms_outbox o
   where o.status in ('pending', 'sending');
$$;
comment on function auth.sms_outbox_stats() is
  'For the metrics: texts pending, being sent and dead, and the age in seconds of the oldest not yet sent (0 when none).';
grant execute on function auth.sms_outbox_stats() to authgres_service;
