-- users.sql: users in GoTrue's JSON shapes, and GET / PUT /user.
set local role authgres_owner;

create or replace function auth._strip_nulls(p_object jsonb) returns jsonb
  language sql immutable strict parallel safe
  return (select coalesce(pg_catalog.jsonb_object_agg(e.key, e.value), '{}'::jsonb)
            from pg_catalog.jsonb_each(p_object) e
           where pg_catalog.jsonb_typeof(e.value) <> 'null');
comment on function auth._strip_nulls(jsonb) is
  'Drops top-level null members only: jsonb_strip_nulls() would also reach into the values.';

create or replace function auth._merge_metadata(p_current jsonb, p_changes jsonb) returns jsonb
  language sql immutable parallel safe
  return case when p_changes is null then p_current
              else (p_current - array(select e.key from pg_catalog.jsonb_each(p_changes) e
                                       where pg_catalog.jsonb_typeof(e.value) = 'null'))
                   || auth._strip_nulls(p_changes) end;
comment on function auth._merge_metadata(jsonb, jsonb) is 'GoTrue''s metadata merge: null removes a key, other keys are set.';

create or replace function auth._normalize_email(p_email text) returns text
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
comment on function auth._identity_json(auth.identities) is 'An identity as GoTrue serialises it.';

-- The user JSON gains its factors (omitted when there are none, as GoTrue does): both official
-- clients compute the next assurance level from user.factors without asking the server.
create or replace function auth._user_json(p_user auth.users) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_factors jsonb := (select pg_catalog.jsonb_agg(auth._factor_json(f) order by f.created_at)
                        from auth.mfa_factors f where f.user_id = p_user.id);
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
      'factors', v_factors,
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

create or replace function auth._get_user(p_access_token text) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
begin
  return auth._user_json((auth._authorize(p_access_token, true)).usr);
end
$$;
comment on function auth._get_user(text) is 'The user an access token speaks for; GET /user calls it through auth.get_users().';

-- Requests that arrive while every connection is busy are answered together: one round trip and one
-- transaction for the lot instead of one each, which on a loaded box also means a fraction of the
-- context switches. Each item is still handled on its own (in a subtransaction), and one that fails
-- gets its own {"error": ...} without touching the others. The service sends at most 32 items at a
-- time: more subtransactions than PostgreSQL caches per backend (64) would slow every snapshot.
create or replace function auth.get_users(p_access_tokens text[]) returns jsonb[]
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_users jsonb[] := '{}';
begin
  for i in 1 .. coalesce(pg_catalog.array_length(p_access_tokens, 1), 0) loop
    begin
      v_users[i] := auth._get_user(p_access_tokens[i]);
    exception when others then
      v_users[i] := pg_catalog.jsonb_build_object('error', sqlstate, 'message', sqlerrm);
    end;
  end loop;
  return v_users;
end
$$;
comment on function auth.get_users(text[]) is
  'auth._get_user() for each token, in order; a token that fails gets {"error": SQLSTATE, "message": ...}.';
grant execute on function auth.get_users(text[]) to authgres_service;

create or replace function auth.current_password_hash(p_access_token text) returns text
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  return ((auth._authorize(p_access_token, true)).usr).encrypted_password;
end
$$;
comment on function auth.current_password_hash(text) is
  'The token user''s password hash, for the service to compare a new password with the old one.';
grant execute on function auth.current_password_hash(text) to authgres_service;

create or replace function auth._spend_reauthentication_nonce(p_user auth.users, p_nonce text, p_missing text)
  returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_nonce auth.one_time_tokens;
