-- 0005: one-time email tokens, the email outbox, send throttles, and the flows built on them:
-- sign-up confirmation, passwordless sign-in (code and magic link in one email), recovery, resend,
-- reauthentication and email change.
--
-- One mechanism for every emailed secret. Each email carries a code of mailer_otp_length digits and a
-- link token; the link token is GoTrue's token_hash, hex SHA-224(address || code), so the official
-- clients' verifyOtp({token_hash, type}) works. The table keeps only SHA-256 of that link token, so
-- neither the code nor the link can be used from a copy of the database without guessing. A token is
-- single-use, expires after mailer_otp_exp seconds, and dies after mailer_otp_max_attempts wrong codes.
-- Issuing a token and queueing its email happen in one transaction; the service's mailer delivers the
-- outbox afterwards, so an email is never sent for a rolled-back change nor lost when SMTP is down.
--
-- Error codes added here (see 0004 for the others):
--   AUO01 otp_expired (403)                     AUL01 over_email_send_rate_limit (429)
--   AUL02 over_request_rate_limit (429)
--   AUE01 email_exists (422)                    AUE02 reauthentication_needed (400)
--   AUE03 reauthentication_not_valid (422)      AUE04 email_not_confirmed (422)
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0005');

alter table auth.settings
  add column mailer_otp_exp integer not null default 3600 check (mailer_otp_exp > 0),
  add column mailer_otp_length integer not null default 6 check (mailer_otp_length between 6 and 10),
  add column mailer_otp_max_attempts integer not null default 5 check (mailer_otp_max_attempts > 0),
  add column mailer_secure_email_change boolean not null default true,
  add column smtp_max_frequency integer not null default 60 check (smtp_max_frequency >= 0),
  add column rate_limit_email_per_address integer not null default 30 check (rate_limit_email_per_address >= 0),
  add column rate_limit_email_per_ip integer not null default 100 check (rate_limit_email_per_ip >= 0),
  add column secure_password_change boolean not null default false;
comment on column auth.settings.smtp_max_frequency is
  'Minimum seconds between two emails of one kind to one address.';
comment on column auth.settings.rate_limit_email_per_address is 'Emails per hour to one address.';
comment on column auth.settings.rate_limit_email_per_ip is 'Emails per hour requested from one client IP.';
comment on column auth.settings.secure_password_change is
  'A password change needs a reauthentication nonce when the session is older than 24 hours.';

alter table auth.users
  add column email_change_confirm_status smallint not null default 0 check (email_change_confirm_status between 0 and 2);
comment on column auth.users.email_change_confirm_status is 'How many of the two email-change confirmations arrived.';

create table auth.one_time_tokens (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  token_type text not null check (token_type in (
    'confirmation', 'invite', 'magiclink', 'recovery', 'email_change_current', 'email_change_new',
    'reauthentication')),
  token_digest bytea not null,
  relates_to text not null,
  redirect_to text,
  attempts integer not null default 0,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  unique (user_id, token_type)
);
comment on table auth.one_time_tokens is
  'Emailed secrets, one live per user and purpose. Deleted when used, replaced when re-issued.';
comment on column auth.one_time_tokens.token_digest is
  'SHA-256 of the link token (hex SHA-224 of relates_to || code). Neither the code nor the link token is stored.';
comment on column auth.one_time_tokens.relates_to is 'The address the token was sent to.';
comment on column auth.one_time_tokens.attempts is 'Wrong codes presented so far.';
create index one_time_tokens_digest_idx on auth.one_time_tokens (token_digest);
create index one_time_tokens_relates_to_idx on auth.one_time_tokens (relates_to, token_type);
alter table auth.one_time_tokens enable row level security;

create table auth.email_outbox (
  id bigserial primary key,
  kind text not null,
  to_address text not null,
  user_id uuid references auth.users (id) on delete set null,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'sending', 'sent', 'dead')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  leased_until timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz
);
comment on table auth.email_outbox is
  'Emails to deliver, written in the transaction that needs them. pending -> sending (leased to one '
  'mailer) -> sent, or back to pending with a later next_attempt_at, or dead after the last attempt.';
comment on column auth.email_outbox.payload is
  'Template variables. The code and link token are removed once the email is sent or given up.';
create index email_outbox_due_idx on auth.email_outbox (next_attempt_at, id) where status in ('pending', 'sending');
alter table auth.email_outbox enable row level security;

