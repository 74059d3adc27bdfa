-- mfa.sql: multi-factor authentication: TOTP (RFC 6238), email as a second step, recovery codes,
-- aal2 sessions.
--
-- A session is aal2 once a factor was verified in it; access tokens carry the session's aal and amr,
-- and refreshing keeps them. Verifying the first factor ends the user's other aal1 sessions. Codes
-- are attempt-limited per challenge and a TOTP code works once per time step.
set local role authgres_owner;

create or replace function auth.hotp(p_secret bytea, p_counter bigint, p_digits integer default 6, p_algorithm text default 'sha1')
  returns text
  language plpgsql immutable strict parallel safe
  set search_path = ''
as $$
declare
  v_hash bytea := auth._hmac(pg_catalog.int8send(p_counter), p_secret, p_algorithm);
  v_offset integer := pg_catalog.get_byte(v_hash, pg_catalog.length(v_hash) - 1) & 15;
  v_binary bigint;
begin
  v_binary := ((pg_catalog.get_byte(v_hash, v_offset) & 127)::bigint << 24)
            | (pg_catalog.get_byte(v_hash, v_offset + 1)::bigint << 16)
            | (pg_catalog.get_byte(v_hash, v_offset + 2)::bigint << 8)
            | pg_catalog.get_byte(v_hash, v_offset + 3)::bigint;
  return pg_catalog.lpad((v_binary % (10::bigint ^ p_digits)::bigint)::text, p_digits, '0');
end
$$;
comment on function auth.hotp(bytea, bigint, integer, text) is 'RFC 4226 HOTP code for a counter (sha1, sha256 or sha512).';
grant execute on function auth.hotp(bytea, bigint, integer, text) to authgres_service;

create or replace function auth.totp(
  p_secret bytea, p_at timestamptz default now(), p_digits integer default 6, p_period integer default 30,
  p_algorithm text default 'sha1'
) returns text
  language sql stable parallel safe
  return auth.hotp(p_secret, pg_catalog.floor(extract(epoch from p_at) / p_period)::bigint, p_digits, p_algorithm);
comment on function auth.totp(bytea, timestamptz, integer, integer, text) is 'RFC 6238 TOTP code at a time.';
grant execute on function auth.totp(bytea, timestamptz, integer, integer, text) to authgres_service;

create or replace function auth._factor_json(p_factor auth.mfa_factors) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
begin
  return pg_catalog.jsonb_build_object(
    'id', p_factor.id, 'friendly_name', p_factor.friendly_name, 'factor_type', p_factor.factor_type,
    'status', p_factor.status, 'created_at', p_factor.created_at, 'updated_at', p_factor.updated_at,
    'last_challenged_at', p_factor.last_challenged_at, 'phone', coalesce(p_factor.phone, ''));
end
$$;
comment on function auth._factor_json(auth.mfa_factors) is 'A factor as GoTrue serialises it (never its secret).';

create or replace function auth._mfa_user(p_access_token text, out usr auth.users, out sess auth.sessions)
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_auth record;
begin
  select * into v_auth from auth._authorize(p_access_token, true);
  usr := v_auth.usr;
  sess := v_auth.sess;
  if usr.is_anonymous then
    raise exception using errcode = 'AUM09', message = 'Anonymous user not allowed to perform these actions';
  end if;
  if sess.id is null then
    raise exception using errcode = 'AUJ04', message = 'Session from session_id claim in JWT does not exist';
  end if;
end
$$;
comment on function auth._mfa_user(text) is 'The signed-in, non-anonymous user and session behind an MFA request.';

create or replace function auth._lock_for_second_factor(p_user auth.users, p_session auth.sessions)
  returns auth.sessions
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_session auth.sessions;
begin
  -- The user first: a verification ends the user's other aal1 sessions, so two of them at once (two
  -- devices) would each hold its own session and wait for the other's. Then the session, which
  -- refreshes read the aal of.
  perform from auth.users where id = p_user.id for no key update;
  select * into v_session from auth.sessions where id = p_session.id for no key update;
  if not found then  -- ended meanwhile, by the verification that went first
    raise exception using errcode = 'AUJ04', message = 'Session from session_id claim in JWT does not exist';
  end if;
  return v_session;
end
$$;
comment on function auth._lock_for_second_factor(auth.users, auth.sessions) is
  'Locks the user, then the session a second factor is verified in (AUJ04 when it ended meanwhile).';

create or replace function auth._factor_of(p_user_id uuid, p_factor_id uuid) returns auth.mfa_factors
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_factor auth.mfa_factors;
begin
  select * into v_factor from auth.mfa_factors where id = p_factor_id and user_id = p_user_id;
  if not found then
    raise exception using errcode = 'AUM01', message = 'Factor not found';
  end if;
  return v_factor;
end
$$;
comment on function auth._factor_of(uuid, uuid) is 'The user''s factor, or AUM01.';

create or replace function auth._canonical_recovery_code(p_code text) returns text
  language sql immutable
  return pg_catalog.lower(pg_catalog.regexp_replace(coalesce(p_code, ''), '[\s-]', '', 'g'));
comment on function auth._canonical_recovery_code(text) is
  'A recovery code as typed, in its canonical form: lowercase, without whitespace or - separators.';

create or replace function auth._recovery_code_lock_key(p_user_id uuid) returns text
  language sql immutable
  return 'recovery-code-failures:' || p_user_id;
comment on function auth._recovery_code_lock_key(uuid) is
  'The auth.rate_limits key counting a user''s wrong recovery codes (POST /factors/recovery-codes/verify).';

create or replace function auth._recovery_factor(p_user_id uuid) returns auth.mfa_factors
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_factor auth.mfa_factors;
begin
  select * into v_factor from auth.mfa_factors where user_id = p_user_id and factor_type = 'recovery_code';
  if not found then
    raise exception using errcode = 'AUM01', message = 'No recovery codes found for this user';
  end if;
  return v_factor;
