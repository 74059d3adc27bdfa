-- passkeys.sql: passkeys (WebAuthn) as the first factor: registering one while signed in, signing in
-- with one alone (a discoverable credential whose user handle is the user's id), listing, renaming and
-- removing them; and the WebAuthn ceremony state both passkeys and the webauthn MFA factor use.
--
-- The service does the cryptography (py_webauthn: the attestation, the assertion's signature, origin,
-- RP id hash, user presence and verification) and hands SQL what the authenticator signed. The
-- signature covers clientDataJSON, and so the challenge in it: SQL compares that challenge with the
-- stored one while it consumes the challenge, in the statement that records the result. A challenge
-- is deleted by the one verification that uses it; concurrent ones wait on its row and find it gone.
set local role authgres_owner;

create or replace function auth._passkey_json(p_credential auth.webauthn_credentials) returns jsonb
  language sql stable
  return pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'id', p_credential.id, 'friendly_name', nullif(p_credential.friendly_name, ''),
    'created_at', p_credential.created_at, 'last_used_at', p_credential.last_used_at));
comment on function auth._passkey_json(auth.webauthn_credentials) is
  'A passkey as GoTrue lists it: id, friendly_name, created_at, last_used_at (the last two omitted when unset).';

create or replace function auth._webauthn_user(p_user auth.users) returns jsonb
  language sql stable
  return pg_catalog.jsonb_build_object(
    'id', p_user.id,
    'name', coalesce(nullif(p_user.email, ''), nullif(p_user.phone, ''), p_user.id::text),
    'display_name', coalesce(nullif(p_user.raw_user_meta_data ->> 'name', ''),
                             nullif(p_user.email, ''), nullif(p_user.phone, ''),
                             p_user.id::text));
comment on function auth._webauthn_user(auth.users) is
  'The user as a WebAuthn registration names it: id (the user handle, as text), name and display name.';

create or replace function auth._user_credential_ids(p_user_id uuid) returns jsonb
  language sql stable
  return coalesce((select pg_catalog.jsonb_agg(auth.url_encode(c.credential_id) order by c.created_at)
                     from auth.webauthn_credentials c where c.user_id = p_user_id), '[]'::jsonb);
comment on function auth._user_credential_ids(uuid) is
  'The user''s credential ids (passkeys and WebAuthn factors), base64url: what a new registration excludes.';

create or replace function auth._require_passkey_aal(p_user auth.users, p_session auth.sessions) returns void
  language plpgsql stable
  set search_path = ''
as $$
begin
  if p_session.aal is distinct from 'aal2'
     and exists (select from auth.mfa_factors where user_id = p_user.id and status = 'verified') then
    raise exception using errcode = 'AUM02',
      message = 'AAL2 session is required to manage passkeys when MFA is enabled';
  end if;
end
$$;
comment on function auth._require_passkey_aal(auth.users, auth.sessions) is
  'AUM02 unless the session is aal2 or the user has no verified factor (then aal1 is the most there is).';

create or replace function auth._consume_webauthn_challenge(
  p_challenge_id uuid, p_challenge_type text, p_user_id uuid, p_challenge bytea
) returns auth.webauthn_challenges
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_challenge auth.webauthn_challenges;
begin
  -- Deleted first: a concurrent verification of the same challenge waits on this row, then finds it
  -- gone. A refusal below rolls the delete back with everything else.
  delete from auth.webauthn_challenges
   where id = p_challenge_id and challenge_type = p_challenge_type and user_id is not distinct from p_user_id
  returning * into v_challenge;
  if not found then
    raise exception using errcode = 'AUW01', message = 'Challenge not found or already used';
  end if;
  if v_challenge.expires_at <= pg_catalog.now() then
    raise exception using errcode = 'AUW02', message = 'Challenge has expired';
  end if;
  if not auth._equal_keyed(v_challenge.challenge, p_challenge) then
    raise exception using errcode = 'AUW03', message = 'Credential verification failed';
  end if;
  return v_challenge;
end
$$;
comment on function auth._consume_webauthn_challenge(uuid, text, uuid, bytea) is
  'Spends a live passkey challenge of this type (and user), whose value is the one the authenticator '
  'signed: AUW01 unknown or spent, AUW02 expired, AUW03 another challenge was signed.';

create or replace function auth._sign_count_regressed(p_stored bigint, p_presented bigint) returns boolean
  language sql immutable
  return (p_stored > 0 or p_presented > 0) and p_presented <= p_stored;
comment on function auth._sign_count_regressed(bigint, bigint) is
  'Whether an assertion''s signature counter fails to move past the stored one (an authenticator without a '
  'counter reports 0 every time): the mark of a cloned authenticator.';

