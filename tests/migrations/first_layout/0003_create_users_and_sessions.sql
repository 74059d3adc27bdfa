-- 0003: users, identities, sessions, refresh tokens, audit log, settings and signing keys.
--
-- Table and column names follow Supabase Auth where applications depend on them (foreign keys to
-- auth.users(id), triggers reading raw_user_meta_data, policies joining auth.identities). Secrets are
-- never stored in the clear: refresh tokens are kept as SHA-256 digests. Every table has RLS enabled
-- and no policy: only the owner (through SECURITY DEFINER functions) reads or writes them.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0003');

create type auth.aal_level as enum ('aal1', 'aal2', 'aal3');
comment on type auth.aal_level is 'Authenticator assurance level of a session (NIST SP 800-63B).';

create table auth.settings (
  singleton boolean primary key default true check (singleton),
  site_url text not null default 'http://localhost:3000',
  jwt_exp integer not null default 3600 check (jwt_exp > 0),
  jwt_aud text not null default 'authenticated',
  jwt_issuer text,
  jwt_default_role text not null default 'authenticated',
  mailer_autoconfirm boolean not null default false,
  disable_signup boolean not null default false,
  anonymous_users_enabled boolean not null default false,
  refresh_token_reuse_interval integer not null default 10 check (refresh_token_reuse_interval >= 0),
  refresh_token_replay_revokes text not null default 'session'
    check (refresh_token_replay_revokes in ('session', 'user')),
  sessions_timebox integer check (sessions_timebox > 0),
  sessions_inactivity_timeout integer check (sessions_inactivity_timeout > 0),
  sessions_single_per_user boolean not null default false,
  hook_custom_access_token text,
  hook_before_user_created text,
  hook_password_verification_attempt text,
  hook_send_email text,
  updated_at timestamptz not null default now()
);
comment on table auth.settings is
  'The one row of behaviour settings the SQL functions read; the service writes it at start-up '
  'from its AUTHGRES_* environment (auth.configure).';
comment on column auth.settings.refresh_token_reuse_interval is
  'Seconds after its rotation during which a refresh token may still be presented (concurrent tabs).';
comment on column auth.settings.refresh_token_replay_revokes is
  'What a replayed refresh token ends: its own session, or every session of its user.';
comment on column auth.settings.sessions_timebox is 'Seconds after sign-in when a session can no longer refresh (NULL: never).';
comment on column auth.settings.sessions_inactivity_timeout is 'Seconds without a refresh after which a session ends (NULL: never).';
comment on column auth.settings.hook_custom_access_token is
  'A function f(event jsonb) returns jsonb that may change access-token claims (see auth._call_hook).';
comment on column auth.settings.hook_before_user_created is
  'A function f(event jsonb) returns jsonb that may reject a new user with {"error": {"message": ...}}.';
comment on column auth.settings.hook_password_verification_attempt is
  'A function f(event jsonb) returns jsonb told of every password check; it may refuse a correct one.';
comment on column auth.settings.hook_send_email is
  'A function f(event jsonb) returns jsonb that delivers emails itself, in place of the outbox.';
comment on column auth.settings.sessions_single_per_user is 'A new sign-in ends the user''s older sessions at their next refresh.';
insert into auth.settings default values;
alter table auth.settings enable row level security;

create table auth.signing_keys (
  id uuid primary key default gen_random_uuid(),
  kid text unique,
  algorithm text not null check (algorithm in ('HS256', 'HS384', 'HS512')),
  secret text not null,
  status text not null check (status in ('next', 'current', 'previous', 'revoked')),
  created_at timestamptz not null default now()
);
comment on table auth.signing_keys is
  'JWT signing keys. Exactly one is current (it signs); previous keys still verify until revoked.';
comment on column auth.signing_keys.kid is 'Key id put in the JWT header; NULL signs without a kid, as GoTrue does by default.';
comment on column auth.signing_keys.secret is 'HMAC secret. Readable only by the owner role.';
create unique index signing_keys_one_current on auth.signing_keys (status) where status = 'current';
alter table auth.signing_keys enable row level security;