end
$$;
comment on function auth._recovery_factor(uuid) is 'The user''s recovery_code factor, or AUM01.';

create or replace function auth._issue_recovery_codes(p_user auth.users, p_mode text, p_friendly_name text default null)
  returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  -- 32 symbols without look-alikes (no l, o, 0, 1): each random byte picks one without bias.
  v_alphabet constant text := 'abcdefghijkmnpqrstuvwxyz23456789';
  v_factor auth.mfa_factors;
  v_codes text[] := '{}';
  v_code text;
  v_bytes bytea;
  v_exists boolean;
  v_constraint text;
begin
  v_exists := exists (select from auth.mfa_factors where user_id = p_user.id and factor_type = 'recovery_code');
  if not v_exists then
    begin
      insert into auth.mfa_factors (user_id, friendly_name, factor_type, status)
      values (p_user.id, coalesce(nullif(pg_catalog.btrim(p_friendly_name), ''), 'Recovery codes'),
              'recovery_code', 'verified')
      returning * into v_factor;
      perform auth._user_event(p_user.id, 'factor_changed',
                               pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'enrolled'));
    exception when unique_violation then
      get stacked diagnostics v_constraint = constraint_name;
      if v_constraint <> 'mfa_factors_one_recovery_code_set_key' then
        raise exception using errcode = 'AUM04',
          message = pg_catalog.format('A factor with the friendly name "%s" for this user already exists', p_friendly_name);
      end if;
      v_exists := true;  -- made meanwhile, by another request
    end;
  end if;
  if v_exists and p_mode = 'generate' then
    raise exception using errcode = 'AUM18', message = 'Recovery codes already exist; regenerate them instead';
  end if;
  if v_exists then
    update auth.mfa_factors set updated_at = pg_catalog.now()
     where user_id = p_user.id and factor_type = 'recovery_code'
    returning * into v_factor;
  end if;
  delete from auth.mfa_recovery_codes where user_id = p_user.id;
  delete from auth.rate_limits where key = auth._recovery_code_lock_key(p_user.id);
  for n in 1 .. 10 loop
    v_bytes := auth._random_bytes(16);
    v_code := '';
    for i in 0 .. 15 loop
      v_code := v_code || pg_catalog.substr(v_alphabet, (pg_catalog.get_byte(v_bytes, i) & 31) + 1, 1);
    end loop;
    v_codes := v_codes || v_code;
    insert into auth.mfa_recovery_codes (user_id, code_digest) values (p_user.id, auth._token_hash(v_code));
  end loop;
  perform auth._audit(p_user, 'recovery_codes_generated', 'user', null,
                      pg_catalog.jsonb_build_object('factor_id', v_factor.id));
  return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'recovery_code', 'friendly_name', v_factor.friendly_name,
                                       'total', 10, 'codes', pg_catalog.to_jsonb(v_codes));
end
$$;
comment on function auth._issue_recovery_codes(auth.users, text, text) is
  'A new set of 10 recovery codes (16 symbols, 80 bits; canonical form), the only time they are seen: p_mode '
  'generate makes the user''s recovery_code factor (AUM18 when there is one); any other (regenerate, replace) '
  'also replaces the codes of one, its id and name kept. The old set dies and its lockout ends.';

create or replace function auth._use_recovery_code(p_user auth.users, p_code text, p_ip inet) returns boolean
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_code text := auth._canonical_recovery_code(p_code);
  v_digest bytea := auth._token_hash(v_code);
  -- Codes made before 0023 were stored as shown, in groups of four.
  v_grouped bytea := auth._token_hash(pg_catalog.regexp_replace(v_code, '^(.{4})(.{4})(.{4})(.{4})$', '\1-\2-\3-\4'));
  v_row auth.mfa_recovery_codes;
begin
  if v_code = '' then
    return false;
  end if;
  for v_row in
    select * from auth.mfa_recovery_codes where user_id = p_user.id and used_at is null for update
  loop
    if auth._equal_keyed(v_row.code_digest, v_digest) or auth._equal_keyed(v_row.code_digest, v_grouped) then
      update auth.mfa_recovery_codes set used_at = pg_catalog.now() where id = v_row.id;
      perform auth._audit(p_user, 'recovery_code_used', 'user', p_ip, pg_catalog.jsonb_build_object(
        'remaining', (select pg_catalog.count(*) from auth.mfa_recovery_codes
                       where user_id = p_user.id and used_at is null)));
      return true;
    end if;
  end loop;
  return false;
end
$$;
comment on function auth._use_recovery_code(auth.users, text, inet) is
  'Spends one unused recovery code matching p_code (case, whitespace and - separators ignored).';

create or replace function auth._totp_step_accepted(p_factor auth.mfa_factors, p_code text) returns bigint
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_now bigint := pg_catalog.floor(extract(epoch from pg_catalog.now()) / 30)::bigint;
begin
  -- One step of clock drift either way; a step already used (or older) is refused.
  for v_step in v_now - 1 .. v_now + 1 loop
    if v_step > coalesce(p_factor.last_used_step, -1)
       and auth._equal_keyed(pg_catalog.convert_to(auth.hotp(p_factor.secret, v_step), 'UTF8'),
                             pg_catalog.convert_to(pg_catalog.btrim(p_code), 'UTF8')) then
      return v_step;
    end if;
  end loop;
  return null;
end
$$;
comment on function auth._totp_step_accepted(auth.mfa_factors, text) is
  'The time step whose TOTP code p_code is, within one step of now and after the last used one; else NULL.';

-- Only asked once a code was refused, to tell the user why: it cannot make a spent step count again.
create or replace function auth._totp_step_spent(p_factor auth.mfa_factors, p_code text) returns boolean
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_now bigint := pg_catalog.floor(extract(epoch from pg_catalog.now()) / 30)::bigint;
begin
  if p_factor.last_used_step is null then
    return false;
  end if;
  for v_step in v_now - 1 .. least(v_now + 1, p_factor.last_used_step) loop
    if auth._equal_keyed(pg_catalog.convert_to(auth.hotp(p_factor.secret, v_step), 'UTF8'),
                         pg_catalog.convert_to(pg_catalog.btrim(p_code), 'UTF8')) then
      return true;
    end if;
  end loop;
  return false;