create table auth.rate_limits (
  key text primary key,
  window_started_at timestamptz not null,
  hits integer not null
);
comment on table auth.rate_limits is 'Fixed-window counters shared by every service process (key: what is limited).';
alter table auth.rate_limits enable row level security;

-------------------------------------------------------------------------------------------------------
-- Helpers.
-------------------------------------------------------------------------------------------------------
create function auth._throttle(
  p_key text, p_limit integer, p_window interval, p_errcode text default 'AUL01'
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_row auth.rate_limits;
begin
  insert into auth.rate_limits as r (key, window_started_at, hits)
  values (p_key, pg_catalog.now(), 1)
  on conflict (key) do update
     set window_started_at = case when r.window_started_at + p_window <= pg_catalog.now()
                                  then pg_catalog.now() else r.window_started_at end,
         hits = case when r.window_started_at + p_window <= pg_catalog.now() then 1 else r.hits + 1 end
  returning * into v_row;
  if v_row.hits > p_limit then
    raise exception using errcode = p_errcode,
      message = 'For security purposes, you can only request this after '
        || pg_catalog.ceil(extract(epoch from v_row.window_started_at + p_window - pg_catalog.now()))::integer
        || ' seconds.',
      detail = pg_catalog.ceil(extract(epoch from v_row.window_started_at + p_window - pg_catalog.now()))::integer::text;
  end if;
end
$$;
comment on function auth._throttle(text, integer, interval, text) is
  'Counts one hit on p_key; raises p_errcode (detail: seconds to wait) past p_limit hits per window.';

create function auth._throttle_email(p_address text, p_kind text, p_ip inet) returns void
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

create function auth._link_token(p_address text, p_code text) returns text
  language sql stable parallel safe
  return pg_catalog.encode(pg_catalog.sha224(pg_catalog.convert_to(p_address || p_code, 'UTF8')), 'hex');
comment on function auth._link_token(text, text) is 'GoTrue''s token_hash: hex SHA-224 of address || code.';

create function auth._issue_token(
  p_user auth.users, p_token_type text, p_address text, p_redirect_to text,
  out code text, out link_token text
)
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
begin
  select * into v_settings from auth.settings;
  code := pg_catalog.lpad(
    ((('x' || pg_catalog.encode(auth._random_bytes(7), 'hex'))::bit(56)::bigint
      % (10::bigint ^ v_settings.mailer_otp_length)::bigint))::text,
    v_settings.mailer_otp_length, '0');
  link_token := auth._link_token(p_address, code);
  insert into auth.one_time_tokens as t (user_id, token_type, token_digest, relates_to, redirect_to, expires_at)
  values (p_user.id, p_token_type, auth._token_hash(link_token), p_address, p_redirect_to,
          pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mailer_otp_exp))
  on conflict (user_id, token_type) do update
     set token_digest = excluded.token_digest, relates_to = excluded.relates_to,
         redirect_to = excluded.redirect_to, attempts = 0, created_at = excluded.created_at,
         expires_at = excluded.expires_at;
end
$$;
comment on function auth._issue_token(auth.users, text, text, text) is
  'Issues a fresh token of p_token_type (replacing any live one); the code and link token are returned, never stored.';

create function auth._verification_type(p_token_type text) returns text
  language sql immutable parallel safe
  return case p_token_type when 'confirmation' then 'signup'
                           when 'email_change_current' then 'email_change'
                           when 'email_change_new' then 'email_change'
                           else p_token_type end;
comment on function auth._verification_type(text) is 'The verify type a token of this kind is presented with.';

create function auth._queue_email(
  p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_extra jsonb default '{}'
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_token record;
  v_payload jsonb;
begin
  select * into v_settings from auth.settings;
  select * into v_token from auth._issue_token(p_user, p_token_type, p_address, p_redirect_to);
  v_payload := pg_catalog.jsonb_build_object(
      'token', v_token.code,
      'token_hash', v_token.link_token,
      'email', p_address,
      'redirect_to', coalesce(p_redirect_to, v_settings.site_url),
      'site_url', v_settings.site_url,
      'data', p_user.raw_user_meta_data,
      'verify_type', auth._verification_type(p_token_type)) || p_extra;
  if v_settings.hook_send_email is not null then
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
comment on function auth._queue_email(auth.users, text, text, text, jsonb) is
  'Issues a fresh token of p_token_type and queues its email, in the caller''s transaction.';

create function auth._confirm_email(p_user auth.users) returns auth.users
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

create function auth._new_email_user(p_email text, p_password_hash text, p_data jsonb, p_ip inet)
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

create function auth._equal_keyed(p_left bytea, p_right bytea) returns boolean
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

-------------------------------------------------------------------------------------------------------
-- Flows.
-------------------------------------------------------------------------------------------------------
create function auth.sign_up(
  p_email text, p_password_hash text, p_data jsonb default '{}', p_redirect_to text default null,
  p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
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
  end if;

  v_user := auth._new_email_user(v_email, p_password_hash, p_data, p_ip);
  if v_user.id is null then
    if v_settings.mailer_autoconfirm then
      raise exception using errcode = 'AUS01', message = 'User already registered';
    end if;
    select * into strict v_user from auth.users where email = v_email and not is_sso_user;
    if v_user.email_confirmed_at is null then
      perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to);
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
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to);
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
comment on function auth.sign_up(text, text, jsonb, text, text, inet) is
  'Email + password sign-up. Autoconfirm: a new user and a session, or AUS01 for a taken address. '
  'Otherwise the unconfirmed user with a confirmation email queued (a look-alike without identities '
  'when the address is already confirmed).';

