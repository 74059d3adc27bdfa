-- settings.sql: The settings row the SQL functions read, written by the service at start-up.
set local role authgres_owner;

create or replace function auth.configure(p_settings jsonb, p_jwt_secret text) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_settings auth.settings;
  v_hook text;
begin
  select * into strict v_settings from auth.settings;
  v_settings := pg_catalog.jsonb_populate_record(v_settings, p_settings - 'singleton');
  v_settings.updated_at := pg_catalog.now();
  for v_hook in select unnest(array[v_settings.hook_custom_access_token, v_settings.hook_before_user_created,
                                    v_settings.hook_password_verification_attempt, v_settings.hook_send_email,
                                    v_settings.hook_before_user_deleted, v_settings.hook_send_sms]) loop
    if v_hook is not null and pg_catalog.to_regprocedure(v_hook || '(jsonb)') is null then
      raise exception using errcode = 'AUV01',
        message = pg_catalog.format('Hook function %s(jsonb) does not exist', v_hook);
    end if;
    if v_hook is not null and not exists (
         select from pg_catalog.pg_proc p
          where p.oid = pg_catalog.to_regprocedure(v_hook || '(jsonb)')
            and pg_catalog.has_function_privilege('authgres_hook', p.oid, 'EXECUTE')
            and pg_catalog.has_schema_privilege('authgres_hook', p.pronamespace, 'USAGE')) then
      raise exception using errcode = 'AUV01',
        message = pg_catalog.format('Hook function %s(jsonb) is not executable by authgres_hook, which hooks run as', v_hook);
    end if;
  end loop;
  delete from auth.settings;
  insert into auth.settings select v_settings.*;

  if p_jwt_secret is not null then
    if pg_catalog.length(p_jwt_secret) < 32 then
      raise exception using errcode = 'AUV01', message = 'The JWT secret must be at least 32 characters';
    end if;
    update auth.signing_keys set secret = p_jwt_secret
     where status = 'current' and kid is null and algorithm = 'HS256' and secret <> p_jwt_secret;
    if not exists (select from auth.signing_keys where status = 'current') then
      insert into auth.signing_keys (algorithm, secret, status, mac_key)
      values ('HS256', p_jwt_secret, 'current', auth._random_bytes(32));
    end if;
  end if;
end
$$;
comment on function auth.configure(jsonb, text) is
  'Writes the settings row (members of p_settings override) and the HS256 signing secret. '
  'The service calls it at start-up with its environment.';
grant execute on function auth.configure(jsonb, text) to authgres_service;