end
$$;
comment on function auth._totp_step_spent(auth.mfa_factors, text) is
  'Whether p_code is the TOTP code of a time step within the window that was already used.';

create or replace function auth._session_of(p_response jsonb) returns uuid
  language sql stable
  return (select r.session_id from auth.refresh_tokens r
           where r.token_hash = auth._token_hash(p_response ->> 'refresh_token'));
comment on function auth._session_of(jsonb) is 'The session a token response was issued for.';

create or replace function auth._issue_mfa_email(p_user auth.users, p_factor auth.mfa_factors, p_session_id uuid, p_ip inet)
  returns auth.mfa_challenges
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_challenge auth.mfa_challenges;
begin
  select * into v_settings from auth.settings;
  -- Only the hourly budget: the password was right, and a second sign-in within a minute is normal.
  perform auth._throttle('email-hour:' || p_user.email, v_settings.rate_limit_email_per_address, interval '1 hour');
  perform auth._queue_email(p_user, 'mfa_email', p_user.email, null);
  insert into auth.mfa_challenges (factor_id, session_id, expires_at, ip_address, code_digest)
  values (p_factor.id, p_session_id, pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry),
          p_ip, (select t.token_digest from auth.one_time_tokens t
                  where t.user_id = p_user.id and t.token_type = 'mfa_email'))
  returning * into v_challenge;
  update auth.mfa_factors set last_challenged_at = pg_catalog.now() where id = p_factor.id;
  return v_challenge;
end
$$;
comment on function auth._issue_mfa_email(auth.users, auth.mfa_factors, uuid, inet) is
  'Emails a second-step code and records the challenge it answers.';

create or replace function auth._email_factor(p_user auth.users) returns auth.mfa_factors
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_factor auth.mfa_factors;
begin
  select * into v_factor from auth.mfa_factors where user_id = p_user.id and factor_type = 'email';
  if not found then
    insert into auth.mfa_factors (user_id, factor_type, status, friendly_name)
    values (p_user.id, 'email', 'verified', 'email')
    returning * into v_factor;
    perform auth._user_event(p_user.id, 'factor_changed',
                             pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'enrolled'));
  end if;
  return v_factor;
end
$$;
comment on function auth._email_factor(auth.users) is 'The user''s email factor, created (verified: the address is) when missing.';

create or replace function auth._needs_email_step(p_user auth.users) returns boolean
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_mode text := (select s.mfa_email from auth.settings s);
begin
  return p_user.email is not null and p_user.email_confirmed_at is not null and (
    v_mode = 'required'
    or (v_mode = 'optional' and exists (
          select from auth.mfa_factors where user_id = p_user.id and factor_type = 'email' and status = 'verified')));
end
$$;
comment on function auth._needs_email_step(auth.users) is 'Whether a password sign-in of this user continues with an emailed code.';

create or replace function auth._raise_session_aal(
  p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_method text
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_session auth.sessions;
  v_refresh_token text := auth.url_encode(auth._random_bytes(32));
begin
  update auth.sessions set aal = 'aal2', factor_id = p_factor.id, updated_at = pg_catalog.now()
   where id = p_session.id
  returning * into v_session;
  insert into auth.mfa_amr_claims (session_id, authentication_method) values (v_session.id, p_method)
  on conflict (session_id, authentication_method) do update set updated_at = pg_catalog.now();
  -- New tokens for the raised session; refresh tokens from before the second step are void.
  delete from auth.refresh_tokens where session_id = v_session.id;
  insert into auth.refresh_tokens (token_hash, user_id, session_id)
  values (auth._token_hash(v_refresh_token), p_user.id, v_session.id);
  return auth._session_response(p_user, v_session, v_refresh_token);
end
$$;
comment on function auth._raise_session_aal(auth.users, auth.sessions, auth.mfa_factors, text) is
  'Makes a session aal2 with p_method in its amr, and answers with fresh tokens for it.';

create or replace function auth.enroll_factor(
  p_access_token text, p_factor_type text, p_friendly_name text default null, p_ip inet default null,
  p_phone text default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_ctx record;
  v_factor auth.mfa_factors;
  v_abandoned uuid;
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  if p_factor_type = 'phone' and not v_settings.mfa_phone_enroll_enabled then
    raise exception using errcode = 'AUM11', message = 'MFA enroll is disabled for Phone';
  end if;
  if p_factor_type = 'webauthn' and not v_settings.mfa_web_authn_enabled then
    raise exception using errcode = 'AUM13', message = 'MFA enroll is disabled for WebAuthn';
  end if;
  if p_factor_type not in ('totp', 'email', 'phone', 'webauthn') or (p_factor_type = 'email' and v_settings.mfa_email = 'off') then
    raise exception using errcode = 'AUV01', message = 'factor_type needs to be totp'
      || case when v_settings.mfa_phone_enroll_enabled then ', phone' else '' end
      || case when v_settings.mfa_web_authn_enabled then ', webauthn' else '' end
      || case when v_settings.mfa_email = 'off' then '' else ' or email' end;
  end if;
  if exists (select from auth.mfa_factors where user_id = (v_ctx.usr).id and status = 'verified')
     and (v_ctx.sess).aal = 'aal1' then
    raise exception using errcode = 'AUM02', message = 'AAL2 required to enroll a new factor';
  end if;
  -- Unverified factors older than a challenge's lifetime were abandoned half-way.
  for v_abandoned in
    delete from auth.mfa_factors
     where user_id = (v_ctx.usr).id and status = 'unverified'
       and created_at < pg_catalog.now() - pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry)
    returning id
  loop
    perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                             pg_catalog.jsonb_build_object('factor_id', v_abandoned, 'action', 'removed'));
  end loop;
  if (select pg_catalog.count(*) from auth.mfa_factors where user_id = (v_ctx.usr).id)
     >= v_settings.mfa_max_enrolled_factors then
    raise exception using errcode = 'AUM05', message = 'Maximum number of verified factors reached, unenroll to continue';
  end if;
  if p_factor_type = 'email' then
    if (v_ctx.usr).email_confirmed_at is null then
      raise exception using errcode = 'AUE04', message = 'Please verify your email first.';
    end if;
    v_factor := auth._email_factor(v_ctx.usr);
    return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'email', 'friendly_name', v_factor.friendly_name);
  end if;
  begin
    if p_factor_type = 'phone' then
      insert into auth.mfa_factors (user_id, friendly_name, factor_type, phone)
      values ((v_ctx.usr).id, coalesce(p_friendly_name, ''), 'phone', auth._normalize_phone(p_phone))
      returning * into v_factor;
    else
      insert into auth.mfa_factors (user_id, friendly_name, factor_type, secret)
      values ((v_ctx.usr).id, coalesce(p_friendly_name, ''), p_factor_type,
              case p_factor_type when 'totp' then auth._random_bytes(20) end)
      returning * into v_factor;
    end if;
  exception when unique_violation then
    raise exception using errcode = 'AUM04',
      message = pg_catalog.format('A factor with the friendly name "%s" for this user already exists', p_friendly_name);
  end;
  perform auth._audit(v_ctx.usr, 'factor_enrolled', 'user', p_ip, pg_catalog.jsonb_build_object('factor_id', v_factor.id));
  perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                           pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'enrolled'));
  if p_factor_type = 'phone' then
    return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'phone', 'friendly_name', v_factor.friendly_name,
                                         'phone', v_factor.phone);
  end if;
  if p_factor_type = 'webauthn' then  -- its credential is registered by the first challenge's answer
    return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'webauthn', 'friendly_name', v_factor.friendly_name);
  end if;
  -- The secret leaves the database this once, for the QR code; the service formats it.
  return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'totp', 'friendly_name', v_factor.friendly_name,
                                       'secret', pg_catalog.encode(v_factor.secret, 'hex'), 'account', (v_ctx.usr).email);