begin
  if p_nonce is null then
    raise exception using errcode = 'AUE02', message = p_missing;
  end if;
  select * into v_nonce from auth.one_time_tokens
   where user_id = p_user.id and token_type = 'reauthentication' for update;
  if not found or v_nonce.expires_at <= pg_catalog.now() or not auth._equal_keyed(
       v_nonce.token_digest, auth._token_hash(auth._link_token(v_nonce.relates_to, pg_catalog.btrim(p_nonce)))) then
    raise exception using errcode = 'AUE03', message = 'Nonce has expired or is invalid';
  end if;
  delete from auth.one_time_tokens where id = v_nonce.id;
end
$$;
comment on function auth._spend_reauthentication_nonce(auth.users, text, text) is
  'Consumes the user''s GET /reauthenticate nonce: AUE02 (with p_missing) when none is given, AUE03 when it is wrong or expired.';

create or replace function auth.update_user(
  p_access_token text, p_data jsonb default null, p_password_hash text default null,
  p_email text default null, p_nonce text default null, p_redirect_to text default null,
  p_ip inet default null, p_code_challenge text default null, p_code_challenge_method text default null,
  p_phone text default null, p_channel text default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_auth record;
  v_user auth.users;
  v_email text;
  v_sent jsonb := '{}';
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
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
      perform auth._spend_reauthentication_nonce(v_user, p_nonce, 'Password update requires reauthentication');
    end if;
    update auth.users set encrypted_password = p_password_hash, updated_at = pg_catalog.now()
     where id = v_user.id
    returning * into v_user;
    -- A new password ends every other sign-in: whoever knew the old one is logged out.
    delete from auth.sessions where user_id = v_user.id and id is distinct from (v_auth.sess).id;
    perform auth._audit(v_user, 'user_updated_password', 'user', p_ip);
    perform auth._user_event(v_user.id, 'password_changed');
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
                                  pg_catalog.jsonb_build_object('new_email', v_email), null,
                                  p_code_challenge, v_method);
      end if;
      perform auth._queue_email(v_user, 'email_change_new', v_email, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_email), null, p_code_challenge, v_method);
      select * into strict v_user from auth.users where id = v_user.id;
    end if;
  end if;
  if p_phone is not null then
    v_sent := auth._start_phone_change(v_user, p_phone, p_channel, p_ip);
    select * into strict v_user from auth.users where id = v_user.id;
  end if;
  return auth._user_json(v_user) || v_sent;
end
$$;
comment on function auth.update_user(text, jsonb, text, text, text, text, inet, text, text, text, text) is
  'PUT /user: merges user metadata (null removes a key); sets a new password hash, ending the user''s '
  'other sessions (with a reauthentication nonce when required); starts an email change, confirmed '
  'from both addresses when mailer_secure_email_change (by PKCE flows'' links with a code challenge); '
  'starts a phone change, confirmed by a code texted to the new number (leased to the caller in {sms}).';
grant execute on function auth.update_user(text, jsonb, text, text, text, text, inet, text, text, text, text) to authgres_service;

create or replace function auth.reauthenticate(p_access_token text, p_ip inet default null) returns jsonb
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
grant execute on function auth.reauthenticate(text, inet) to authgres_service;

create or replace function auth.session_password_hash(p_access_token text) returns text
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  return ((auth._signed_in(p_access_token)).usr).encrypted_password;
end
$$;
comment on function auth.session_password_hash(text) is
  'The password hash of a signed-in session''s user (AUK02 for an API key), for the service to check a '
  'password given to confirm an action: what only a session may do is not a password oracle for a key.';
grant execute on function auth.session_password_hash(text) to authgres_service;

create or replace function auth.record_failed_reauthentication(p_access_token text, p_ip inet default null)
  returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users := (auth._authorize(p_access_token, true)).usr;
begin
  perform auth._audit(v_user, 'login_failed', 'account', p_ip, '{"provider": "email", "via": "reauthentication"}');
  perform auth._password_attempt_hook(v_user, false);
end
$$;
comment on function auth.record_failed_reauthentication(text, inet) is
  'Audits a wrong password given to confirm an action by a signed-in user, and tells the '
  'password_verification_attempt hook (which may end the user''s sessions), as a failed sign-in is.';