create or replace function auth.passkey_registration_options(p_access_token text) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_ctx record;
  v_challenge auth.webauthn_challenges;
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  perform auth._require_passkey_aal(v_ctx.usr, v_ctx.sess);
  if (select pg_catalog.count(*) from auth.webauthn_credentials
       where user_id = (v_ctx.usr).id and factor_id is null) >= v_settings.passkey_max_per_user then
    raise exception using errcode = 'AUW04', message = 'Maximum number of passkeys reached';
  end if;
  delete from auth.webauthn_challenges where user_id = (v_ctx.usr).id and expires_at <= pg_catalog.now();
  insert into auth.webauthn_challenges (user_id, challenge_type, challenge, expires_at)
  values ((v_ctx.usr).id, 'registration', auth._random_bytes(32),
          pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.webauthn_challenge_expiry))
  returning * into v_challenge;
  return pg_catalog.jsonb_build_object(
    'challenge_id', v_challenge.id, 'challenge', auth.url_encode(v_challenge.challenge),
    'expires_at', auth._epoch(v_challenge.expires_at), 'user', auth._webauthn_user(v_ctx.usr),
    'exclude_credentials', auth._user_credential_ids((v_ctx.usr).id));
end
$$;
comment on function auth.passkey_registration_options(text) is
  'POST /passkeys/registration/options: a registration challenge for the signed-in, non-anonymous user, '
  'with what the service builds the options from (user, credentials to exclude). AUW04 at the limit.';
grant execute on function auth.passkey_registration_options(text) to authgres_service;