create function auth.send_magic_link(
  p_email text, p_create_user boolean default true, p_data jsonb default '{}',
  p_redirect_to text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  perform auth._throttle_email(v_email, 'magiclink', p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if not found then
    -- Unknown address without permission to create it: nothing to send, and the caller is not told.
    if not p_create_user or v_settings.disable_signup then
      return '{}';
    end if;
    v_user := auth._new_email_user(v_email, null, p_data, p_ip);
    if v_user.id is null then
      return '{}';
    end if;
  end if;
  if v_user.email_confirmed_at is null then
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to);
  else
    perform auth._queue_email(v_user, 'magiclink', v_email, p_redirect_to);
  end if;
  return '{}';
end
$$;
comment on function auth.send_magic_link(text, boolean, jsonb, text, inet) is
  'POST /otp and /magiclink: emails a sign-in code and link (a confirmation for an unconfirmed or new '
  'user). Always {} so that the answer does not tell whether the address is registered.';

create function auth.send_recovery(p_email text, p_redirect_to text default null, p_ip inet default null)
  returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
begin
  perform auth._throttle_email(v_email, 'recovery', p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if found then
    perform auth._queue_email(v_user, 'recovery', v_email, p_redirect_to);
    perform auth._audit(v_user, 'user_recovery_requested', 'user', p_ip);
  end if;
  return '{}';
end
$$;
comment on function auth.send_recovery(text, text, inet) is 'POST /recover: emails a recovery code and link; always {}.';

create function auth.resend(p_type text, p_email text, p_redirect_to text default null, p_ip inet default null)
  returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
begin
  if p_type not in ('signup', 'email_change') then
    raise exception using errcode = 'AUV01', message = 'Missing one of these types: signup, email_change';
  end if;
  perform auth._throttle_email(v_email, 'resend-' || p_type, p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if not found then
    return '{}';
  end if;
  if p_type = 'signup' and v_user.email_confirmed_at is null then
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to);
  elsif p_type = 'email_change' and v_user.email_change <> '' then
    if exists (select from auth.one_time_tokens where user_id = v_user.id and token_type = 'email_change_current') then
      perform auth._queue_email(v_user, 'email_change_current', v_user.email, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_user.email_change));
    end if;
    if exists (select from auth.one_time_tokens where user_id = v_user.id and token_type = 'email_change_new') then
      perform auth._queue_email(v_user, 'email_change_new', v_user.email_change, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_user.email_change));
    end if;
  end if;
  return '{}';
end
$$;
comment on function auth.resend(text, text, text, inet) is
  'POST /resend: re-sends a pending sign-up confirmation or email change; always {}.';

create function auth.reauthenticate(p_access_token text, p_ip inet default null) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users := (auth._authorize(p_access_token, true)).usr;
begin
  if v_user.email is null then
    raise exception using errcode = 'AUV01', message = 'Reauthentication requires an email address';
  end if;
  if v_user.email_confirmed_at is null then
    raise exception using errcode = 'AUE04', message = 'Please verify your email first.';
  end if;
  perform auth._throttle_email(v_user.email, 'reauthentication', p_ip);
  perform auth._queue_email(v_user, 'reauthentication', v_user.email, null);
  return '{}';
end
$$;
comment on function auth.reauthenticate(text, inet) is
  'GET /reauthenticate: emails the signed-in user a nonce that PUT /user accepts for a password change.';

create function auth._verify_error(p_message text) returns jsonb
  language sql immutable parallel safe
  return pg_catalog.jsonb_build_object('error', 'AUO01', 'message', p_message);
