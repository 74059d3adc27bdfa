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

-- GET /sessions/events opens (p_after null) or resumes (p_after: the Last-Event-ID) a stream with this,
-- and an open stream catches up with it after its process lost the LISTEN connection, or polls it when
-- no LISTEN is possible. The stream LISTENs before it calls this, and skips NOTIFYed events up to
-- last_id; since a user's events commit in id order (auth._user_event), none is missed or sent twice.
create or replace function auth.user_events_since(p_access_token text, p_after bigint default null) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_limit constant integer := 1000;
  v_auth record;
  v_claims jsonb;
  v_user_id uuid;
  v_session_id uuid;
  v_end bigint;
  v_events jsonb;
  v_count integer;
begin
  if p_after < 0 then
    raise exception using errcode = 'AUV01', message = 'Last-Event-ID must be an event id';
  end if;
  begin
    select * into v_auth from auth._authorize(p_access_token, true);
    v_claims := v_auth.claims;
    v_user_id := (v_auth.usr).id;
    v_session_id := (v_auth.sess).id;
  exception when sqlstate 'AUJ03' or sqlstate 'AUJ04' then
    -- The session, or the account, is gone. A stream that had not yet been told still reads up to the
    -- event that tells it (then it ends); a stream opened now is refused.
    if p_after is null then
      raise;
    end if;
    v_claims := auth._verified_claims(p_access_token);
    v_user_id := (v_claims ->> 'sub')::uuid;
    select e.id into v_end from auth.user_events e
     where e.user_id = v_user_id and e.id > p_after
       and (e.kind = 'account_deleted'
            or (e.kind = 'session_revoked' and e.data ->> 'session_id' = v_claims ->> 'session_id'))
     order by e.id limit 1;
    if v_end is null then
      raise;
    end if;
    v_session_id := (v_claims ->> 'session_id')::uuid;
  end;

  if p_after is null then
    return pg_catalog.jsonb_build_object(
      'user_id', v_user_id, 'session_id', v_session_id, 'expires_at', v_claims -> 'exp', 'events', '[]'::jsonb,
      'more', false, 'last_id', coalesce((select pg_catalog.max(e.id) from auth.user_events e
                                          where e.user_id = v_user_id), 0));
  end if;
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(e) order by e.id), '[]'::jsonb), pg_catalog.count(*),
         coalesce(pg_catalog.max(e.id), p_after)
    into v_events, v_count, p_after
    from (select * from auth.user_events e
           where e.user_id = v_user_id and e.id > p_after and e.id <= coalesce(v_end, e.id)
           order by e.id limit v_limit) e;
  return pg_catalog.jsonb_build_object(
    'user_id', v_user_id, 'session_id', v_session_id, 'expires_at', v_claims -> 'exp', 'events', v_events,
    'more', v_count = v_limit and v_end is distinct from p_after, 'last_id', p_after);
end
$$;
comment on function auth.user_events_since(text, bigint) is
  'GET /sessions/events: who the token speaks for (user_id, session_id: null for an API key, expires_at), and '
  'the user''s events after p_after (at most 1000, oldest first; more: there are others), or with p_after '
  'null none and the newest id as last_id. A token whose session or account has ended since p_after still '
  'reads up to the event that says so.';
grant execute on function auth.user_events_since(text, bigint) to authgres_service;