create or replace function auth.register_passkey(
  p_access_token text, p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_public_key bytea,
  p_aaguid uuid, p_sign_count bigint, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean,
  p_attestation_type text, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_ctx record;
  v_credential auth.webauthn_credentials;
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  perform auth._require_passkey_aal(v_ctx.usr, v_ctx.sess);
  perform auth._consume_webauthn_challenge(p_challenge_id, 'registration', (v_ctx.usr).id, p_challenge);
  -- Registrations of one user queue here, so the limit holds under concurrent ones.
  perform from auth.users where id = (v_ctx.usr).id for no key update;
  if (select pg_catalog.count(*) from auth.webauthn_credentials
       where user_id = (v_ctx.usr).id and factor_id is null) >= v_settings.passkey_max_per_user then
    raise exception using errcode = 'AUW04', message = 'Maximum number of passkeys reached';
  end if;
  begin
    insert into auth.webauthn_credentials (user_id, credential_id, public_key, attestation_type, aaguid, sign_count,
                                           transports, backup_eligible, backed_up, friendly_name)
    values ((v_ctx.usr).id, p_credential_id, p_public_key, coalesce(p_attestation_type, ''), p_aaguid,
            coalesce(p_sign_count, 0), coalesce(p_transports, '[]'), coalesce(p_backup_eligible, false),
            coalesce(p_backed_up, false), 'Passkey')
    returning * into v_credential;
  exception when unique_violation then
    raise exception using errcode = 'AUW05', message = 'This credential is already registered';
  end;
  perform auth._audit(v_ctx.usr, 'passkey_created', 'user', p_ip,
                      pg_catalog.jsonb_build_object('passkey_id', v_credential.id));
  return pg_catalog.jsonb_build_object('id', v_credential.id, 'friendly_name', v_credential.friendly_name,
                                       'created_at', v_credential.created_at);
end
$$;
comment on function auth.register_passkey(text, uuid, bytea, bytea, bytea, uuid, bigint, jsonb, boolean, boolean, text, inet) is
  'POST /passkeys/registration/verify, once the service verified the attestation: spends the challenge '
  '(p_challenge: the one the authenticator signed) and stores the passkey. AUW01/02/03 as the challenge '
  'says, AUW04 at the limit, AUW05 a credential already registered (to anyone).';
grant execute on function auth.register_passkey(text, uuid, bytea, bytea, bytea, uuid, bigint, jsonb, boolean, boolean, text, inet)
  to authgres_service;

create or replace function auth.passkey_authentication_options(p_ip inet default null) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_challenge auth.webauthn_challenges;
begin
  -- Anyone may ask, and each answer is a stored row: a client IP gets so many per window.
  if p_ip is not null then
    perform auth._throttle('passkey-options-ip:' || pg_catalog.host(p_ip),
                           (select s.rate_limit_passkey from auth.settings s), interval '5 minutes', 'AUL02');
  end if;
  insert into auth.webauthn_challenges (challenge_type, challenge, expires_at)
  values ('authentication', auth._random_bytes(32),
          pg_catalog.now() + pg_catalog.make_interval(secs => (select s.webauthn_challenge_expiry from auth.settings s)))
  returning * into v_challenge;
  return pg_catalog.jsonb_build_object(
    'challenge_id', v_challenge.id, 'challenge', auth.url_encode(v_challenge.challenge),
    'expires_at', auth._epoch(v_challenge.expires_at));
end
$$;
comment on function auth.passkey_authentication_options(inet) is
  'POST /passkeys/authentication/options: a challenge for a discoverable sign-in (no user named); AUL02 past '
  'rate_limit_passkey per 5 minutes from p_ip.';
grant execute on function auth.passkey_authentication_options(inet) to authgres_service;

create or replace function auth.webauthn_public_key(p_credential_id bytea) returns bytea
  language sql stable security definer
  set search_path = ''
  return (select c.public_key from auth.webauthn_credentials c where c.credential_id = p_credential_id);
comment on function auth.webauthn_public_key(bytea) is
  'The registered public key of a credential id (NULL when unknown), to check an assertion''s signature with; '
  'whose credential it is, and whether it may be used so, is decided when the result is recorded.';
grant execute on function auth.webauthn_public_key(bytea) to authgres_service;

create or replace function auth.sign_in_with_passkey(
  p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_user_handle bytea, p_sign_count bigint,
  p_backed_up boolean, p_user_agent text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_credential auth.webauthn_credentials;
  v_user auth.users;
begin
  perform auth._consume_webauthn_challenge(p_challenge_id, 'authentication', null, p_challenge);
  select * into v_credential from auth.webauthn_credentials
   where credential_id = p_credential_id and factor_id is null for no key update;
  -- The user handle the authenticator returned must name the passkey's own user.
  if not found or p_user_handle is distinct from pg_catalog.convert_to(v_credential.user_id::text, 'UTF8') then
    raise exception using errcode = 'AUW03', message = 'Credential verification failed';
  end if;
  select * into v_user from auth.users where id = v_credential.user_id and deleted_at is null;
  if not found then
    raise exception using errcode = 'AUW03', message = 'Credential verification failed';
  end if;
  if auth._sign_count_regressed(v_credential.sign_count, p_sign_count) then
    -- Committed, with the spent challenge: the refusal of a possibly cloned authenticator stays on record.
    perform auth._audit(v_user, 'passkey_sign_count_regression', 'account', p_ip, pg_catalog.jsonb_build_object(
      'passkey_id', v_credential.id, 'stored_sign_count', v_credential.sign_count, 'sign_count', p_sign_count));
    return pg_catalog.jsonb_build_object('error', 'AUW03', 'message', 'Credential verification failed');
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUS06', message = 'User is banned';
  end if;
  if v_user.email is not null and v_user.email <> '' and v_user.email_confirmed_at is null then
    raise exception using errcode = 'AUS04', message = 'Email not confirmed';
  end if;
  update auth.webauthn_credentials
     set sign_count = p_sign_count, backed_up = coalesce(p_backed_up, backed_up),
         last_used_at = pg_catalog.now(), updated_at = pg_catalog.now()
   where id = v_credential.id;
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', 'passkey', 'passkey_id', v_credential.id));
  return auth._start_session(v_user, 'passkey', p_user_agent, p_ip);
end
$$;
comment on function auth.sign_in_with_passkey(uuid, bytea, bytea, bytea, bigint, boolean, text, inet) is
  'POST /passkeys/authentication/verify, once the service verified the assertion (signature, origin, RP id, '
  'user verification): spends the challenge and starts a session (amr passkey) for the passkey''s user. '
  'AUW03 for another user''s handle, an unknown credential, or a signature counter that went back (audited '
  'passkey_sign_count_regression, committed).';
grant execute on function auth.sign_in_with_passkey(uuid, bytea, bytea, bytea, bigint, boolean, text, inet)
  to authgres_service;

create or replace function auth._passkey_of(p_user_id uuid, p_passkey_id uuid) returns auth.webauthn_credentials
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_credential auth.webauthn_credentials;
begin
  select * into v_credential from auth.webauthn_credentials
   where id = p_passkey_id and user_id = p_user_id and factor_id is null for no key update;
  if not found then
    raise exception using errcode = 'AUW06', message = 'Passkey not found';
  end if;
  return v_credential;
end
$$;
comment on function auth._passkey_of(uuid, uuid) is 'The user''s passkey, locked, or AUW06.';

create or replace function auth.list_passkeys(p_access_token text) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users := (auth._signed_in(p_access_token)).usr;
begin
  return coalesce((select pg_catalog.jsonb_agg(auth._passkey_json(c) order by c.created_at)
                     from auth.webauthn_credentials c where c.user_id = v_user.id and c.factor_id is null),
                  '[]'::jsonb);
end
$$;
comment on function auth.list_passkeys(text) is 'GET /passkeys: the signed-in user''s passkeys, oldest first.';
grant execute on function auth.list_passkeys(text) to authgres_service;

create or replace function auth.update_passkey(
  p_access_token text, p_passkey_id uuid, p_friendly_name text, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users := (auth._signed_in(p_access_token)).usr;
  v_credential auth.webauthn_credentials;
begin
  if coalesce(p_friendly_name, '') = '' then
    raise exception using errcode = 'AUV01', message = 'friendly_name is required';
  end if;
  if pg_catalog.length(p_friendly_name) > 120 then
    raise exception using errcode = 'AUV01', message = 'friendly_name must be 120 characters or less';
  end if;
  v_credential := auth._passkey_of(v_user.id, p_passkey_id);
  update auth.webauthn_credentials set friendly_name = p_friendly_name, updated_at = pg_catalog.now()
   where id = v_credential.id
  returning * into v_credential;
  perform auth._audit(v_user, 'passkey_updated', 'user', p_ip, pg_catalog.jsonb_build_object('passkey_id', v_credential.id));
  return auth._passkey_json(v_credential);
end
$$;
comment on function auth.update_passkey(text, uuid, text, inet) is
  'PATCH /passkeys/{id}: renames one of the user''s passkeys (1 to 120 characters). AUW06 when it is not theirs.';
grant execute on function auth.update_passkey(text, uuid, text, inet) to authgres_service;

create or replace function auth.delete_passkey(p_access_token text, p_passkey_id uuid, p_ip inet default null)
  returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
  v_credential auth.webauthn_credentials;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  perform auth._require_passkey_aal(v_ctx.usr, v_ctx.sess);
  -- Removals of one user queue here, so two cannot each leave the other as the last way in.
  perform from auth.users where id = (v_ctx.usr).id for no key update;
  v_credential := auth._passkey_of((v_ctx.usr).id, p_passkey_id);
  if coalesce((v_ctx.usr).encrypted_password, '') = ''
     and not exists (select from auth.identities where user_id = (v_ctx.usr).id)
     and not exists (select from auth.webauthn_credentials
                      where user_id = (v_ctx.usr).id and factor_id is null and id <> v_credential.id) then
    raise exception using errcode = 'AUW07',
      message = 'This passkey is the only way to sign in to this account: add a password or another passkey first';
  end if;
  delete from auth.webauthn_credentials where id = v_credential.id;
  perform auth._audit(v_ctx.usr, 'passkey_deleted', 'user', p_ip, pg_catalog.jsonb_build_object('passkey_id', v_credential.id));
end
$$;
comment on function auth.delete_passkey(text, uuid, inet) is
  'DELETE /passkeys/{id}: removes one of the user''s passkeys. AUW06 when it is not theirs; AUW07 when it is '
  'the last way in (no password, no identity, no other passkey).';
grant execute on function auth.delete_passkey(text, uuid, inet) to authgres_service;

create or replace function auth.admin_list_passkeys(p_admin_token text, p_user_id uuid) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  perform auth._require_admin(p_admin_token);
  perform auth._admin_user(p_user_id);
  return coalesce((select pg_catalog.jsonb_agg(auth._passkey_json(c) order by c.created_at)
                     from auth.webauthn_credentials c where c.user_id = p_user_id and c.factor_id is null),
                  '[]'::jsonb);
end
$$;
comment on function auth.admin_list_passkeys(text, uuid) is 'GET /admin/users/{id}/passkeys.';
grant execute on function auth.admin_list_passkeys(text, uuid) to authgres_service;

create or replace function auth.admin_delete_passkey(
  p_admin_token text, p_user_id uuid, p_passkey_id uuid, p_ip inet default null
) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
  v_credential auth.webauthn_credentials;
begin
  perform auth._require_admin(p_admin_token);
  v_user := auth._admin_user(p_user_id);
  v_credential := auth._passkey_of(p_user_id, p_passkey_id);
  delete from auth.webauthn_credentials where id = v_credential.id;
  perform auth._audit_admin('passkey_deleted', v_user, p_ip, pg_catalog.jsonb_build_object('passkey_id', v_credential.id));
end
$$;
comment on function auth.admin_delete_passkey(text, uuid, uuid, inet) is
  'DELETE /admin/users/{id}/passkeys/{passkey_id} (audited passkey_deleted, the admin as actor).';
grant execute on function auth.admin_delete_passkey(text, uuid, uuid, inet) to authgres_service;