comment on function auth._verify_error(text) is
  'A failed verification, returned rather than raised so that the attempt it counted commits.';

create function auth.verify_email_token(
  p_type text, p_email text default null, p_code text default null, p_token_hash text default null,
  p_user_agent text default null, p_ip inet default null
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
  v_digest bytea;
  v_found boolean := false;
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
     where token_digest = auth._token_hash(pg_catalog.lower(p_token_hash)) and token_type = any (v_types)
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
    v_digest := auth._token_hash(auth._link_token(v_email, pg_catalog.btrim(p_code)));
    -- Lock the candidates first: concurrent guesses queue here, so the attempt count stays exact.
    for v_token in
      select * from auth.one_time_tokens
       where relates_to = v_email and token_type = any (v_types)
       order by created_at desc
       for update
    loop
      if v_token.expires_at > pg_catalog.now() and auth._equal_keyed(v_token.token_digest, v_digest) then
        v_found := true;
        exit;
      end if;
    end loop;
    if not v_found then
      update auth.one_time_tokens set attempts = attempts + 1
       where relates_to = v_email and token_type = any (v_types) and expires_at > pg_catalog.now();
      delete from auth.one_time_tokens
       where relates_to = v_email and token_type = any (v_types)
         and (attempts >= v_settings.mailer_otp_max_attempts or expires_at <= pg_catalog.now());
      return auth._verify_error('Token has expired or is invalid');
    end if;
  end if;

  delete from auth.one_time_tokens where id = v_token.id;
  select * into strict v_user from auth.users where id = v_token.user_id;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;

  if v_token.token_type like 'email_change%' then
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

  delete from auth.one_time_tokens
   where user_id = v_user.id and token_type in ('confirmation', 'invite', 'magiclink', 'recovery');
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', 'email', 'via', v_token.token_type));
  return auth._start_session(v_user, 'otp', p_user_agent, p_ip)
    || pg_catalog.jsonb_build_object('redirect_to', v_token.redirect_to, 'verification_type', v_token.token_type);
end
$$;
comment on function auth.verify_email_token(text, text, text, text, text, inet) is
  'POST/GET /verify: consumes an emailed token (by address + code, or by link token) and signs the user '
  'in, in one transaction. Wrong codes count against the token; the failure is returned as '
  '{"error": "AUO01"} so that the count commits. The response also names the token''s redirect_to.';

create function auth.update_user(
  p_access_token text, p_data jsonb default null, p_password_hash text default null,
  p_email text default null, p_nonce text default null, p_redirect_to text default null,
  p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_auth record;
  v_user auth.users;
  v_email text;
  v_nonce auth.one_time_tokens;
begin
  select * into v_settings from auth.settings;
  select * into v_auth from auth._authorize(p_access_token, true);
  v_user := v_auth.usr;
  if p_data is not null then
    if pg_catalog.jsonb_typeof(p_data) <> 'object' then
      raise exception using errcode = 'AUV01', message = 'data must be a JSON object';
    end if;
    update auth.users
       set raw_user_meta_data = auth._merge_metadata(raw_user_meta_data, p_data),
           updated_at = pg_catalog.now()
     where id = v_user.id
    returning * into v_user;
    perform auth._audit(v_user, 'user_modified', 'user', p_ip);
  end if;

  if p_password_hash is not null then
    if v_user.is_anonymous and v_user.email is null and v_user.phone is null then
      raise exception using errcode = 'AUV02',
        message = 'Updating password of an anonymous user without an email or phone is not allowed';
    end if;
    if p_nonce is not null or (v_settings.secure_password_change
        and coalesce((v_auth.sess).created_at, '-infinity') < pg_catalog.now() - interval '24 hours') then
      if p_nonce is null then
        raise exception using errcode = 'AUE02', message = 'Password update requires reauthentication';
      end if;
      select * into v_nonce from auth.one_time_tokens
       where user_id = v_user.id and token_type = 'reauthentication' for update;
      if not found or v_nonce.expires_at <= pg_catalog.now() or not auth._equal_keyed(
           v_nonce.token_digest, auth._token_hash(auth._link_token(v_nonce.relates_to, pg_catalog.btrim(p_nonce)))) then
        raise exception using errcode = 'AUE03', message = 'Nonce has expired or is invalid';
      end if;
      delete from auth.one_time_tokens where id = v_nonce.id;
    end if;
    update auth.users set encrypted_password = p_password_hash, updated_at = pg_catalog.now()
     where id = v_user.id
    returning * into v_user;
    -- A new password ends every other sign-in: whoever knew the old one is logged out.
    delete from auth.sessions where user_id = v_user.id and id is distinct from (v_auth.sess).id;
    perform auth._audit(v_user, 'user_updated_password', 'user', p_ip);
  end if;

  if p_email is not null then
    v_email := auth._normalize_email(p_email);
    if v_email is distinct from v_user.email then
      if exists (select from auth.users where email = v_email and id <> v_user.id) then
        raise exception using errcode = 'AUE01', message = 'A user with this email address has already been registered';
      end if;
      perform auth._throttle_email(v_email, 'email_change', p_ip);
      update auth.users set email_change = v_email, email_change_confirm_status = 0 where id = v_user.id
      returning * into v_user;
      delete from auth.one_time_tokens
       where user_id = v_user.id and token_type in ('email_change_current', 'email_change_new');
      if v_settings.mailer_secure_email_change and v_user.email is not null then
        perform auth._queue_email(v_user, 'email_change_current', v_user.email, p_redirect_to,
                                  pg_catalog.jsonb_build_object('new_email', v_email));
      end if;
      perform auth._queue_email(v_user, 'email_change_new', v_email, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_email));
      select * into strict v_user from auth.users where id = v_user.id;
    end if;
  end if;
  return auth._user_json(v_user);
end
$$;
comment on function auth.update_user(text, jsonb, text, text, text, text, inet) is
  'PUT /user: merges user metadata (null removes a key); sets a new password hash, ending the user''s '
  'other sessions (with a reauthentication nonce when required); starts an email change, confirmed '
  'from both addresses when mailer_secure_email_change.';

-------------------------------------------------------------------------------------------------------
-- The outbox, as the mailer sees it.
-------------------------------------------------------------------------------------------------------
create function auth.claim_outbox(p_limit integer default 10, p_lease_seconds integer default 60)
  returns setof auth.email_outbox
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  -- SKIP LOCKED lets several mailers drain one outbox; the lease hands an email whose mailer died
  -- mid-send to another one later.
  return query
  update auth.email_outbox o
     set status = 'sending', attempts = o.attempts + 1,
         leased_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_seconds)
   where o.id in (
     select d.id from auth.email_outbox d
      where (d.status = 'pending' and d.next_attempt_at <= pg_catalog.now())
         or (d.status = 'sending' and d.leased_until <= pg_catalog.now())
      order by d.id
      limit p_limit
      for update skip locked)
  returning o.*;
