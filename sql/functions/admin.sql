-- admin.sql: The admin API: service_role tokens only.
--
-- Every admin action is audited with the admin as actor and the user in its traits.
set local role authgres_owner;

create or replace function auth._require_admin(p_token text) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_claims jsonb := (auth._authorize(p_token, false)).claims;
begin
  if coalesce(v_claims ->> 'role', '') not in ('service_role', 'supabase_admin') then
    raise exception using errcode = 'AUA01', message = 'User not allowed';
  end if;
  return v_claims;
end
$$;
comment on function auth._require_admin(text) is 'The claims of an admin token (role service_role); AUA01 for any other.';

create or replace function auth._admin_user(p_user_id uuid) returns auth.users
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  select * into v_user from auth.users where id = p_user_id;
  if not found then
    raise exception using errcode = 'AUA02', message = 'User not found';
  end if;
  return v_user;
end
$$;
comment on function auth._admin_user(uuid) is 'The user, or AUA02.';

create or replace function auth.admin_list_users(
  p_admin_token text, p_page integer default 1, p_per_page integer default 50, p_filter text default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_filter text := '%' || coalesce(p_filter, '') || '%';
begin
  perform auth._require_admin(p_admin_token);
  if p_page < 1 or p_per_page < 1 or p_per_page > 1000 then
    raise exception using errcode = 'AUA04', message = 'Bad Pagination Parameters';
  end if;
  return pg_catalog.jsonb_build_object(
    'aud', (select s.jwt_aud from auth.settings s),
    'total', (select pg_catalog.count(*) from auth.users u
               where p_filter is null or u.email ilike v_filter or u.raw_user_meta_data ->> 'full_name' ilike v_filter),
    'users', coalesce((
      select pg_catalog.jsonb_agg(auth._user_json(u) order by u.created_at desc, u.id)
        from (select * from auth.users u
               where p_filter is null or u.email ilike v_filter or u.raw_user_meta_data ->> 'full_name' ilike v_filter
               order by u.created_at desc, u.id
               limit p_per_page offset (p_page - 1) * p_per_page) u), '[]'::jsonb));
end
$$;
comment on function auth.admin_list_users(text, integer, integer, text) is
  'GET /admin/users: a page of users, newest first ({users, aud, total}); filter matches email or full_name.';
grant execute on function auth.admin_list_users(text, integer, integer, text) to authgres_service;

create or replace function auth.admin_get_user(p_admin_token text, p_user_id uuid) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  perform auth._require_admin(p_admin_token);
  return auth._user_json(auth._admin_user(p_user_id));
end
$$;
comment on function auth.admin_get_user(text, uuid) is 'GET /admin/users/{id}.';
grant execute on function auth.admin_get_user(text, uuid) to authgres_service;

create or replace function auth.admin_create_user(
  p_admin_token text, p_attributes jsonb, p_password_hash text default null, p_ban_seconds bigint default null,
  p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_email text;
  v_id uuid := coalesce((p_attributes ->> 'id')::uuid, pg_catalog.gen_random_uuid());
  v_confirmed boolean := coalesce((p_attributes ->> 'email_confirm')::boolean, false);
  v_phone text;
  v_phone_confirmed boolean := coalesce((p_attributes ->> 'phone_confirm')::boolean, false);
  v_identity_data jsonb;
  v_providers jsonb := '[]';
  v_user auth.users;
begin
  perform auth._require_admin(p_admin_token);
  select * into v_settings from auth.settings;
  if nullif(p_attributes ->> 'email', '') is null and nullif(p_attributes ->> 'phone', '') is null then
    raise exception using errcode = 'AUA04', message = 'Cannot create a user without either an email or phone';
  end if;
  if v_id = '00000000-0000-0000-0000-000000000000' then
    raise exception using errcode = 'AUA04', message = 'ID cannot be a nil uuid';
  end if;
  if nullif(p_attributes ->> 'email', '') is not null then
    v_email := auth._normalize_email(p_attributes ->> 'email');
    if exists (select from auth.users where email = v_email) then
      raise exception using errcode = 'AUA03', message = 'A user with this email address has already been registered';
    end if;
    v_providers := v_providers || '["email"]';
  end if;
  if nullif(p_attributes ->> 'phone', '') is not null then
    v_phone := auth._normalize_phone(p_attributes ->> 'phone');
    if exists (select from auth.users where phone = v_phone) then
      raise exception using errcode = 'AUA05', message = 'A user with this phone number has already been registered';
    end if;
    v_providers := v_providers || '["phone"]';
  end if;
  v_identity_data := pg_catalog.jsonb_build_object('sub', v_id, 'email_verified', v_confirmed and v_email is not null,
                                                   'phone_verified', v_phone_confirmed and v_phone is not null)
                     || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('email', v_email, 'phone', v_phone));
  insert into auth.users (
    id, aud, role, email, phone, encrypted_password, email_confirmed_at, phone_confirmed_at, raw_app_meta_data,
    raw_user_meta_data, banned_until
  ) values (
    v_id, coalesce(p_attributes ->> 'aud', v_settings.jwt_aud), coalesce(p_attributes ->> 'role', v_settings.jwt_default_role),
    v_email, v_phone, p_password_hash, case when v_confirmed and v_email is not null then pg_catalog.now() end,
    case when v_phone_confirmed and v_phone is not null then pg_catalog.now() end,
    coalesce(p_attributes -> 'app_metadata', '{}')
      || pg_catalog.jsonb_build_object('provider', v_providers -> 0, 'providers', v_providers),
    coalesce(p_attributes -> 'user_metadata', '{}') || v_identity_data,
    case when p_ban_seconds > 0 then pg_catalog.now() + pg_catalog.make_interval(secs => p_ban_seconds) end
  )
  returning * into v_user;
  if v_email is not null then
    insert into auth.identities (provider_id, user_id, identity_data, provider)
    values (v_id::text, v_id, v_identity_data - 'phone', 'email');
  end if;
  if v_phone is not null then
    insert into auth.identities (provider_id, user_id, identity_data, provider)
    values (v_id::text, v_id, v_identity_data - 'email', 'phone');
  end if;
  perform auth._audit_admin('user_signedup', v_user, p_ip);
  return auth._user_json(v_user);
end
$$;
comment on function auth.admin_create_user(text, jsonb, text, bigint, inet) is
  'POST /admin/users: email, email_confirm, phone, phone_confirm, user_metadata, app_metadata, role, aud, id; password hashed '
  'by the service or imported (bcrypt/argon2); ban for p_ban_seconds.';
grant execute on function auth.admin_create_user(text, jsonb, text, bigint, inet) to authgres_service;

create or replace function auth.admin_update_user(
  p_admin_token text, p_user_id uuid, p_attributes jsonb, p_password_hash text default null,
  p_ban_seconds bigint default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
  v_email text;
  v_phone text;
begin
  perform auth._require_admin(p_admin_token);
  v_user := auth._admin_user(p_user_id);
  if nullif(p_attributes ->> 'phone', '') is not null then
    v_phone := auth._normalize_phone(p_attributes ->> 'phone');
    if v_phone is distinct from v_user.phone then
      if exists (select from auth.users where phone = v_phone and id <> v_user.id) then
        raise exception using errcode = 'AUA05', message = 'A user with this phone number has already been registered';
      end if;
      update auth.users set phone = v_phone, phone_change = '', phone_confirmed_at = null, updated_at = pg_catalog.now(),
             raw_user_meta_data = raw_user_meta_data || pg_catalog.jsonb_build_object('phone', v_phone, 'phone_verified', false)
       where id = v_user.id returning * into v_user;
      insert into auth.identities (provider_id, user_id, identity_data, provider)
      values (v_user.id::text, v_user.id, pg_catalog.jsonb_build_object(
                'sub', v_user.id, 'phone', v_phone, 'email_verified', false, 'phone_verified', false), 'phone')
      on conflict (provider_id, provider) do update
         set identity_data = auth.identities.identity_data
                             || pg_catalog.jsonb_build_object('phone', v_phone, 'phone_verified', false),
             updated_at = pg_catalog.now();
      if not coalesce(v_user.raw_app_meta_data -> 'providers', '[]') ? 'phone' then
        update auth.users
           set raw_app_meta_data = raw_app_meta_data || pg_catalog.jsonb_build_object(
                 'provider', coalesce(raw_app_meta_data -> 'provider', '"phone"'),
                 'providers', coalesce(raw_app_meta_data -> 'providers', '[]') || '["phone"]')
         where id = v_user.id returning * into v_user;
      end if;
    end if;
  end if;
  if coalesce((p_attributes ->> 'phone_confirm')::boolean, false) and v_user.phone is not null then
    v_user := auth._confirm_phone(v_user);
  end if;
  if p_attributes ->> 'email' is not null then
    v_email := auth._normalize_email(p_attributes ->> 'email');
    if v_email is distinct from v_user.email then
      if exists (select from auth.users where email = v_email and id <> v_user.id) then
        raise exception using errcode = 'AUA03', message = 'A user with this email address has already been registered';
      end if;
      update auth.users set email = v_email, email_change = '', updated_at = pg_catalog.now(),
             raw_user_meta_data = raw_user_meta_data || pg_catalog.jsonb_build_object('email', v_email)
       where id = v_user.id returning * into v_user;
      update auth.identities set identity_data = identity_data || pg_catalog.jsonb_build_object('email', v_email)
       where user_id = v_user.id and provider = 'email';
    end if;
  end if;
  if coalesce((p_attributes ->> 'email_confirm')::boolean, false) then
    v_user := auth._confirm_email(v_user);
  end if;
  update auth.users
     set raw_user_meta_data = auth._merge_metadata(raw_user_meta_data, p_attributes -> 'user_metadata'),
         raw_app_meta_data = auth._merge_metadata(raw_app_meta_data, p_attributes -> 'app_metadata'),
         role = coalesce(p_attributes ->> 'role', role),
         banned_until = case when p_ban_seconds is null then banned_until
                             when p_ban_seconds = 0 then null
                             else pg_catalog.now() + pg_catalog.make_interval(secs => p_ban_seconds) end,
         updated_at = pg_catalog.now()
   where id = v_user.id
  returning * into v_user;
  if p_ban_seconds > 0 then
    delete from auth.sessions where user_id = v_user.id;
    perform auth._audit_admin('user_banned', v_user, p_ip,
                              pg_catalog.jsonb_build_object('banned_until', v_user.banned_until));
  elsif p_ban_seconds = 0 then
    perform auth._audit_admin('user_unbanned', v_user, p_ip);
  end if;
  if p_password_hash is not null then
    update auth.users set encrypted_password = p_password_hash where id = v_user.id returning * into v_user;
    delete from auth.sessions where user_id = v_user.id;
    perform auth._audit_admin('user_updated_password', v_user, p_ip);
    perform auth._user_event(v_user.id, 'password_changed');
  end if;
  if p_attributes <> '{}' then
    perform auth._audit_admin('user_modified', v_user, p_ip,
                              pg_catalog.jsonb_build_object('fields', (select pg_catalog.jsonb_agg(k) from pg_catalog.jsonb_object_keys(p_attributes) k)));
  end if;
  return auth._user_json(v_user);
end
$$;
comment on function auth.admin_update_user(text, uuid, jsonb, text, bigint, inet) is
  'PUT /admin/users/{id}: email (and email_confirm), phone (and phone_confirm), metadata (merged), role, password (ends the user''s '
  'sessions), ban for p_ban_seconds (0 lifts a ban; a ban ends the sessions).';
grant execute on function auth.admin_update_user(text, uuid, jsonb, text, bigint, inet) to authgres_service;

create or replace function auth.admin_delete_user(p_admin_token text, p_user_id uuid, p_soft boolean default false, p_ip inet default null)
  returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  perform auth._require_admin(p_admin_token);
  v_user := auth._admin_user(p_user_id);
  perform auth._audit_admin('user_deleted', v_user, p_ip, pg_catalog.jsonb_build_object('soft', p_soft));
  perform auth._delete_user(v_user, p_soft);
  return '{}';
end
$$;
comment on function auth.admin_delete_user(text, uuid, boolean, inet) is
  'DELETE /admin/users/{id}: removes the user, or with p_soft keeps the row, freed of address, secrets and sessions.';
grant execute on function auth.admin_delete_user(text, uuid, boolean, inet) to authgres_service;

create or replace function auth.admin_invite_user(
  p_admin_token text, p_email text, p_data jsonb default '{}', p_redirect_to text default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
begin
  perform auth._require_admin(p_admin_token);
  select * into v_user from auth.users where email = v_email;
  if found and v_user.email_confirmed_at is not null then
    raise exception using errcode = 'AUA03', message = 'A user with this email address has already been registered';
  end if;
  if not found then
    v_user := auth._new_email_user(v_email, null, p_data, p_ip);
  end if;
  update auth.users set invited_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._queue_email(v_user, 'invite', v_email, p_redirect_to);
  perform auth._audit_admin('user_invited', v_user, p_ip);
  return auth._user_json(auth._admin_user(v_user.id));
end
$$;
comment on function auth.admin_invite_user(text, text, jsonb, text, inet) is
  'POST /invite: creates (or re-invites) an unconfirmed user and emails the invitation.';
grant execute on function auth.admin_invite_user(text, text, jsonb, text, inet) to authgres_service;

create or replace function auth.admin_generate_link(
  p_admin_token text, p_type text, p_email text, p_new_email text default null,
  p_password_hash text default null, p_data jsonb default '{}', p_redirect_to text default null,
  p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_email text := auth._normalize_email(p_email);
  v_type text := p_type;
  v_user auth.users;
  v_token_type text;
  v_address text := v_email;
  v_token record;
begin
  perform auth._require_admin(p_admin_token);
  if v_type not in ('signup', 'invite', 'magiclink', 'recovery', 'email_change_current', 'email_change_new') then
    raise exception using errcode = 'AUA04', message = pg_catalog.format('Invalid email action link type requested: %s', p_type);
  end if;
  select * into v_user from auth.users where email = v_email;
  if not found then
    if v_type in ('recovery', 'email_change_current', 'email_change_new') then
      raise exception using errcode = 'AUA02', message = 'User with this email not found';
    end if;
    if v_type = 'magiclink' then
      v_type := 'signup';  -- as GoTrue: a magic link for a new address signs it up
    end if;
    if v_type = 'signup' and p_password_hash is null then
      raise exception using errcode = 'AUA04', message = 'Password is required for signup links';
    end if;
    v_user := auth._new_email_user(v_email, p_password_hash, p_data, p_ip);
  elsif v_type in ('signup', 'invite') and v_user.email_confirmed_at is not null then
    raise exception using errcode = 'AUA03', message = 'A user with this email address has already been registered';
  end if;

  v_token_type := case v_type when 'signup' then 'confirmation' else v_type end;
  if v_type like 'email_change%' then
    if p_new_email is null then
      raise exception using errcode = 'AUA04', message = 'The new email address is required';
    end if;
    update auth.users set email_change = auth._normalize_email(p_new_email), email_change_confirm_status = 0
     where id = v_user.id returning * into v_user;
    v_address := case v_type when 'email_change_new' then v_user.email_change else v_user.email end;
  elsif v_type = 'invite' then
    update auth.users set invited_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  end if;
  select * into v_token from auth._issue_token(v_user, v_token_type, v_address, p_redirect_to);
  perform auth._audit_admin('generate_link', v_user, p_ip, pg_catalog.jsonb_build_object('type', v_type));
  return auth._user_json(v_user) || pg_catalog.jsonb_build_object(
    'email_otp', v_token.code, 'hashed_token', v_token.link_token,
    'verification_type', v_type, 'redirect_to', p_redirect_to);
end
$$;
comment on function auth.admin_generate_link(text, text, text, text, text, jsonb, text, inet) is
  'POST /admin/generate_link: issues the token a flow would email, and returns it with the user instead of sending it.';
grant execute on function auth.admin_generate_link(text, text, text, text, text, jsonb, text, inet) to authgres_service;

create or replace function auth.admin_audit(p_admin_token text, p_page integer default 1, p_per_page integer default 50)
  returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  perform auth._require_admin(p_admin_token);
  if p_page < 1 or p_per_page < 1 or p_per_page > 1000 then
    raise exception using errcode = 'AUA04', message = 'Bad Pagination Parameters';
  end if;
  return coalesce((
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'id', e.id, 'payload', e.payload, 'created_at', e.created_at, 'ip_address', e.ip_address)
             order by e.created_at desc, e.id)
      from (select * from auth.audit_log_entries order by created_at desc, id
             limit p_per_page offset (p_page - 1) * p_per_page) e), '[]'::jsonb);
end
$$;
comment on function auth.admin_audit(text, integer, integer) is 'GET /admin/audit: a page of audit entries, newest first.';
grant execute on function auth.admin_audit(text, integer, integer) to authgres_service;

create or replace function auth.admin_list_factors(p_admin_token text, p_user_id uuid) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  perform auth._require_admin(p_admin_token);
  perform auth._admin_user(p_user_id);
  return coalesce((select pg_catalog.jsonb_agg(auth._factor_json(f) order by f.created_at)
                     from auth.mfa_factors f where f.user_id = p_user_id), '[]'::jsonb);
end
$$;
comment on function auth.admin_list_factors(text, uuid) is 'GET /admin/users/{id}/factors.';
grant execute on function auth.admin_list_factors(text, uuid) to authgres_service;

create or replace function auth.admin_delete_factor(p_admin_token text, p_user_id uuid, p_factor_id uuid, p_ip inet default null)
  returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
  v_factor auth.mfa_factors;
begin
  perform auth._require_admin(p_admin_token);
  v_user := auth._admin_user(p_user_id);
  v_factor := auth._factor_of(p_user_id, p_factor_id);
  perform auth._remove_factor(v_user, v_factor);
  perform auth._audit(v_user, 'factor_deleted_by_admin', 'admin', p_ip,
                      pg_catalog.jsonb_build_object('factor_id', v_factor.id));
  return auth._factor_json(v_factor);
end
$$;
comment on function auth.admin_delete_factor(text, uuid, uuid, inet) is
  'DELETE /admin/users/{id}/factors/{factor_id}: answers the deleted factor.';
grant execute on function auth.admin_delete_factor(text, uuid, uuid, inet) to authgres_service;
