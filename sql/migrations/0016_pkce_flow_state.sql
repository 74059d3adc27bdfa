-- 0016: PKCE (RFC 7636) flows.
--   flow_state          one row per PKCE flow: the client's code challenge, what the flow signs in with,
--                       and, once the emailed link is followed, the digest of the single-use auth code that
--                       POST /token?grant_type=pkce exchanges for a session. Built so that OAuth providers
--                       (a later migration) reuse it: provider_type and the provider's tokens.
--   one_time_tokens     flow_state_id: an emailed token of a PKCE flow points at its own flow, so every link
--                       sent stays bound to the flow that asked for it. Such tokens are not replaced by a
--                       newer one of the same purpose (the flows are distinct); the others still are, which
--                       the unique key, now partial, keeps to one per user and purpose.
--   settings            flow_state_expiry: seconds an auth code may be exchanged, counted from its issue.
--   sign_up, send_magic_link, send_recovery, resend, update_user (and their helpers) gain the code
--   challenge, verify_email_token p_link: their old signatures go.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0016');

create table auth.flow_state (
  id uuid primary key default pg_catalog.gen_random_uuid(),
  user_id uuid references auth.users (id) on delete cascade,
  auth_code_digest bytea unique,
  code_challenge text not null check (code_challenge ~ '^[A-Za-z0-9._~-]{43,128}$'),
  code_challenge_method text not null check (code_challenge_method in ('s256', 'plain')),
  authentication_method text not null check (authentication_method in (
    'email/signup', 'magiclink', 'recovery', 'email_change', 'invite', 'oauth', 'sso/saml')),
  provider_type text not null default 'email',
  provider_access_token bytea,
  provider_refresh_token bytea,
  referrer text,
  created_at timestamptz not null default pg_catalog.now(),
  auth_code_issued_at timestamptz,
  check ((auth_code_digest is null) = (auth_code_issued_at is null)),
  check (auth_code_digest is null or user_id is not null)
);
create index flow_state_user_id_idx on auth.flow_state (user_id) where user_id is not null;
create index flow_state_auth_code_issued_at_idx on auth.flow_state (auth_code_issued_at)
  where auth_code_issued_at is not null;
alter table auth.flow_state enable row level security;
comment on table auth.flow_state is
  'PKCE flows: a code challenge waiting for its emailed link (or, later, a provider''s callback), then the '
  'single-use auth code POST /token?grant_type=pkce exchanges, with the verifier, for a session.';
comment on column auth.flow_state.user_id is 'The user, once known (a deferred sign-up has none before its link).';
comment on column auth.flow_state.auth_code_digest is
  'SHA-256 of the auth code, set when the code is issued (the link is followed); the code itself is never stored.';
comment on column auth.flow_state.code_challenge is 'The client''s code challenge (RFC 7636): S256 or the plain verifier.';
comment on column auth.flow_state.authentication_method is 'What the flow signs in with, as GoTrue names it.';
comment on column auth.flow_state.provider_type is 'email for the email flows; the OAuth provider''s name later.';
comment on column auth.flow_state.provider_access_token is
  'An OAuth provider''s access token, sealed (encrypted), never in the clear; unused by the email flows.';
comment on column auth.flow_state.provider_refresh_token is
  'An OAuth provider''s refresh token, sealed (encrypted), never in the clear; unused by the email flows.';
comment on column auth.flow_state.referrer is 'Where the flow returns the browser to (redirect_to).';
comment on column auth.flow_state.auth_code_issued_at is 'When the auth code was issued: its lifetime counts from here.';

alter table auth.one_time_tokens
  add column flow_state_id uuid references auth.flow_state (id) on delete cascade,
  drop constraint one_time_tokens_user_id_token_type_key;
create unique index one_time_tokens_user_id_token_type_key on auth.one_time_tokens (user_id, token_type)
  where flow_state_id is null;
create unique index one_time_tokens_flow_state_id_key on auth.one_time_tokens (flow_state_id)
  where flow_state_id is not null;
comment on column auth.one_time_tokens.flow_state_id is
  'The PKCE flow this token''s link belongs to: following the link issues that flow''s auth code.';
comment on table auth.one_time_tokens is
  'Emailed secrets. Deleted when used; re-issuing replaces the live one of the user and purpose, except '
  'tokens of PKCE flows, each of which lives for its own flow.';

alter table auth.settings
  add column flow_state_expiry integer not null default 300 check (flow_state_expiry > 0);

drop function if exists auth._issue_token(auth.users, text, text, text, uuid);
drop function if exists auth._queue_email(auth.users, text, text, text, jsonb, uuid);
drop function if exists auth._defer_signup(text, text, jsonb, text);
drop function if exists auth._resend_pending_signup(text, text);
drop function if exists auth.sign_up(text, text, jsonb, text, text, inet);
drop function if exists auth.send_magic_link(text, boolean, jsonb, text, inet);
drop function if exists auth.send_recovery(text, text, inet);
drop function if exists auth.resend(text, text, text, inet);
drop function if exists auth.update_user(text, jsonb, text, text, text, text, inet);
drop function if exists auth.verify_email_token(text, text, text, text, text, inet, text);