end
$$;
comment on function auth.enroll_factor(text, text, text, inet, text) is
  'POST /factors: a new unverified TOTP factor (its secret returned once, hex), a phone factor for p_phone '
  '(AUM11 when mfa_phone_enroll_enabled is off), a WebAuthn factor (AUM13 when not enabled), or the email factor.';
grant execute on function auth.enroll_factor(text, text, text, inet, text) to authgres_service;

create or replace function auth.challenge_factor(
  p_access_token text, p_factor_id uuid, p_ip inet default null, p_channel text default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_ctx record;
  v_factor auth.mfa_factors;
  v_challenge auth.mfa_challenges;
  v_sent jsonb := '{}';
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_factor := auth._factor_of((v_ctx.usr).id, p_factor_id);
  if v_factor.factor_type = 'recovery_code' then
    raise exception using errcode = 'AUV01', message = 'Recovery codes are verified at POST /factors/recovery-codes/verify';
  end if;
  if v_factor.factor_type = 'email' then
    v_challenge := auth._issue_mfa_email(v_ctx.usr, v_factor, (v_ctx.sess).id, p_ip);
  elsif v_factor.factor_type = 'phone' then
    if not v_settings.mfa_phone_verify_enabled then
      raise exception using errcode = 'AUM12', message = 'MFA verification is disabled for Phone';
    end if;
    perform auth._throttle_sms(v_factor.phone, 'mfa_phone');
    v_sent := auth._queue_sms(v_ctx.usr, 'mfa_phone', v_factor.phone, p_channel, true) - 'message_id';
    insert into auth.mfa_challenges (factor_id, session_id, expires_at, ip_address, code_digest)
    values (v_factor.id, (v_ctx.sess).id,
            pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry), p_ip,
            (select t.token_digest from auth.one_time_tokens t where t.user_id = (v_ctx.usr).id and t.token_type = 'mfa_phone'))
    returning * into v_challenge;
    update auth.mfa_factors set last_challenged_at = pg_catalog.now() where id = v_factor.id;
  elsif v_factor.factor_type = 'webauthn' then
    return auth._challenge_webauthn_factor(v_ctx.usr, (v_ctx.sess).id, v_factor, p_ip);
  else
    insert into auth.mfa_challenges (factor_id, session_id, expires_at, ip_address)
    values (v_factor.id, (v_ctx.sess).id,
            pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry), p_ip)
    returning * into v_challenge;
    update auth.mfa_factors set last_challenged_at = pg_catalog.now() where id = v_factor.id;
  end if;
  return pg_catalog.jsonb_build_object('id', v_challenge.id, 'type', v_factor.factor_type,
                                       'expires_at', auth._epoch(v_challenge.expires_at)) || v_sent;
end
$$;
comment on function auth.challenge_factor(text, uuid, inet, text) is
  'POST /factors/{id}/challenge: {id, type, expires_at}; an email factor also gets its code emailed, a phone '
  'factor its code texted by p_channel (sms or whatsapp; the text leased to the caller in {sms}); a '
  'WebAuthn factor''s answer carries what the service builds its credential options from.';
grant execute on function auth.challenge_factor(text, uuid, inet, text) to authgres_service;

create or replace function auth._verify_challenge(
  p_user auth.users, p_factor auth.mfa_factors, p_challenge_id uuid, p_code text, p_ip inet,
  out ok boolean, out method text, out failure jsonb
)
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_challenge auth.mfa_challenges;
  v_step bigint;
