-- identities.sql: third-party sign-in and identity linking.
--
-- The service talks to the provider (the code exchange, the ID token's signature, the user info) and
-- hands over what the provider vouches for: its name, the subject, the claims (email, email_verified,
-- name ...). auth.sign_in_with_identity then, in one transaction, finds the identity (one row per
-- provider and subject), or links it to the signed-in user who asked to link it, or to an existing user
-- by a verified email, or creates the user; and answers a session, or for a PKCE flow its auth code.
-- Linking by email never trusts an unverified address: an unverified provider email only ever names a
-- new account, and then only when no other account has it.
set local role authgres_owner;

create or replace function auth._provider_email(p_claims jsonb, out email text, out verified boolean)
  language plpgsql immutable
  set search_path = ''
as $$
begin
  verified := coalesce(p_claims ->> 'email_verified', '') = 'true';  -- Apple sends "true" as text
  begin
    email := auth._normalize_email(p_claims ->> 'email');
  exception when sqlstate 'AUV01' then  -- none, or not an address: the identity has no email
    email := null;
    verified := false;
  end;
end
$$;
comment on function auth._provider_email(jsonb) is
  'The address a provider''s claims give (lower-cased; NULL when absent or malformed) and whether the '
  'provider says it verified it.';

create or replace function auth._add_provider(p_user auth.users, p_provider text) returns auth.users
  language sql volatile
  set search_path = ''
begin atomic
  update auth.users u
     set raw_app_meta_data = pg_catalog.jsonb_set(
           u.raw_app_meta_data || pg_catalog.jsonb_build_object('provider', coalesce(u.raw_app_meta_data ->> 'provider', p_provider)),
           '{providers}',
           (select pg_catalog.jsonb_agg(distinct i.provider) from auth.identities i where i.user_id = u.id)),
         updated_at = pg_catalog.now()
   where u.id = p_user.id
  returning u.*;
end;
comment on function auth._add_provider(auth.users, text) is
  'app_metadata.providers brought in line with the user''s identities (provider set when it had none).';

create or replace function auth._link_identity(
  p_user auth.users, p_provider text, p_subject text, p_claims jsonb, p_ip inet
) returns auth.users
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  insert into auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at)
  values (p_subject, p_user.id, p_claims, p_provider, pg_catalog.now());
  v_user := auth._add_provider(p_user, p_provider);
  perform auth._audit(v_user, 'identity_linked', 'user', p_ip, pg_catalog.jsonb_build_object('provider', p_provider));
  return v_user;
end
$$;
comment on function auth._link_identity(auth.users, text, text, jsonb, inet) is 'Adds a provider identity to a user.';

create or replace function auth._new_provider_user(
  p_provider text, p_subject text, p_claims jsonb, p_email text, p_verified boolean, p_ip inet
) returns auth.users
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_email text := p_email;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if v_settings.disable_signup then
    raise exception using errcode = 'AUS02', message = 'Signups not allowed for this instance';
  end if;
  if v_email is not null and exists (select from auth.users u where u.email = v_email and not u.is_sso_user) then
    v_email := null;  -- someone else's address (the provider did not verify it): the new user has none
  end if;
  if v_settings.hook_before_user_created is not null then
    perform auth._call_hook(v_settings.hook_before_user_created, pg_catalog.jsonb_build_object(
      'user', pg_catalog.jsonb_build_object('email', coalesce(v_email, ''), 'is_anonymous', false,
                                            'user_metadata', p_claims,
                                            'app_metadata', pg_catalog.jsonb_build_object('provider', p_provider)),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip))));
  end if;
  insert into auth.users (aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data)
  values (v_settings.jwt_aud, v_settings.jwt_default_role, v_email,
          case when p_verified and v_email is not null then pg_catalog.now() end,
          pg_catalog.jsonb_build_object('provider', p_provider, 'providers', pg_catalog.jsonb_build_array(p_provider)),
          p_claims)
  returning * into v_user;
  insert into auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at)
  values (p_subject, v_user.id, p_claims, p_provider, pg_catalog.now());
  perform auth._audit(v_user, 'user_signedup', 'team', p_ip, pg_catalog.jsonb_build_object('provider', p_provider));
  return v_user;