grant execute on function auth.record_failed_reauthentication(text, inet) to authgres_service;

create or replace function auth._delete_user(p_user auth.users, p_soft boolean) returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  if not p_soft then
    delete from auth.users where id = p_user.id;
  else
    -- Soft: the row stays for foreign keys, but nothing can sign in with it and its address is free.
    delete from auth.sessions where user_id = p_user.id;
    delete from auth.identities where user_id = p_user.id;
    delete from auth.mfa_factors where user_id = p_user.id;
    delete from auth.webauthn_credentials where user_id = p_user.id;
    delete from auth.webauthn_challenges where user_id = p_user.id;
    delete from auth.mfa_recovery_codes where user_id = p_user.id;
    delete from auth.one_time_tokens where user_id = p_user.id;
    update auth.api_keys set revoked_at = pg_catalog.now() where user_id = p_user.id and revoked_at is null;
    update auth.users set email = null, phone = null, encrypted_password = null, email_change = '',
           deleted_at = pg_catalog.now(), updated_at = pg_catalog.now()
     where id = p_user.id;
  end if;
  -- Told last, after the sessions' own session_revoked events, like every event: the per-user event
  -- lock is then taken after the rows are, so a sign-out racing the deletion queues instead of deadlocking.
  perform auth._user_event(p_user.id, 'account_deleted');
end
$$;
comment on function auth._delete_user(auth.users, boolean) is
  'Removes a user with everything it signs in with (sessions, identities, factors, API keys), or with p_soft '
  'keeps the row freed of address and secrets; emits account_deleted.';

create or replace function auth.delete_own_account(
  p_access_token text, p_verified_hash text default null, p_nonce text default null, p_ip inet default null
) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_auth record;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  select * into v_auth from auth._signed_in(p_access_token);
  v_user := v_auth.usr;
  -- The hash must still be the one the service verified: a password changed meanwhile wins.
  if p_verified_hash is not null and p_verified_hash is distinct from v_user.encrypted_password then
    raise exception using errcode = 'AUS05', message = 'Invalid login credentials';
  end if;
  if exists (select from auth.mfa_factors where user_id = v_user.id and status = 'verified') then
    -- With MFA, the second factor proven in this session is the proof (as for GoTrue's password change).
    if (v_auth.sess).aal is distinct from 'aal2' then
      raise exception using errcode = 'AUM02', message = 'AAL2 session is required to delete an account with MFA';
    end if;
  elsif v_user.encrypted_password is not null then
    if p_verified_hash is null then
      raise exception using errcode = 'AUE02', message = 'Deleting the account requires the password';
    end if;
  elsif not v_user.is_anonymous then
    perform auth._spend_reauthentication_nonce(v_user, p_nonce, 'Deleting the account requires reauthentication');
  end if;
  if v_settings.hook_before_user_deleted is not null then
    perform auth._call_hook(v_settings.hook_before_user_deleted, pg_catalog.jsonb_build_object(
      'user', auth._user_json(v_user),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip), 'actor', 'self')));
  end if;
  perform auth._audit(v_user, 'user_deleted', 'user', p_ip,
                      pg_catalog.jsonb_build_object('soft', v_settings.account_deletion = 'soft'));
  perform auth._delete_user(v_user, v_settings.account_deletion = 'soft');
end
$$;
comment on function auth.delete_own_account(text, text, text, inet) is
  'DELETE /user: the signed-in user deletes their account (hard or soft per account_deletion). A user with '
  'verified factors proves it with an aal2 session; otherwise a user with a password by it (p_verified_hash: '
  'the hash the service verified it against), one without by a nonce from GET /reauthenticate; an anonymous '
  'user needs neither. A password given must be right. '
  'The before_user_deleted hook may veto.';
grant execute on function auth.delete_own_account(text, text, text, inet) to authgres_service;
