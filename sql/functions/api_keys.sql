-- api_keys.sql: per-user API keys: created, listed, revoked, and accepted as bearer credentials.
--
-- An API key is "ag_" followed by 256 random bits (base64url); only its SHA-256 is stored. Wherever an
-- access token is accepted, a key acts as its user at aal1 with amr "api_key" and no session, so the
-- same RLS policies apply to scripts (auth.authenticate_api_key for applications without PostgREST).
-- Revocation takes effect at the next request: every use looks the key up.
set local role authgres_owner;

create or replace function auth._api_key_claims(p_key text) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_key auth.api_keys;
  v_user auth.users;
  v_settings auth.settings;
  v_now bigint := auth._epoch(pg_catalog.now());
begin
  select * into v_key from auth.api_keys where key_digest = auth._token_hash(p_key);
  if not found or v_key.revoked_at is not null or v_key.expires_at <= pg_catalog.now() then
    raise exception using errcode = 'AUJ01', message = 'invalid API key: unknown, revoked or expired';
  end if;
  select * into strict v_user from auth.users where id = v_key.user_id;
  -- Coarse bookkeeping: at most one write a minute per key, not one per request.
  if v_key.last_used_at is null or v_key.last_used_at < pg_catalog.now() - interval '1 minute' then
    update auth.api_keys set last_used_at = pg_catalog.now() where id = v_key.id;
  end if;
  select * into v_settings from auth.settings;
  return pg_catalog.jsonb_build_object(
    'sub', v_user.id, 'aud', coalesce(v_user.aud, v_settings.jwt_aud),
    'exp', coalesce(auth._epoch(v_key.expires_at), v_now + v_settings.jwt_exp), 'iat', v_now,
    'email', coalesce(v_user.email, ''), 'phone', coalesce(v_user.phone, ''),
    'app_metadata', v_user.raw_app_meta_data, 'user_metadata', v_user.raw_user_meta_data,
    'role', coalesce(v_user.role, v_settings.jwt_default_role), 'aal', 'aal1',
    'amr', pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
             'method', 'api_key', 'timestamp', auth._epoch(v_key.created_at))),
    'api_key_id', v_key.id, 'is_anonymous', v_user.is_anonymous);
end
$$;
comment on function auth._api_key_claims(text) is
  'The claims an API key stands for: its user at aal1, amr api_key, no session. AUJ01 when unknown, revoked or expired.';

create or replace function auth.create_api_key(
  p_access_token text, p_name text, p_expires_in integer default null, p_ip inet default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
  v_raw text := 'ag_' || auth.url_encode(auth._random_bytes(32));
  v_key auth.api_keys;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  if p_name is null or pg_catalog.length(pg_catalog.btrim(p_name)) not between 1 and 100 then
    raise exception using errcode = 'AUV01', message = 'An API key needs a name of 1 to 100 characters';
  end if;
  if p_expires_in is not null and p_expires_in <= 0 then
    raise exception using errcode = 'AUV01', message = 'expires_in must be a positive number of seconds';
  end if;
  insert into auth.api_keys (user_id, name, key_prefix, key_digest, expires_at)
  values ((v_ctx.usr).id, pg_catalog.btrim(p_name), pg_catalog.left(v_raw, 9), auth._token_hash(v_raw),
          pg_catalog.now() + pg_catalog.make_interval(secs => p_expires_in))
  returning * into v_key;
  perform auth._audit(v_ctx.usr, 'api_key_created', 'user', p_ip,
                      pg_catalog.jsonb_build_object('api_key_id', v_key.id, 'name', v_key.name));
  return pg_catalog.jsonb_build_object('id', v_key.id, 'name', v_key.name, 'key', v_raw, 'prefix', v_key.key_prefix,
                                       'created_at', v_key.created_at, 'expires_at', v_key.expires_at);
end
$$;
comment on function auth.create_api_key(text, text, integer, inet) is
  'POST /api_keys: a new key for the signed-in user; the key is in this response and nowhere else.';
grant execute on function auth.create_api_key(text, text, integer, inet) to authgres_service;

create or replace function auth.list_api_keys(p_access_token text) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  return coalesce((
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'id', k.id, 'name', k.name, 'prefix', k.key_prefix, 'created_at', k.created_at,
             'expires_at', k.expires_at, 'last_used_at', k.last_used_at) order by k.created_at desc)
      from auth.api_keys k where k.user_id = (v_ctx.usr).id and k.revoked_at is null), '[]'::jsonb);
end
$$;
comment on function auth.list_api_keys(text) is 'GET /api_keys: the caller''s live keys, never the keys themselves.';
grant execute on function auth.list_api_keys(text) to authgres_service;

create or replace function auth.revoke_api_key(p_access_token text, p_key_id uuid, p_ip inet default null) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  update auth.api_keys set revoked_at = pg_catalog.now()
   where id = p_key_id and user_id = (v_ctx.usr).id and revoked_at is null;
  if not found then
    raise exception using errcode = 'AUK01', message = 'API key not found';
  end if;
  perform auth._audit(v_ctx.usr, 'api_key_revoked', 'user', p_ip, pg_catalog.jsonb_build_object('api_key_id', p_key_id));
  return pg_catalog.jsonb_build_object('id', p_key_id);
end
$$;
comment on function auth.revoke_api_key(text, uuid, inet) is 'DELETE /api_keys/{id}: the key stops working at once.';
grant execute on function auth.revoke_api_key(text, uuid, inet) to authgres_service;
