-- one_time_tokens.sql: one-time tokens: every emailed secret, issued hashed, attempt-limited,
-- expiring and single-use.
--
-- One mechanism for every emailed secret. Each email carries a code of mailer_otp_length digits and a
-- link token; the link token is GoTrue's token_hash, hex SHA-224(address || code), so the official
-- clients' verifyOtp({token_hash, type}) works. The table keeps only SHA-256 of that link token, so
-- neither the code nor the link can be used from a copy of the database without guessing. A token is
-- single-use, expires after mailer_otp_exp seconds, and dies after mailer_otp_max_attempts wrong codes.
set local role authgres_owner;

create or replace function auth._link_token(p_address text, p_code text) returns text
  language sql stable parallel safe
  return pg_catalog.encode(pg_catalog.sha224(pg_catalog.convert_to(p_address || p_code, 'UTF8')), 'hex');
comment on function auth._link_token(text, text) is 'GoTrue''s token_hash: hex SHA-224 of address || code.';

-- Development's fixed codes (AUTHGRES_MAILER_TEST_OTP, AUTHGRES_SMS_TEST_OTP): a listed address or number
-- always gets its own code, and no email or text, until the configured time; after it the address or
-- number is treated like any other. Addresses hold an @ and numbers are digits: the two maps never clash.
create or replace function auth._fixed_code(p_address text) returns text
  language sql stable
  return (select coalesce(case when s.mailer_test_otp_valid_until > pg_catalog.now() then s.mailer_test_otp ->> p_address end,
                          case when s.sms_test_otp_valid_until > pg_catalog.now() then s.sms_test_otp ->> p_address end)
            from auth.settings s);
comment on function auth._fixed_code(text) is
  'The fixed development code of an address listed in mailer_test_otp (or a number in sms_test_otp) while its '
  'valid-until is ahead; else NULL.';

create or replace function auth._texted(p_token_type text) returns boolean
  language sql immutable parallel safe
  return p_token_type in ('phone_confirmation', 'phone_change', 'mfa_phone');
comment on function auth._texted(text) is
  'Whether tokens of this purpose go to a phone number (their length and lifetime are the sms_ settings).';

create or replace function auth._issue_token(
  p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_pending_signup uuid default null,
  p_flow_state uuid default null, out code text, out link_token text
)
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_length integer;
  v_lifetime interval;
begin
  select * into v_settings from auth.settings;
  -- Texted codes have their own length and lifetime; everything else about them is this one mechanism.
  v_length := case when auth._texted(p_token_type) then v_settings.sms_otp_length else v_settings.mailer_otp_length end;
  v_lifetime := pg_catalog.make_interval(secs => case when auth._texted(p_token_type) then v_settings.sms_otp_exp
                                                      else v_settings.mailer_otp_exp end);
  code := coalesce(auth._fixed_code(p_address), pg_catalog.lpad(
    ((('x' || pg_catalog.encode(auth._random_bytes(7), 'hex'))::bit(56)::bigint
      % (10::bigint ^ v_length)::bigint))::text,
    v_length, '0'));
  link_token := auth._link_token(p_address, code);
  if p_flow_state is not null then
    -- A PKCE flow's token lives for its own flow: a newer one of the same purpose replaces nothing.
    insert into auth.one_time_tokens
      (user_id, pending_signup_id, flow_state_id, token_type, token_digest, relates_to, redirect_to, expires_at)
    values (p_user.id, p_pending_signup, p_flow_state, p_token_type, auth._token_hash(link_token), p_address,
            p_redirect_to, pg_catalog.now() + v_lifetime);
    return;
  end if;
  if p_pending_signup is not null then
    -- A pending sign-up has no user row to key on: its live token is replaced by hand.
    delete from auth.one_time_tokens
     where pending_signup_id = p_pending_signup and token_type = p_token_type and flow_state_id is null;
  end if;
  insert into auth.one_time_tokens as t
    (user_id, pending_signup_id, token_type, token_digest, relates_to, redirect_to, expires_at)
  values (p_user.id, p_pending_signup, p_token_type, auth._token_hash(link_token), p_address, p_redirect_to,
          pg_catalog.now() + v_lifetime)
  on conflict (user_id, token_type) where flow_state_id is null do update
     set token_digest = excluded.token_digest, relates_to = excluded.relates_to,
         redirect_to = excluded.redirect_to, attempts = 0, created_at = excluded.created_at,
         expires_at = excluded.expires_at;
end
$$;
comment on function auth._issue_token(auth.users, text, text, text, uuid, uuid) is
  'Issues a fresh token of p_token_type for the user, or for the pending sign-up p_pending_signup (replacing '
  'any live one), or bound to the PKCE flow p_flow_state (replacing none); the code and link token are '
  'returned, never stored.';

create or replace function auth._verification_type(p_token_type text) returns text
  language sql immutable parallel safe
  return case p_token_type when 'confirmation' then 'signup'
                           when 'phone_confirmation' then 'sms'
                           when 'email_change_current' then 'email_change'
                           when 'email_change_new' then 'email_change'
                           else p_token_type end;
comment on function auth._verification_type(text) is 'The verify type a token of this kind is presented with.';

create or replace function auth._verify_error(p_message text) returns jsonb
  language sql immutable parallel safe
  return pg_catalog.jsonb_build_object('error', 'AUO01', 'message', p_message);
comment on function auth._verify_error(text) is
  'A failed verification, returned rather than raised so that the attempt it counted commits.';

create or replace function auth._spend_code(
  p_address text, p_types text[], p_code text, p_provider_approved boolean default null
) returns auth.one_time_tokens
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_token auth.one_time_tokens;
  v_digest bytea := auth._token_hash(auth._link_token(p_address, pg_catalog.btrim(coalesce(p_code, ''))));
begin
  -- Lock the candidates first: concurrent guesses queue here, so the attempt count stays exact.
  for v_token in
    select * from auth.one_time_tokens
     where relates_to = p_address and token_type = any (p_types)
     order by created_at desc
     for update
  loop
    if v_token.expires_at > pg_catalog.now()
       and v_token.attempts < (select s.mailer_otp_max_attempts from auth.settings s)
       and (p_provider_approved or (p_provider_approved is null and auth._equal_keyed(v_token.token_digest, v_digest))) then
      return v_token;
    end if;
  end loop;
  update auth.one_time_tokens set attempts = attempts + 1
   where relates_to = p_address and token_type = any (p_types) and expires_at > pg_catalog.now();
  delete from auth.one_time_tokens
   where relates_to = p_address and token_type = any (p_types)
     and (attempts >= (select s.mailer_otp_max_attempts from auth.settings s) or expires_at <= pg_catalog.now());
  return null;
end
$$;
comment on function auth._spend_code(text, text[], text, boolean) is
  'The live token of one of p_types sent to p_address whose code is p_code, locked, for the caller to spend; '
  'NULL after counting a wrong code against every live one (a token dies after mailer_otp_max_attempts). '
  'p_provider_approved: the code was checked by the SMS provider (Twilio Verify), true or false, instead.';
