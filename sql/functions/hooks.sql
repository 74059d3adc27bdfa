-- hooks.sql: hooks: SQL functions an installation names in its settings, called at fixed points of
-- the flows.
set local role authgres_owner;

-- Hooks run as authgres_hook, not as the owner of the auth schema: a hook reads and writes what the
-- installation grants that role, and cannot read password hashes, signing keys or token digests. A
-- definer function runs as its owner, so the runner is the one function of the schema owned by
-- authgres_hook (the owner may create it as that role; authgres_hook may use and create in the schema
-- only for the moment that takes).
grant usage, create on schema auth to authgres_hook;
set local role authgres_hook;
create or replace function auth._run_hook(p_function regproc, p_event jsonb) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_result jsonb;
begin
  execute pg_catalog.format('select %s($1)', p_function) using p_event into v_result;
  return v_result;
end
$$;
comment on function auth._run_hook(regproc, jsonb) is
  'Calls a hook function as authgres_hook, whatever role calls it; only auth._call_hook() does.';
revoke execute on function auth._run_hook(regproc, jsonb) from public;
grant execute on function auth._run_hook(regproc, jsonb) to authgres_owner;
set local role authgres_owner;
revoke usage, create on schema auth from authgres_hook;

create or replace function auth._call_hook(p_function text, p_event jsonb) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_result jsonb;
begin
  -- The hook runs in a subtransaction of the request's own: whatever it did is undone when it fails,
  -- and the request's statement_timeout bounds it.
  begin
    v_result := auth._run_hook(p_function::regproc, p_event);
  exception
    when query_canceled then
      raise exception using errcode = 'AUH02', message = pg_catalog.format('Hook %s timed out', p_function);
    when others then
      raise exception using errcode = 'AUH01',
        message = pg_catalog.format('Error running hook %s: %s', p_function, sqlerrm);
  end;
  if v_result ? 'error' then
    raise exception using errcode = 'AUH03',
      message = coalesce(v_result -> 'error' ->> 'message', 'Rejected by a hook');
  end if;
  return coalesce(v_result, '{}');
end
$$;
comment on function auth._call_hook(text, jsonb) is
  'Calls a configured hook f(event jsonb) returns jsonb, as authgres_hook. Raises AUH01 if it fails, AUH02 if it times out, '
  'AUH03 when it answers {"error": {"message": ...}}.';

create or replace function auth._password_attempt_hook(p_user auth.users, p_valid boolean) returns jsonb
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_hook text := (select s.hook_password_verification_attempt from auth.settings s);
  v_result jsonb;
begin
  if v_hook is null then
    return '{}';
  end if;
  v_result := auth._call_hook(v_hook, pg_catalog.jsonb_build_object('user_id', p_user.id, 'valid', p_valid));
  if (v_result ->> 'should_logout_user')::boolean then
    delete from auth.sessions where user_id = p_user.id;
  end if;
  return v_result;
end
$$;
comment on function auth._password_attempt_hook(auth.users, boolean) is
  'Tells the password_verification_attempt hook of a password check; ends the user''s sessions when it asks. '
  'Its answer (decision continue or reject, message) is returned.';
