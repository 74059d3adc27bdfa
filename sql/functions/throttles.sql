-- throttles.sql: fixed-window throttles shared by every service process.
set local role authgres_owner;

create or replace function auth._count_hit(p_key text, p_window interval) returns auth.rate_limits
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_row auth.rate_limits;
begin
  insert into auth.rate_limits as r (key, window_started_at, hits)
  values (p_key, pg_catalog.now(), 1)
  on conflict (key) do update
     set window_started_at = case when r.window_started_at + p_window <= pg_catalog.now()
                                  then pg_catalog.now() else r.window_started_at end,
         hits = case when r.window_started_at + p_window <= pg_catalog.now() then 1 else r.hits + 1 end
  returning * into v_row;
  return v_row;
end
$$;
comment on function auth._count_hit(text, interval) is
  'Counts one hit on p_key in its current window (a new window once the last one ended); the row after it.';

create or replace function auth._seconds_left(p_row auth.rate_limits, p_window interval) returns integer
  language sql stable
  return pg_catalog.ceil(extract(epoch from p_row.window_started_at + p_window - pg_catalog.now()))::integer;
comment on function auth._seconds_left(auth.rate_limits, interval) is 'Seconds until a throttle''s window ends.';

create or replace function auth._throttle(
  p_key text, p_limit integer, p_window interval, p_errcode text default 'AUL01'
) returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_row auth.rate_limits := auth._count_hit(p_key, p_window);
begin
  if v_row.hits > p_limit then
    raise exception using errcode = p_errcode,
      message = 'For security purposes, you can only request this after '
        || auth._seconds_left(v_row, p_window) || ' seconds.',
      detail = auth._seconds_left(v_row, p_window)::text;
  end if;
end
$$;
comment on function auth._throttle(text, integer, interval, text) is
  'Counts one hit on p_key; raises p_errcode (detail: seconds to wait) past p_limit hits per window.';