begin
  select * into v_settings from auth.settings;
  ok := false;
  if p_challenge_id is null then  -- an email factor may be answered without naming the challenge
    select * into v_challenge from auth.mfa_challenges
     where factor_id = p_factor.id and verified_at is null order by created_at desc limit 1 for update;
  else
    select * into v_challenge from auth.mfa_challenges
     where id = p_challenge_id and factor_id = p_factor.id for update;
  end if;
  if not found then
    raise exception using errcode = 'AUM01', message = 'MFA factor with the provided challenge ID not found';
  end if;
  if v_challenge.verified_at is not null or v_challenge.expires_at <= pg_catalog.now()
     or v_challenge.attempts >= v_settings.mfa_max_attempts then
    raise exception using errcode = 'AUM07',
      message = pg_catalog.format('MFA challenge %s has expired, verify against another challenge or create a new challenge.', v_challenge.id);
  end if;
  if v_challenge.ip_address is distinct from p_ip and v_challenge.ip_address is not null and p_ip is not null then
    raise exception using errcode = 'AUM08', message = 'Challenge and verify IP addresses mismatch.';
  end if;

  if p_factor.factor_type = 'totp' then
    v_step := auth._totp_step_accepted(p_factor, p_code);
    if v_step is not null then
      update auth.mfa_factors set last_used_step = v_step where id = p_factor.id;
      method := 'totp';
    end if;
  elsif p_factor.factor_type = 'email' and v_challenge.code_digest is not null and auth._equal_keyed(
          v_challenge.code_digest, auth._token_hash(auth._link_token(p_user.email, pg_catalog.btrim(p_code)))) then
    delete from auth.one_time_tokens where user_id = p_user.id and token_type = 'mfa_email';
    method := 'email';
  elsif p_factor.factor_type = 'phone' and v_challenge.code_digest is not null and auth._equal_keyed(
          v_challenge.code_digest, auth._token_hash(auth._link_token(p_factor.phone, pg_catalog.btrim(p_code)))) then
    delete from auth.one_time_tokens where user_id = p_user.id and token_type = 'mfa_phone';
    method := 'phone';
  end if;
  if method is null and v_settings.mfa_recovery_codes_verify_enabled and auth._use_recovery_code(p_user, p_code, p_ip) then
    method := 'mfa/recovery_code';
  end if;

  if method is null and p_factor.factor_type = 'totp' and auth._totp_step_spent(p_factor, p_code) then
    -- Right code, already used (enrolled on one device, signing in on another within 30 s): say so.
    -- Not counted as a wrong guess: a spent step never becomes acceptable again.
    failure := pg_catalog.jsonb_build_object('error', 'AUM10', 'message',
      'This code was already used. Wait for your authenticator app to show the next one.');
    return;
  end if;
  if method is null then
    update auth.mfa_challenges set attempts = attempts + 1 where id = v_challenge.id;
    failure := pg_catalog.jsonb_build_object('error', 'AUM06', 'message',
      case p_factor.factor_type when 'totp' then 'Invalid TOTP code entered'
                                when 'phone' then 'Invalid MFA Phone code entered' else 'Invalid MFA email code entered' end);
    return;
  end if;
  update auth.mfa_challenges set verified_at = pg_catalog.now() where id = v_challenge.id;
  ok := true;
end
$$;
comment on function auth._verify_challenge(auth.users, auth.mfa_factors, uuid, text, inet) is
  'Checks a code (TOTP, emailed, or a recovery code) against a live challenge; wrong codes count '
  'against the challenge and come back as a failure to return, so the count commits.';

create or replace function auth.verify_factor(
  p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_code text,
  p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
  v_factor auth.mfa_factors;
  v_check record;
  v_first boolean;
  v_codes jsonb;
  v_newly_verified boolean;
  v_session auth.sessions;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_session := auth._lock_for_second_factor(v_ctx.usr, v_ctx.sess);
  v_factor := auth._factor_of((v_ctx.usr).id, p_factor_id);
  if v_factor.factor_type = 'phone' and not (select s.mfa_phone_verify_enabled from auth.settings s) then
    raise exception using errcode = 'AUM12', message = 'MFA verification is disabled for Phone';
  end if;
  if v_factor.factor_type = 'webauthn' then  -- answered by auth.verify_webauthn_factor, never by a code
    raise exception using errcode = 'AUV01', message = 'WebAuthn config required';
  end if;
  if pg_catalog.btrim(coalesce(p_code, '')) = '' then
    raise exception using errcode = 'AUV01', message = 'Code needs to be non-empty';
  end if;
  select * into v_check from auth._verify_challenge(v_ctx.usr, v_factor, p_challenge_id, p_code, p_ip);
  if not v_check.ok then
    return v_check.failure;
  end if;

  select v_factor.factor_type = 'totp' and s.mfa_recovery_codes_with_first_factor and s.mfa_recovery_codes_enroll_enabled
         and not exists (select from auth.mfa_factors f where f.user_id = (v_ctx.usr).id and f.status = 'verified'
                            and f.factor_type in ('totp', 'recovery_code'))
    into v_first from auth.settings s;
  v_newly_verified := v_factor.status = 'unverified';
  if v_newly_verified then
    update auth.mfa_factors set status = 'verified', updated_at = pg_catalog.now() where id = v_factor.id
    returning * into v_factor;
    perform auth._audit(v_ctx.usr, 'factor_verified', 'user', p_ip, pg_catalog.jsonb_build_object('factor_id', v_factor.id));
  end if;
  -- As GoTrue: once a factor protects the account, sign-ins that stopped at aal1 end.
  delete from auth.sessions where user_id = (v_ctx.usr).id and id <> v_session.id and aal = 'aal1';
  if v_newly_verified then
    perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                             pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'verified'));
  end if;
  if v_first then  -- before the answer is made, so that its user has them among its factors
    v_codes := auth._issue_recovery_codes(v_ctx.usr, 'generate') -> 'codes';
  end if;
  return auth._raise_session_aal(v_ctx.usr, v_session, v_factor, v_check.method)
         || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('recovery_codes', v_codes));
