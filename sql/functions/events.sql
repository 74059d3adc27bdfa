-- events.sql: what a user's signed-in clients should learn at once (GET /sessions/events).
--
-- An event is a row of auth.user_events, written in the transaction that caused it, and a NOTIFY on the
-- channel authgres_user_events, which PostgreSQL delivers only when that transaction commits (and never
-- for one that rolls back). The payload is the event itself as JSON: {"id", "user_id", "kind", "data",
-- "created_at"}. Rows are kept a day, so a client that reconnects resumes from its last event id.
set local role authgres_owner;

create or replace function auth._user_event(p_user_id uuid, p_kind text, p_data jsonb default '{}') returns void
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_event auth.user_events;
begin
  -- One writer of a user's events at a time, until it commits: the user's events then become visible
  -- in the order of their ids, and "every event after id N" is a cursor without gaps, which is what
  -- GET /sessions/events resumes from. (Without it, an id taken by a transaction that commits after
  -- a later id's would be behind a cursor that already passed it.) Taken after the event's cause, at
  -- the end of the statements that emit it, so that a writer holding it seldom waits for anything else.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('authgres_user_events'),
                                           pg_catalog.hashtext(p_user_id::text));
  insert into auth.user_events (user_id, kind, data) values (p_user_id, p_kind, p_data)
  returning * into v_event;
  perform pg_catalog.pg_notify('authgres_user_events', pg_catalog.to_jsonb(v_event)::text);
end
$$;
comment on function auth._user_event(uuid, text, jsonb) is
  'Records an event for the user''s clients and NOTIFYs it on authgres_user_events at commit; a user''s '
  'events commit in id order.';

-- Sessions end in many places (sign-out, DELETE /sessions/{id}, admin sign-out, a replayed refresh
-- token, a timebox, a new password, a deleted user's cascade): one statement-level trigger sees them all.
create or replace function auth._sessions_ended() returns trigger
  language plpgsql volatile
  set search_path = ''
as $$
declare
  v_session record;
begin
  for v_session in select e.id, e.user_id from ended e order by e.user_id, e.id loop
    perform auth._user_event(v_session.user_id, 'session_revoked',
                             pg_catalog.jsonb_build_object('session_id', v_session.id));
  end loop;
  return null;
end
$$;
comment on function auth._sessions_ended() is 'Trigger: a session_revoked event for each deleted session.';

create or replace trigger sessions_ended
  after delete on auth.sessions
  referencing old table as ended
  for each statement execute function auth._sessions_ended();
