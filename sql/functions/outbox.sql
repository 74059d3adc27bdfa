-- outbox.sql: The email outbox the service's mailer drains: leased, completed, retried with
-- backoff, dead after the last attempt.
set local role authgres_owner;

create or replace function auth.claim_outbox(p_limit integer default 10, p_lease_seconds integer default 60)
  returns setof auth.email_outbox
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  -- SKIP LOCKED lets several mailers drain one outbox; the lease hands an email whose mailer died
  -- mid-send to another one later.
  return query
  update auth.email_outbox o
     set status = 'sending', attempts = o.attempts + 1,
         leased_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_seconds)
   where o.id in (
     select d.id from auth.email_outbox d
      where (d.status = 'pending' and d.next_attempt_at <= pg_catalog.now())
         or (d.status = 'sending' and d.leased_until <= pg_catalog.now())
      order by d.id
      limit p_limit
      for update skip locked)
  returning o.*;
end
$$;
comment on function auth.claim_outbox(integer, integer) is 'Leases up to p_limit due emails to the calling mailer.';
grant execute on function auth.claim_outbox(integer, integer) to authgres_service;

create or replace function auth.complete_outbox(p_id bigint) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  update auth.email_outbox
     set status = 'sent', sent_at = pg_catalog.now(), leased_until = null, last_error = null,
         payload = payload - 'token' - 'token_hash'
   where id = p_id and status = 'sending';
end
$$;
comment on function auth.complete_outbox(bigint) is 'Marks an email sent and removes its secrets from the outbox.';
grant execute on function auth.complete_outbox(bigint) to authgres_service;

create or replace function auth.fail_outbox(
  p_id bigint, p_error text, p_max_attempts integer default 8, p_retry_base_seconds double precision default 5
) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  update auth.email_outbox
     set status = case when attempts >= p_max_attempts then 'dead' else 'pending' end,
         payload = case when attempts >= p_max_attempts then payload - 'token' - 'token_hash' else payload end,
         last_error = pg_catalog.left(p_error, 1000), leased_until = null,
         next_attempt_at = pg_catalog.now()
           + pg_catalog.make_interval(secs => least(p_retry_base_seconds * 2 ^ (attempts - 1), 3600))
   where id = p_id and status = 'sending';
end
$$;
comment on function auth.fail_outbox(bigint, text, integer, double precision) is
  'Records a failed delivery: retried with exponential backoff, dead (with last_error kept) after p_max_attempts.';
grant execute on function auth.fail_outbox(bigint, text, integer, double precision) to authgres_service;

create or replace function auth.outbox_stats(
  out pending bigint, out sending bigint, out dead bigint, out oldest_seconds double precision
)
  language sql stable security definer
  set search_path = ''
as $$
  -- Both counts read partial indexes (email_outbox_due_idx, email_outbox_dead_idx): what a scrape
  -- costs follows the emails waiting and dead, not the sent ones kept for a week.
  select pg_catalog.count(*) filter (where o.status = 'pending'),
         pg_catalog.count(*) filter (where o.status = 'sending'),
         (select pg_catalog.count(*) from auth.email_outbox d where d.status = 'dead'),
         coalesce(extract(epoch from pg_catalog.now() - pg_catalog.min(o.created_at))::double precision, 0)
    from auth.email_outbox o
   where o.status in ('pending', 'sending');
$$;
comment on function auth.outbox_stats() is
  'For the metrics: emails pending, being sent and dead, and the age in seconds of the oldest not yet sent (0 when none).';
grant execute on function auth.outbox_stats() to authgres_service;