end
$$;
comment on function auth.verify_factor(text, uuid, uuid, text, text, inet) is
  'POST /factors/{id}/verify: proves a factor (or spends a recovery code) and raises the session to '
  'aal2. Verifying the first TOTP factor of a user without recovery codes also returns 10 of them, once '
  '(mfa_recovery_codes_with_first_factor).';
grant execute on function auth.verify_factor(text, uuid, uuid, text, text, inet) to authgres_service;

create or replace function auth._unenroll(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_ip inet)
  returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
begin
  if p_factor.status = 'verified' and p_session.aal = 'aal1' then
    raise exception using errcode = 'AUM03', message = 'AAL2 required to unenroll verified factor';
  end if;
  perform auth._remove_factor(p_user, p_factor);
  perform auth._audit(p_user, 'factor_unenrolled', 'user', p_ip, pg_catalog.jsonb_build_object('factor_id', p_factor.id));
  return pg_catalog.jsonb_build_object('id', p_factor.id);
end
$$;
comment on function auth._unenroll(auth.users, auth.sessions, auth.mfa_factors, inet) is
  'A user removes one of their factors (a verified one only from an aal2 session).';

create or replace function auth.unenroll_factor(p_access_token text, p_factor_id uuid, p_ip inet default null) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  return auth._unenroll(v_ctx.usr, v_ctx.sess, auth._factor_of((v_ctx.usr).id, p_factor_id), p_ip);
end
$$;
comment on function auth.unenroll_factor(text, uuid, inet) is 'DELETE /factors/{id}.';
grant execute on function auth.unenroll_factor(text, uuid, inet) to authgres_service;

create or replace function auth._remove_factor(p_user auth.users, p_factor auth.mfa_factors) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_codes auth.mfa_factors;
begin
  delete from auth.mfa_factors where id = p_factor.id;
  -- Sessions that reached aal2 with this factor fall back to aal1.
  update auth.sessions set aal = 'aal1', factor_id = null where factor_id = p_factor.id;
  if p_factor.factor_type = 'recovery_code' then
    delete from auth.mfa_recovery_codes where user_id = p_user.id;
    delete from auth.rate_limits where key = auth._recovery_code_lock_key(p_user.id);
  end if;
  perform auth._user_event(p_user.id, 'factor_changed',
                           pg_catalog.jsonb_build_object('factor_id', p_factor.id, 'action', 'removed'));
  -- Recovery codes back up other factors and never stand alone: they go with the last of them.
  if p_factor.factor_type <> 'recovery_code' and not exists (
       select from auth.mfa_factors
        where user_id = p_user.id and status = 'verified' and factor_type <> 'recovery_code') then
    for v_codes in select * from auth.mfa_factors where user_id = p_user.id and factor_type = 'recovery_code' loop
      perform auth._remove_factor(p_user, v_codes);
    end loop;
  end if;
end
$$;
comment on function auth._remove_factor(auth.users, auth.mfa_factors) is
  'Deletes a factor, lowers the sessions it raised, tells the user''s clients (factor_changed removed), and '
  'removes the recovery codes with it when no other verified factor is left (or when it is them).';

-- The recovery-codes API of auth-js (mfa.recoveryCodes): one recovery_code factor per user, its codes
-- shown once; a code raises the session it is entered in to aal2.
create or replace function auth.recovery_codes_status(p_access_token text) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
  v_factor auth.mfa_factors;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_factor := auth._recovery_factor((v_ctx.usr).id);
  return (select pg_catalog.jsonb_build_object(
                   'id', v_factor.id, 'type', 'recovery_code', 'total', pg_catalog.count(*),
                   'remaining', pg_catalog.count(*) filter (where c.used_at is null))
            from auth.mfa_recovery_codes c where c.user_id = (v_ctx.usr).id);
end
$$;
comment on function auth.recovery_codes_status(text) is
  'GET /factors/recovery-codes: {id, type, total, remaining} of the caller''s recovery codes (any aal), or AUM01.';
grant execute on function auth.recovery_codes_status(text) to authgres_service;

