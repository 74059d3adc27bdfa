-- 0015: the account lifecycle.
--   pending_signups     a sign-up that has not proven its address yet (AUTHGRES_SIGNUP_DEFERRED): the user,
--                       identity and session are made only when its emailed code or link is verified. Its
--                       code is an ordinary one-time token (hashed, attempt-limited, single-use) that points
--                       at the pending sign-up instead of a user.
--   user_events         what happened to a user that their signed-in clients should learn at once (a session
--                       revoked, the password changed, a factor changed, the account deleted), kept a day so
--                       that a reconnecting client can resume; each is also NOTIFYed on authgres_user_events.
--   verify_email_token  gains p_password_hash (the one-call password reset), and _issue_token and
--                       _queue_email a pending sign-up: their old signatures go.
--   settings            deferred sign-up, self-deletion mode, the before_user_deleted hook, fixed email codes.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0015');

create table auth.pending_signups (
  id uuid primary key default pg_catalog.gen_random_uuid(),
  email text not null check (email = pg_catalog.lower(email)),
  password_hash text,
  data jsonb not null default '{}',
  created_at timestamptz not null default pg_catalog.now(),
  expires_at timestamptz not null
);
create index pending_signups_email_idx on auth.pending_signups (email);
create index pending_signups_expires_at_idx on auth.pending_signups (expires_at);
alter table auth.pending_signups enable row level security;
comment on table auth.pending_signups is
  'Sign-ups waiting for their address to be proven; several may wait for one address, the first verified wins.';

alter table auth.one_time_tokens
  alter column user_id drop not null,
  add column pending_signup_id uuid references auth.pending_signups (id) on delete cascade,
  add constraint one_time_tokens_owner_check check ((user_id is null) <> (pending_signup_id is null));
create index one_time_tokens_pending_signup_id_idx on auth.one_time_tokens (pending_signup_id)
  where pending_signup_id is not null;

create table auth.user_events (
  id bigint generated always as identity primary key,
  user_id uuid not null,  -- no foreign key: account_deleted outlives its user
  kind text not null check (kind in ('session_revoked', 'password_changed', 'factor_changed', 'account_deleted')),
  data jsonb not null default '{}',
  created_at timestamptz not null default pg_catalog.now()
);
create index user_events_user_id_idx on auth.user_events (user_id, id);
create index user_events_created_at_idx on auth.user_events (created_at);
alter table auth.user_events enable row level security;
comment on table auth.user_events is
  'Events for a user''s clients (GET /sessions/events), kept a day for resumption; NOTIFYed on authgres_user_events.';

alter table auth.settings
  add column signup_deferred boolean not null default false,
  add column account_deletion text not null default 'hard' check (account_deletion in ('hard', 'soft')),
  add column hook_before_user_deleted text,
  add column mailer_test_otp jsonb not null default '{}' check (pg_catalog.jsonb_typeof(mailer_test_otp) = 'object'),
  add column mailer_test_otp_valid_until timestamptz;

drop function if exists auth.verify_email_token(text, text, text, text, text, inet);
drop function if exists auth._queue_email(auth.users, text, text, text, jsonb);
drop function if exists auth._issue_token(auth.users, text, text, text);