end
$$;
comment on function auth.claim_outbox(integer, integer) is 'Leases up to p_limit due emails to the calling mailer.';

create function auth.complete_outbox(p_id bigint) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  update auth.email_outbox
     set status = 'sent', sent_at = pg_catalog.now(), leased_until = null, last_error = null,
         payload = payload - 'token' - 'token_hash'
   where id = p_id and status = 'sending';
end
$$;
comment on function auth.complete_outbox(bigint) is 'Marks an email sent and removes its secrets from the outbox.';

create function auth.fail_outbox(
  p_id bigint, p_error text, p_max_attempts integer default 8, p_retry_base_seconds double precision default 5
) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  update auth.email_outbox
     set status = case when attempts >= p_max_attempts then 'dead' else 'pending' end,
         payload = case when attempts >= p_max_attempts then payload - 'token' - 'token_hash' else payload end,
         last_error = pg_catalog.left(p_error, 1000), leased_until = null,
         next_attempt_at = pg_catalog.now()
           + pg_catalog.make_interval(secs => least(p_retry_base_seconds * 2 ^ (attempts - 1), 3600))
   where id = p_id and status = 'sending';
end
$$;
comment on function auth.fail_outbox(bigint, text, integer, double precision) is
  'Records a failed delivery: retried with exponential backoff, dead (with last_error kept) after p_max_attempts.';

grant execute on function
  auth.sign_up(text, text, jsonb, text, text, inet),
  auth.send_magic_link(text, boolean, jsonb, text, inet),
  auth.send_recovery(text, text, inet),
  auth.resend(text, text, text, inet),
  auth.reauthenticate(text, inet),
  auth.verify_email_token(text, text, text, text, text, inet),
  auth.update_user(text, jsonb, text, text, text, text, inet),
  auth.claim_outbox(integer, integer),
  auth.complete_outbox(bigint),
  auth.fail_outbox(bigint, text, integer, double precision)
  to authgres_service;