end
$$;
comment on function auth._new_provider_user(text, text, jsonb, text, boolean, inet) is
  'A new user signed up through a provider, with its identity: the provider''s address (confirmed when the '
  'provider verified it) unless another account has it. AUS02 when sign-ups are disabled.';

create or replace function auth._identity_user(
  p_provider text, p_subject text, p_claims jsonb, p_link_to uuid, p_ip inet
) returns auth.users
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_identity auth.identities;
  v_user auth.users;
  v_email record;
begin
  select * into v_email from auth._provider_email(p_claims);
  -- Concurrent first sign-ins of one provider account: the unique (provider_id, provider) makes the
  -- second wait and then find the first's identity.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('authgres identity ' || p_provider || ' ' || p_subject));
  select * into v_identity from auth.identities i
   where i.provider = p_provider and i.provider_id = p_subject
     for update;
  if found then
    if p_link_to is not null and v_identity.user_id <> p_link_to then
      raise exception using errcode = 'AUI01', message = 'Identity is already linked to another user';
    end if;
    update auth.identities
       set identity_data = p_claims, last_sign_in_at = pg_catalog.now(), updated_at = pg_catalog.now()
     where id = v_identity.id;
    update auth.users u
       set raw_user_meta_data = u.raw_user_meta_data || p_claims, updated_at = pg_catalog.now()
     where u.id = v_identity.user_id and u.deleted_at is null
    returning * into v_user;
    if not found then
      raise exception using errcode = 'AUJ03', message = 'User from this identity does not exist';
    end if;
    return v_user;
  end if;

  if p_link_to is not null then  -- a manual link: the signed-in user gets the identity
    select * into strict v_user from auth.users where id = p_link_to for update;
    if v_user.is_anonymous then
      -- An anonymous user becomes permanent, with the provider's address when it is verified and free.
      update auth.users u
         set is_anonymous = false,
             email = case when v_email.verified and not exists (
                                select from auth.users o where o.email = v_email.email and not o.is_sso_user)
                          then v_email.email end,
             email_confirmed_at = case when v_email.verified and not exists (
                                         select from auth.users o where o.email = v_email.email and not o.is_sso_user)
                                       then pg_catalog.now() end,
             raw_app_meta_data = u.raw_app_meta_data || pg_catalog.jsonb_build_object('provider', p_provider),
             raw_user_meta_data = u.raw_user_meta_data || p_claims
       where u.id = v_user.id
      returning * into v_user;
    end if;
    return auth._link_identity(v_user, p_provider, p_subject, p_claims, p_ip);
  end if;

  if v_email.verified then
    select * into v_user from auth.users u
     where u.email = v_email.email and not u.is_sso_user and u.deleted_at is null
       for update;
    if found then
      if v_user.email_confirmed_at is null then
        -- Nobody proved this address before the provider did: whoever registered it unconfirmed (perhaps
        -- in anticipation of its owner, "pre-hijacking") loses the password and sessions set without proof.
        update auth.users
           set email_confirmed_at = pg_catalog.now(), encrypted_password = null, updated_at = pg_catalog.now()
         where id = v_user.id
        returning * into v_user;
        delete from auth.sessions where user_id = v_user.id;
        update auth.identities
           set identity_data = identity_data || '{"email_verified": true}', updated_at = pg_catalog.now()
         where user_id = v_user.id and provider = 'email';
      end if;
      return auth._link_identity(v_user, p_provider, p_subject, p_claims, p_ip);
    end if;
  end if;
  return auth._new_provider_user(p_provider, p_subject, p_claims, v_email.email, v_email.verified, p_ip);