create or replace function auth.issue_recovery_codes(
  p_access_token text, p_mode text, p_friendly_name text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  if p_mode not in ('generate', 'regenerate', 'replace') then
    raise exception using errcode = 'AUV01', message = 'Unknown recovery codes mode';
  end if;
  if not (select s.mfa_recovery_codes_enroll_enabled from auth.settings s) then
    raise exception using errcode = 'AUM15', message = 'MFA enroll is disabled for recovery codes';
  end if;
  if p_mode = 'regenerate' then  -- nothing to regenerate says more than the reasons it could not be
    perform auth._recovery_factor((v_ctx.usr).id);
  end if;
  -- Before the aal check: without another factor no session can be aal2, and the user should hear why.
  if not exists (select from auth.mfa_factors
                  where user_id = (v_ctx.usr).id and status = 'verified' and factor_type <> 'recovery_code') then
    raise exception using errcode = 'AUM17',
      message = 'Recovery codes cannot be the only factor: verify another factor first';
  end if;
  if (v_ctx.sess).aal <> 'aal2' then
    raise exception using errcode = 'AUM02', message = 'AAL2 required to generate recovery codes';
  end if;
  return auth._issue_recovery_codes(v_ctx.usr, p_mode, p_friendly_name);
end
$$;
comment on function auth.issue_recovery_codes(text, text, text, inet) is
  'POST /factors/recovery-codes (p_mode generate), /regenerate (regenerate) and the first POST '
  '/factors/recovery_codes (replace): a new set of recovery codes (aal2, another verified factor needed), '
  '{id, type, friendly_name, total, codes}; see auth._issue_recovery_codes().';
grant execute on function auth.issue_recovery_codes(text, text, text, inet) to authgres_service;

create or replace function auth.verify_recovery_code(
  p_access_token text, p_code text, p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_window constant interval := interval '15 minutes';
  v_settings auth.settings;
  v_ctx record;
  v_session auth.sessions;
  v_factor auth.mfa_factors;
  v_failures auth.rate_limits;
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_session := auth._lock_for_second_factor(v_ctx.usr, v_ctx.sess);
  if not v_settings.mfa_recovery_codes_verify_enabled then
    raise exception using errcode = 'AUM16', message = 'MFA verification is disabled for recovery codes';
  end if;
  v_factor := auth._recovery_factor((v_ctx.usr).id);
  select * into v_failures from auth.rate_limits where key = auth._recovery_code_lock_key((v_ctx.usr).id);
  if found and v_failures.window_started_at + v_window > pg_catalog.now()
     and v_failures.hits >= v_settings.mfa_max_attempts then
    raise exception using errcode = 'AUM19',
      message = 'Too many wrong recovery codes. Try again in ' || auth._seconds_left(v_failures, v_window) || ' seconds.',
      detail = auth._seconds_left(v_failures, v_window)::text;
  end if;
  if auth._canonical_recovery_code(p_code) = '' then
    raise exception using errcode = 'AUM06', message = 'Recovery code is required';
  end if;
  if not auth._use_recovery_code(v_ctx.usr, p_code, p_ip) then
    -- Counted and answered, not raised, so that the count commits.
    perform auth._count_hit(auth._recovery_code_lock_key((v_ctx.usr).id), v_window);
    return pg_catalog.jsonb_build_object('error', 'AUM06', 'message', 'Invalid recovery code');
  end if;
  delete from auth.rate_limits where key = auth._recovery_code_lock_key((v_ctx.usr).id);
  -- As for any factor: once the session is aal2, the user's sign-ins that stopped at aal1 end.
  delete from auth.sessions where user_id = (v_ctx.usr).id and id <> v_session.id and aal = 'aal1';
  return auth._raise_session_aal(v_ctx.usr, v_session, v_factor, 'mfa/recovery_code');
end
$$;
comment on function auth.verify_recovery_code(text, text, text, inet) is
  'POST /factors/recovery-codes/verify: spends one recovery code and raises the session to aal2 (amr '
  'mfa/recovery_code). mfa_max_attempts wrong codes in 15 minutes lock verification (AUM19) until the window '
  'ends or the codes are regenerated.';
grant execute on function auth.verify_recovery_code(text, text, text, inet) to authgres_service;

create or replace function auth.unenroll_recovery_codes(p_access_token text, p_ip inet default null) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  return auth._unenroll(v_ctx.usr, v_ctx.sess, auth._recovery_factor((v_ctx.usr).id), p_ip);
end
$$;
comment on function auth.unenroll_recovery_codes(text, inet) is
  'DELETE /factors/recovery-codes: removes the caller''s recovery codes (aal2).';
grant execute on function auth.unenroll_recovery_codes(text, inet) to authgres_service;

create or replace function auth.complete_twofa(
  p_challenge_token text, p_code text, p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_challenge auth.mfa_challenges;
  v_factor auth.mfa_factors;
  v_user auth.users;
  v_check record;
  v_session jsonb;
begin
  select * into v_challenge from auth.mfa_challenges
   where login_token_digest = auth._token_hash(coalesce(p_challenge_token, ''));
  if not found then
    raise exception using errcode = 'AUM01', message = 'MFA factor with the provided challenge ID not found';
  end if;
  select * into strict v_factor from auth.mfa_factors where id = v_challenge.factor_id;
  select * into strict v_user from auth.users where id = v_factor.user_id;
  select * into v_check from auth._verify_challenge(v_user, v_factor, v_challenge.id, p_code, p_ip);
  if not v_check.ok then
    return v_check.failure;
  end if;
  delete from auth.mfa_challenges where id = v_challenge.id;  -- the challenge token is single-use too
  v_session := auth._start_session(v_user, 'password', p_user_agent, p_ip);
  return auth._raise_session_aal(
    v_user, (select s from auth.sessions s where s.id = auth._session_of(v_session)), v_factor, v_check.method);
end
$$;
comment on function auth.complete_twofa(text, text, text, inet) is
  'POST /token?grant_type=twofa (strict email 2-step): the challenge_token and the emailed code give an aal2 session.';
grant execute on function auth.complete_twofa(text, text, text, inet) to authgres_service;

create or replace function auth._challenge_webauthn_factor(
  p_user auth.users, p_session_id uuid, p_factor auth.mfa_factors, p_ip inet
) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_challenge auth.mfa_challenges;
begin
  select * into v_settings from auth.settings;
  if not v_settings.mfa_web_authn_enabled then
    raise exception using errcode = 'AUM14', message = 'MFA verification is disabled for WebAuthn';
  end if;
  insert into auth.mfa_challenges (factor_id, session_id, expires_at, ip_address, web_authn_challenge)
  values (p_factor.id, p_session_id, pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry),
          p_ip, auth._random_bytes(32))
  returning * into v_challenge;
  update auth.mfa_factors set last_challenged_at = pg_catalog.now() where id = p_factor.id;
  -- An unverified factor registers its credential (excluding the user's others); a verified one asserts it.
  return pg_catalog.jsonb_build_object(
    'id', v_challenge.id, 'type', 'webauthn', 'expires_at', auth._epoch(v_challenge.expires_at),
    'webauthn', pg_catalog.jsonb_build_object(
      'type', case p_factor.status when 'verified' then 'request' else 'create' end,
      'challenge', auth.url_encode(v_challenge.web_authn_challenge),
      'user', auth._webauthn_user(p_user),
      'credentials', case p_factor.status
        when 'verified' then coalesce((select pg_catalog.jsonb_agg(auth.url_encode(c.credential_id))
                                         from auth.webauthn_credentials c where c.factor_id = p_factor.id), '[]')
        else auth._user_credential_ids(p_user.id) end));
end
$$;
comment on function auth._challenge_webauthn_factor(auth.users, uuid, auth.mfa_factors, inet) is
  'A WebAuthn factor''s challenge: type create (register its credential; credentials: those to exclude) '
  'or request (assert it; credentials: the one allowed), with the random challenge and the user.';

create or replace function auth.verify_webauthn_factor(
  p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_type text, p_challenge bytea,
  p_credential_id bytea, p_sign_count bigint, p_public_key bytea default null, p_aaguid uuid default null,
  p_transports jsonb default null, p_backup_eligible boolean default null, p_backed_up boolean default null,
  p_attestation_type text default null, p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
  v_session auth.sessions;
  v_factor auth.mfa_factors;
  v_challenge auth.mfa_challenges;
  v_credential auth.webauthn_credentials;
  v_newly_verified boolean;
  v_stale uuid;
  v_response jsonb;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_session := auth._lock_for_second_factor(v_ctx.usr, v_ctx.sess);
  v_factor := auth._factor_of((v_ctx.usr).id, p_factor_id);
  if v_factor.factor_type <> 'webauthn' then
    raise exception using errcode = 'AUV01', message = 'Code needs to be non-empty';
  end if;
  if not (select s.mfa_web_authn_enabled from auth.settings s) then
    raise exception using errcode = 'AUM14', message = 'MFA verification is disabled for WebAuthn';
  end if;
  if p_type is distinct from (case v_factor.status when 'verified' then 'request' else 'create' end) then
    raise exception using errcode = 'AUV01', message = 'WebAuthn type must be create or request';
  end if;
  select * into v_challenge from auth.mfa_challenges
   where id = p_challenge_id and factor_id = v_factor.id for update;
  if not found then
    raise exception using errcode = 'AUM01', message = 'MFA factor with the provided challenge ID not found';
  end if;
  if v_challenge.verified_at is not null or v_challenge.expires_at <= pg_catalog.now() then
    raise exception using errcode = 'AUM07',
      message = pg_catalog.format('MFA challenge %s has expired, verify against another challenge or create a new challenge.', v_challenge.id);
  end if;
  if v_challenge.ip_address is distinct from p_ip and v_challenge.ip_address is not null and p_ip is not null then
    raise exception using errcode = 'AUM08', message = 'Challenge and verify IP addresses mismatch.';
  end if;
  if not auth._equal_keyed(v_challenge.web_authn_challenge, p_challenge) then
    raise exception using errcode = 'AUM06', message = 'Invalid WebAuthn response';
  end if;
  -- Spent by this answer, whatever follows: concurrent answers waited on the row and find it verified.
  update auth.mfa_challenges set verified_at = pg_catalog.now() where id = v_challenge.id;

  v_newly_verified := v_factor.status = 'unverified';
  if v_newly_verified then
    begin
      insert into auth.webauthn_credentials (user_id, factor_id, credential_id, public_key, attestation_type, aaguid,
                                             sign_count, transports, backup_eligible, backed_up, friendly_name,
                                             last_used_at)
      values ((v_ctx.usr).id, v_factor.id, p_credential_id, p_public_key, coalesce(p_attestation_type, ''), p_aaguid,
              coalesce(p_sign_count, 0), coalesce(p_transports, '[]'), coalesce(p_backup_eligible, false),
              coalesce(p_backed_up, false), v_factor.friendly_name, pg_catalog.now());
    exception when unique_violation then
      raise exception using errcode = 'AUW05', message = 'This credential is already registered';
    end;
    update auth.mfa_factors set status = 'verified', updated_at = pg_catalog.now() where id = v_factor.id
    returning * into v_factor;
    perform auth._audit(v_ctx.usr, 'factor_verified', 'user', p_ip, pg_catalog.jsonb_build_object('factor_id', v_factor.id));
    -- As GoTrue: the other half-enrolled WebAuthn factors go.
    for v_stale in
      delete from auth.mfa_factors
       where user_id = (v_ctx.usr).id and factor_type = 'webauthn' and status = 'unverified' returning id
    loop
      perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                               pg_catalog.jsonb_build_object('factor_id', v_stale, 'action', 'removed'));
    end loop;
  else
    select * into v_credential from auth.webauthn_credentials
     where factor_id = v_factor.id and credential_id = p_credential_id for no key update;
    if not found then  -- another factor's, another user's, or a passkey: not this factor's credential
      return pg_catalog.jsonb_build_object('error', 'AUM06', 'message', 'Invalid WebAuthn response');
    end if;
    if auth._sign_count_regressed(v_credential.sign_count, p_sign_count) then
      perform auth._audit(v_ctx.usr, 'passkey_sign_count_regression', 'user', p_ip, pg_catalog.jsonb_build_object(
        'factor_id', v_factor.id, 'stored_sign_count', v_credential.sign_count, 'sign_count', p_sign_count));
      return pg_catalog.jsonb_build_object('error', 'AUM06', 'message', 'Invalid WebAuthn response');
    end if;
    update auth.webauthn_credentials
       set sign_count = p_sign_count, backed_up = coalesce(p_backed_up, backed_up),
           last_used_at = pg_catalog.now(), updated_at = pg_catalog.now()
     where id = v_credential.id;
  end if;
  delete from auth.sessions where user_id = (v_ctx.usr).id and id <> v_session.id and aal = 'aal1';
  v_response := auth._raise_session_aal(v_ctx.usr, v_session, v_factor, 'mfa/webauthn');
  if v_newly_verified then
    perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                             pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'verified'));
  end if;
  return v_response;
end
$$;
comment on function auth.verify_webauthn_factor(text, uuid, uuid, text, bytea, bytea, bigint, bytea, uuid, jsonb, boolean, boolean, text, text, inet) is
  'POST /factors/{id}/verify with a WebAuthn answer the service verified: create registers the factor''s '
  'credential and verifies the factor, request checks it is the factor''s credential and its counter moved on; '
  'either raises the session to aal2 (amr mfa/webauthn). The challenge is spent once it was the one signed.';
grant execute on function auth.verify_webauthn_factor(text, uuid, uuid, text, bytea, bytea, bigint, bytea, uuid, jsonb, boolean, boolean, text, text, inet)
  to authgres_service;
