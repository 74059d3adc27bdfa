-- prune.sql: housekeeping: what has outlived its use is deleted in batches.
--
-- Pruning deletes in batches so that it never holds long locks or bloats one transaction; the
-- service calls it periodically.
set local role authgres_owner;

create or replace function auth.prune(p_batch integer default 1000) returns integer
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
  delete from auth.sms_outbox where id in (
    select id from auth.sms_outbox
     where status in ('sent', 'dead') and created_at < pg_catalog.now() - interval '7 days' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.one_time_tokens where id in (
    select id from auth.one_time_tokens where expires_at < pg_catalog.now() limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  -- PKCE flows: an auth code past its lifetime, or a flow whose emailed token is gone (used without the
  -- link, replaced, expired and pruned) before any code was issued.
  delete from auth.flow_state where id in (
    select f.id from auth.flow_state f
     where f.auth_code_issued_at < pg_catalog.now() - pg_catalog.make_interval(secs => (
             select s.flow_state_expiry from auth.settings s))
        or (f.auth_code_issued_at is null and f.authentication_method <> 'oauth'
            and not exists (select from auth.one_time_tokens t where t.flow_state_id = f.id))
        or (f.auth_code_issued_at is null and f.authentication_method = 'oauth'
            and f.created_at < pg_catalog.now() - auth._provider_state_lifetime())
     limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.pending_signups where id in (
    select id from auth.pending_signups where expires_at < pg_catalog.now() limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.user_events where id in (
    select id from auth.user_events where created_at < pg_catalog.now() - interval '1 day' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.mfa_challenges where id in (
    select id from auth.mfa_challenges where expires_at < pg_catalog.now() - interval '1 day' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.webauthn_challenges where id in (
    select id from auth.webauthn_challenges where expires_at < pg_catalog.now() limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  -- A used wallet message is kept an hour past its validity: the service's clock, which judged the
  -- validity, and the database's may differ a little.
  delete from auth.web3_used_messages where message_digest in (
    select message_digest from auth.web3_used_messages
     where valid_until < pg_catalog.now() - interval '1 hour' limit p_batch);
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
grant execute on function auth.prune(integer) to authgres_service;