create table auth.users (
  instance_id uuid not null default '00000000-0000-0000-0000-000000000000',
  id uuid primary key default gen_random_uuid(),
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_sent_at timestamptz,
  recovery_sent_at timestamptz,
  email_change varchar(255) not null default '',
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb not null default '{}',
  raw_user_meta_data jsonb not null default '{}',
  is_super_admin boolean,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  phone text unique default null,
  phone_confirmed_at timestamptz,
  phone_change text not null default '',
  phone_change_sent_at timestamptz,
  confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
  reauthentication_sent_at timestamptz,
  banned_until timestamptz,
  is_sso_user boolean not null default false,
  deleted_at timestamptz,
  is_anonymous boolean not null default false,
  constraint users_email_lowercase check (email = lower(email))
);
comment on table auth.users is 'One row per user account. Applications reference auth.users(id).';
comment on column auth.users.encrypted_password is 'argon2id (or imported bcrypt) hash; NULL when the user has no password.';
comment on column auth.users.email is 'Lower-cased; unique among non-SSO users.';
comment on column auth.users.is_anonymous is 'Created by an anonymous sign-in; has no email, phone or identity.';
create unique index users_email_partial_key on auth.users (email) where is_sso_user = false;
create index users_instance_id_idx on auth.users (instance_id);
alter table auth.users enable row level security;

create table auth.identities (
  id uuid primary key default gen_random_uuid(),
  provider_id text not null,
  user_id uuid not null references auth.users (id) on delete cascade,
  identity_data jsonb not null,
  provider text not null,
  last_sign_in_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  email text generated always as (lower(identity_data ->> 'email')) stored,
  unique (provider_id, provider)
);
comment on table auth.identities is 'How a user signs in: one row per provider (email, phone, OAuth ...).';
comment on column auth.identities.provider_id is 'The user id at the provider; the auth.users id for email and phone.';
create index identities_user_id_idx on auth.identities (user_id);
create index identities_email_idx on auth.identities (email text_pattern_ops);
alter table auth.identities enable row level security;

create table auth.sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  factor_id uuid,
  aal auth.aal_level not null default 'aal1',
  not_after timestamptz,
  refreshed_at timestamptz,
  user_agent text,
  ip inet,
  tag text,
  refresh_token_key bytea not null default auth._random_bytes(32)
);
comment on table auth.sessions is
  'A signed-in device. Access tokens name it in their session_id claim; deleting the row signs the device out.';
comment on column auth.sessions.not_after is 'The session ends at this time whatever its refresh tokens say.';
comment on column auth.sessions.refresh_token_key is
  'Secret of the session''s refresh-token chain: each token is the HMAC of its parent under this key, '
  'so a lost response can be replayed without keeping any token in the clear. Readable only by the owner.';
create index sessions_user_id_idx on auth.sessions (user_id, created_at);
create index sessions_not_after_idx on auth.sessions (not_after desc);
alter table auth.sessions enable row level security;

create table auth.refresh_tokens (
  instance_id uuid not null default '00000000-0000-0000-0000-000000000000',
  id bigserial primary key,
  token_hash bytea not null unique,
  user_id uuid not null,
  revoked boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  parent bytea,
  session_id uuid not null references auth.sessions (id) on delete cascade,
  generation integer not null default 0
);
comment on table auth.refresh_tokens is
  'The refresh-token chain of each session. Only SHA-256 digests are stored; at most one token per session is live.';
comment on column auth.refresh_tokens.token_hash is 'SHA-256 of the token handed to the client.';
comment on column auth.refresh_tokens.parent is 'token_hash of the token this one replaced.';
comment on column auth.refresh_tokens.generation is 'Position in the session''s chain, 0 for the first token.';
comment on column auth.refresh_tokens.updated_at is 'When the token was issued or, once revoked, when it was rotated.';
-- Two live tokens in one session would let a stolen token live on beside the owner's.
create unique index refresh_tokens_one_live_per_session on auth.refresh_tokens (session_id) where not revoked;
create index refresh_tokens_session_id_idx on auth.refresh_tokens (session_id, generation);
alter table auth.refresh_tokens enable row level security;

create table auth.mfa_amr_claims (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null references auth.sessions (id) on delete cascade,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  authentication_method text not null,
  constraint mfa_amr_claims_session_id_authentication_method_pkey unique (session_id, authentication_method)
);
comment on table auth.mfa_amr_claims is 'Authentication methods used in each session: the amr claim of its access tokens.';
alter table auth.mfa_amr_claims enable row level security;

create table auth.audit_log_entries (
  instance_id uuid not null default '00000000-0000-0000-0000-000000000000',
  id uuid primary key default gen_random_uuid(),
  payload json not null,
  created_at timestamptz not null default now(),
  ip_address varchar(64) not null default ''
);
comment on table auth.audit_log_entries is
  'Security events, written in the same transaction as the event. payload: actor_id, actor_username, action, log_type, traits.';
create index audit_log_entries_created_at_idx on auth.audit_log_entries (created_at);
alter table auth.audit_log_entries enable row level security;
