-- 0009: failed sign-ins in the audit log, and pruning of what only grows: old audit entries, delivered
-- emails, expired tokens, challenges and throttle windows. Pruning deletes in batches so that it never
-- holds long locks or bloats one transaction; the service calls it periodically.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0009');

alter table auth.settings
  add column audit_retention_days integer not null default 90 check (audit_retention_days >= 0);
comment on column auth.settings.audit_retention_days is 'Audit entries older than this many days are pruned (0 keeps them).';

create function auth.record_failed_login(p_email text, p_ip inet default null) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_user auth.users;
begin
  select * into v_user from auth.users where email = pg_catalog.lower(pg_catalog.btrim(p_email)) and deleted_at is null;
  -- An unknown address is recorded too (actor NULL, the address in traits): both are attacks' traces.
  insert into auth.audit_log_entries (payload, ip_address)
  values (pg_catalog.json_strip_nulls(pg_catalog.json_build_object(
            'actor_id', v_user.id, 'actor_username', coalesce(v_user.email, pg_catalog.left(p_email, 255)),
            'actor_via_sso', false, 'action', 'login_failed', 'log_type', 'account',
            'traits', pg_catalog.json_build_object('provider', 'email', 'known_user', v_user.id is not null))),
          coalesce(pg_catalog.host(p_ip), ''));
  if v_user.id is not null then
    perform auth._password_attempt_hook(v_user, false);
  end if;
end
$$;
comment on function auth.record_failed_login(text, inet) is
  'Audits a password sign-in that failed verification, and tells the password_verification_attempt hook.';

create function auth.prune(p_batch integer default 1000) returns integer
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_days integer := (select s.audit_retention_days from auth.settings s);
  v_deleted integer := 0;
  v_count integer;
begin
  if v_days > 0 then
    delete from auth.audit_log_entries where id in (
      select id from auth.audit_log_entries
       where created_at < pg_catalog.now() - pg_catalog.make_interval(days => v_days) limit p_batch);
    get diagnostics v_count = row_count;
    v_deleted := v_deleted + v_count;
  end if;
  delete from auth.email_outbox where id in (
    select id from auth.email_outbox
     where status in ('sent', 'dead') and created_at < pg_catalog.now() - interval '7 days' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.one_time_tokens where id in (
    select id from auth.one_time_tokens where expires_at < pg_catalog.now() limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.mfa_challenges where id in (
    select id from auth.mfa_challenges where expires_at < pg_catalog.now() - interval '1 day' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.rate_limits where key in (
    select key from auth.rate_limits where window_started_at < pg_catalog.now() - interval '1 day' limit p_batch);
  get diagnostics v_count = row_count;
  return v_deleted + v_count;
end
$$;
comment on function auth.prune(integer) is
  'Deletes at most p_batch rows of each kind that has outlived its use; returns how many. Call until it returns 0.';

grant execute on function auth.record_failed_login(text, inet), auth.prune(integer) to authgres_service;