end
$$;
comment on function auth._identity_user(text, text, jsonb, uuid, inet) is
  'The user a provider identity signs in: the identity''s (claims refreshed), else p_link_to''s (a manual link; '
  'AUI01 when the identity is another user''s), else the confirmed account of the provider-verified address '
  '(an unconfirmed one is taken over: its password and sessions go), else a new user.';

create or replace function auth.sign_in_with_identity(
  p_provider text, p_subject text, p_claims jsonb, p_method text, p_state text default null,
  p_access_token text default null, p_provider_token bytea default null, p_provider_refresh_token bytea default null,
  p_user_agent text default null, p_ip inet default null,
  p_message_digest bytea default null, p_valid_until timestamptz default null, p_audit jsonb default '{}'
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_flow auth.flow_state;
  v_link_to uuid;
  v_deferred_link boolean;
  v_claims jsonb;
  v_user auth.users;
  v_code text;
begin
  if coalesce(p_subject, '') = '' or p_provider is null or p_method not in ('oauth', 'id_token', 'web3') then
    raise exception using errcode = 'AUV01', message = 'A provider identity needs a provider and a subject';
  end if;
  if p_method = 'web3' then  -- a signed wallet message: bounded per client IP, and good once
    if p_message_digest is null or p_valid_until is null or p_state is not null or p_access_token is not null then
      raise exception using errcode = 'AUV01', message = 'A wallet sign-in needs its message digest and validity';
    end if;
    if p_ip is not null then
      perform auth._throttle('web3-ip:' || pg_catalog.host(p_ip),
                             (select s.rate_limit_web3 from auth.settings s), interval '5 minutes', 'AUL02');
    end if;
    -- Two uses at once: the second waits for the first's row, then finds it.
    insert into auth.web3_used_messages (message_digest, valid_until)
    values (p_message_digest, p_valid_until)
    on conflict (message_digest) do nothing;
    if not found then
      raise exception using errcode = 'AUI07', message = 'Signed message was already used';
    end if;
  end if;
  if p_state is not null then  -- the callback of GET /authorize
    v_flow := auth._live_provider_flow(p_state);
    if v_flow.provider_type <> p_provider then
      raise exception using errcode = 'AUI05', message = 'OAuth state parameter is invalid, used or expired';
    end if;
    v_link_to := v_flow.linking_target_id;
  elsif p_access_token is not null then  -- the id_token grant with link_identity
    if not (select s.manual_linking_enabled from auth.settings s) then
      raise exception using errcode = 'AUI03', message = 'Manual linking is disabled';
    end if;
    v_link_to := ((auth._signed_in(p_access_token)).usr).id;
  end if;

  v_claims := p_claims || pg_catalog.jsonb_build_object('sub', p_subject, 'provider_id', p_subject);
  -- A PKCE link is made at the code exchange, by the browser holding the verifier: whoever sends another
  -- person through the provider with a link of his own gets a code that person's browser cannot exchange,
  -- and links nothing.
  v_deferred_link := v_flow.code_challenge is not null and v_link_to is not null;
  if not v_deferred_link then
    v_user := auth._identity_user(p_provider, p_subject, v_claims, v_link_to, p_ip);
    if v_user.banned_until > pg_catalog.now() then
      raise exception using errcode = 'AUS06', message = 'User is banned';
    end if;
    update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
    perform auth._audit(v_user, 'login', 'account', p_ip, pg_catalog.jsonb_build_object(
      'provider', p_provider, 'via', p_method) || coalesce(p_audit, '{}'));
  end if;

  if v_flow.code_challenge is not null then  -- PKCE: the code now, the session (and a link) at its exchange
    v_code := auth._issue_auth_code(v_flow.id, coalesce(v_user.id, v_link_to));
    update auth.flow_state
       set provider_access_token = p_provider_token, provider_refresh_token = p_provider_refresh_token,
           pending_link = case when v_deferred_link then pg_catalog.jsonb_build_object(
                            'provider', p_provider, 'subject', p_subject, 'claims', v_claims) end
     where id = v_flow.id;
    return pg_catalog.jsonb_build_object('auth_code', v_code, 'redirect_to', v_flow.referrer);
  end if;
  if v_flow.id is not null then
    delete from auth.flow_state where id = v_flow.id;  -- the state is spent
  end if;
  return auth._start_session(v_user, p_method, p_user_agent, p_ip)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('redirect_to', v_flow.referrer));
