-- 0013: two roles for least privilege.
--   authgres_authenticator  what an application's login role is granted to call auth.authenticate()
--                           and auth.authenticate_api_key() (and the definer auth.access_token_claims()
--                           inside them); the request roles anon and authenticated no longer can.
--   authgres_hook           what hooks run as: a hook reads and writes what its installation grants
--                           this role, and nothing of the auth schema's secrets.
reset role;  -- roles are made by the connecting superuser, whatever an earlier file set
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'authgres_authenticator') then
    create role authgres_authenticator nologin noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authgres_hook') then
    create role authgres_hook nologin noinherit;
  end if;
end
$$;
grant usage on schema auth to authgres_authenticator;
-- The owner creates the hook runner as this role (sql/functions/hooks.sql).
grant authgres_hook to authgres_owner;

-- Until now every role could execute these; their function file grants them anew.
do $$
declare
  v_function text;
begin
  foreach v_function in array array['auth.access_token_claims(text)', 'auth.authenticate(text)',
                                     'auth.authenticate_api_key(text)'] loop
    if pg_catalog.to_regprocedure(v_function) is not null then
      execute pg_catalog.format('revoke execute on function %s from public', v_function);
    end if;
  end loop;
end
$$;

set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0013');