end
$$;
comment on function auth.sign_in_with_identity(text, text, jsonb, text, text, text, bytea, bytea, text, inet, bytea, timestamptz, jsonb) is
  'A sign-in the provider vouched for (p_method oauth: the callback, with the state of GET /authorize; '
  'id_token: POST /token?grant_type=id_token, with the access token of the user to link to, if any; web3: '
  'POST /token?grant_type=web3, a wallet''s signed message the service verified, used once: its digest is '
  'kept until p_valid_until, AUI07 when it was used before, AUL02 past rate_limit_web3 per 5 minutes from '
  'p_ip). p_audit: more details for the login''s audit entry. Finds, '
  'links or creates the user (auth._identity_user), then answers a session (and redirect_to), or for a PKCE '
  'flow {auth_code, redirect_to}, its row keeping the provider''s tokens as the service sealed them (and a '
  'link''s identity, which the code exchange adds). The state '
  'works once (AUI05 unknown, used, expired or another provider''s); AUI03 manual linking off; AUS02, AUS06.';
grant execute on function auth.sign_in_with_identity(text, text, jsonb, text, text, text, bytea, bytea, text, inet, bytea, timestamptz, jsonb)
  to authgres_service;

create or replace function auth.unlink_identity(p_access_token text, p_identity_id uuid, p_ip inet default null)
  returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
  v_identity auth.identities;
begin
  if not (select s.manual_linking_enabled from auth.settings s) then
    raise exception using errcode = 'AUI03', message = 'Manual linking is disabled';
  end if;
  v_user := (auth._signed_in(p_access_token)).usr;
  perform from auth.users where id = v_user.id for update;  -- two unlinks at once cannot leave none
  select * into v_identity from auth.identities where id = p_identity_id and user_id = v_user.id;
  if not found then
    raise exception using errcode = 'AUI04', message = 'Identity doesn''t exist';
  end if;
  if (select count(*) from auth.identities where user_id = v_user.id) <= 1 then
    raise exception using errcode = 'AUI02', message = 'User must have at least 1 identity after unlinking';
  end if;
  delete from auth.identities where id = v_identity.id;
  update auth.users u
     set raw_app_meta_data = u.raw_app_meta_data || pg_catalog.jsonb_build_object(
           'provider', case when u.raw_app_meta_data ->> 'provider' = v_identity.provider
                            then (select i.provider from auth.identities i where i.user_id = u.id
                                   order by i.created_at, i.id limit 1)
                            else u.raw_app_meta_data ->> 'provider' end,
           'providers', (select pg_catalog.jsonb_agg(distinct i.provider) from auth.identities i where i.user_id = u.id)),
         updated_at = pg_catalog.now()
   where u.id = v_user.id
  returning * into v_user;
  perform auth._audit(v_user, 'identity_unlinked', 'user', p_ip,
                      pg_catalog.jsonb_build_object('provider', v_identity.provider));
  return auth._user_json(v_user);
end
$$;
comment on function auth.unlink_identity(text, uuid, inet) is
  'DELETE /user/identities/{id}: removes one of the signed-in user''s identities. AUI03 manual linking off, '
  'AUI04 no such identity of this user, AUI02 it is the last one.';
grant execute on function auth.unlink_identity(text, uuid, inet) to authgres_service;
