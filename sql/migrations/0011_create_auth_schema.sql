-- 0011: the auth schema's state as migrations 0001-0011 of the first layout left it, in one file.
--
-- Migrations hold state only (roles, schemas, tables, indexes, types, data); every function lives in
-- sql/functions/, applied after the migrations. Databases made by the first layout already record
-- version 0011 and skip this file; 0012 brings them to the state a fresh install has.
--
-- Run by a superuser: it creates cluster roles and the pgcrypto extension. The objects of the auth
-- schema are created as the NOLOGIN role authgres_owner, so SECURITY DEFINER functions run as it and
-- nobody logs in with its privileges.
do $$
begin
  if pg_catalog.to_regnamespace('auth') is not null then
    raise exception using
      message = 'schema auth exists but records no migration 0011',
      hint = 'A database made by authgres before 0011 upgrades with that release first; another auth schema (Supabase''s) cannot be shared.';
  end if;
end
$$;

-- Cluster-wide roles, created only when missing so that every database of a cluster can be migrated.
--   authgres_owner    owns the auth schema; never logs in
--   authgres_service  the login the authgres service uses; may only EXECUTE service functions
--   anon, authenticated, service_role   the request roles of PostgREST/Supabase, used by RLS policies

do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'authgres_owner') then
    create role authgres_owner nologin noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authgres_service') then
    create role authgres_service login noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
end
$$;

-- pgcrypto goes where Supabase keeps it unless the database already has it elsewhere.
create schema if not exists extensions;
create extension if not exists pgcrypto with schema extensions;

create schema auth authorization authgres_owner;
comment on schema auth is 'authgres: users, sessions, tokens and the functions that manage them.';
grant usage on schema auth to authgres_service, anon, authenticated, service_role;

-- The owner calls pgcrypto from wherever it is installed (sql/functions/crypto.sql wraps it).
select format('grant usage on schema %I to authgres_owner', n.nspname)
  from pg_catalog.pg_extension e
  join pg_catalog.pg_namespace n on n.oid = e.extnamespace
 where e.extname = 'pgcrypto' \gexec

-- Functions are not executable by PUBLIC unless their file grants it explicitly.
alter default privileges for role authgres_owner revoke execute on functions from public;

set local role authgres_owner;

create table auth.schema_migrations (
  version text primary key,
  applied_at timestamptz not null default now()
);
comment on table auth.schema_migrations is 'Versions of sql/migrations applied to this database, one row per file.';
alter table auth.schema_migrations enable row level security;
insert into auth.schema_migrations (version) values ('0011');

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
  updated_at timestamptz not null default now(),
  mailer_otp_exp integer not null default 3600 check (mailer_otp_exp > 0),
  mailer_otp_length integer not null default 6 check (mailer_otp_length between 6 and 10),
  mailer_otp_max_attempts integer not null default 5 check (mailer_otp_max_attempts > 0),
  mailer_secure_email_change boolean not null default true,
  smtp_max_frequency integer not null default 60 check (smtp_max_frequency >= 0),
  rate_limit_email_per_address integer not null default 30 check (rate_limit_email_per_address >= 0),
  rate_limit_email_per_ip integer not null default 100 check (rate_limit_email_per_ip >= 0),
  secure_password_change boolean not null default false,
  mfa_challenge_expiry integer not null default 300 check (mfa_challenge_expiry > 0),
  mfa_max_attempts integer not null default 5 check (mfa_max_attempts > 0),
  mfa_max_enrolled_factors integer not null default 10 check (mfa_max_enrolled_factors > 0),
  mfa_email text not null default 'off' check (mfa_email in ('off', 'optional', 'required')),
  mfa_email_strict boolean not null default false,
  audit_retention_days integer not null default 90 check (audit_retention_days >= 0)
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
comment on column auth.settings.smtp_max_frequency is
  'Minimum seconds between two emails of one kind to one address.';
comment on column auth.settings.rate_limit_email_per_address is 'Emails per hour to one address.';
comment on column auth.settings.rate_limit_email_per_ip is 'Emails per hour requested from one client IP.';
comment on column auth.settings.secure_password_change is
  'A password change needs a reauthentication nonce when the session is older than 24 hours.';
comment on column auth.settings.mfa_email is
  'Email as a second step after the password: off, optional (users who enrol an email factor), or required.';
comment on column auth.settings.mfa_email_strict is
  'The password grant answers twofa_required and no session until the emailed code is given.';
comment on column auth.settings.audit_retention_days is 'Audit entries older than this many days are pruned (0 keeps them).';
insert into auth.settings default values;
alter table auth.settings enable row level security;

create table auth.signing_keys (
  id uuid primary key default gen_random_uuid(),
  kid text unique,
  algorithm text not null check (algorithm in ('HS256', 'HS384', 'HS512', 'ES256')),
  secret text not null,
  status text not null check (status in ('next', 'current', 'previous', 'revoked')),
  created_at timestamptz not null default now(),
  public_jwk jsonb,
  mac_key bytea not null,
  rotated_at timestamptz,
  revoked_at timestamptz,
  constraint signing_keys_public_half check (
    (algorithm = 'ES256') = (public_jwk is not null)
    and (public_jwk is null or (public_jwk ->> 'kid' = kid and public_jwk ->> 'alg' = algorithm
                                and public_jwk ->> 'kty' = 'EC' and public_jwk ->> 'crv' = 'P-256'
                                and public_jwk ? 'x' and public_jwk ? 'y' and not public_jwk ? 'd'))),
  constraint signing_keys_asymmetric_have_kid check (algorithm like 'HS%' or kid is not null)
);
comment on table auth.signing_keys is
  'JWT signing keys. Exactly one is current (it signs); previous keys still verify until revoked.';
comment on column auth.signing_keys.kid is 'Key id put in the JWT header; NULL signs without a kid, as GoTrue does by default.';
create unique index signing_keys_one_current on auth.signing_keys (status) where status = 'current';
create unique index signing_keys_one_next on auth.signing_keys (status) where status = 'next';
comment on column auth.signing_keys.secret is
  'HMAC secret (HS*), or the PKCS#8 PEM private key (ES256). Readable only by the owner role; the service '
  'gets asymmetric private keys from auth.signing_keys_for_service().';
comment on column auth.signing_keys.public_jwk is 'The public half of an asymmetric key as a JWK, as auth.jwks() publishes it.';
comment on column auth.signing_keys.mac_key is
  'Keys the "mac" header member of ES256 tokens, by which SQL recognises tokens it minted under this key.';
comment on column auth.signing_keys.rotated_at is 'When the key stopped signing (became previous).';
comment on column auth.signing_keys.revoked_at is 'When the key stopped verifying.';
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
  email_change_confirm_status smallint not null default 0 check (email_change_confirm_status between 0 and 2),
  constraint users_email_lowercase check (email = lower(email))
);
comment on table auth.users is 'One row per user account. Applications reference auth.users(id).';
comment on column auth.users.encrypted_password is 'argon2id (or imported bcrypt) hash; NULL when the user has no password.';
comment on column auth.users.email is 'Lower-cased; unique among non-SSO users.';
comment on column auth.users.email_change_confirm_status is 'How many of the two email-change confirmations arrived.';
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
  refresh_token_key bytea not null
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

create table auth.one_time_tokens (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  token_type text not null check (token_type in (
    'confirmation', 'invite', 'magiclink', 'recovery', 'email_change_current', 'email_change_new',
    'reauthentication', 'mfa_email')),
  token_digest bytea not null,
  relates_to text not null,
  redirect_to text,
  attempts integer not null default 0,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  unique (user_id, token_type)
);
comment on table auth.one_time_tokens is
  'Emailed secrets, one live per user and purpose. Deleted when used, replaced when re-issued.';
comment on column auth.one_time_tokens.token_digest is
  'SHA-256 of the link token (hex SHA-224 of relates_to || code). Neither the code nor the link token is stored.';
comment on column auth.one_time_tokens.relates_to is 'The address the token was sent to.';
comment on column auth.one_time_tokens.attempts is 'Wrong codes presented so far.';
create index one_time_tokens_digest_idx on auth.one_time_tokens (token_digest);
create index one_time_tokens_relates_to_idx on auth.one_time_tokens (relates_to, token_type);
alter table auth.one_time_tokens enable row level security;

create table auth.email_outbox (
  id bigserial primary key,
  kind text not null,
  to_address text not null,
  user_id uuid references auth.users (id) on delete set null,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'sending', 'sent', 'dead')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  leased_until timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz
);
comment on table auth.email_outbox is
  'Emails to deliver, written in the transaction that needs them. pending -> sending (leased to one '
  'mailer) -> sent, or back to pending with a later next_attempt_at, or dead after the last attempt.';
comment on column auth.email_outbox.payload is
  'Template variables. The code and link token are removed once the email is sent or given up.';
create index email_outbox_due_idx on auth.email_outbox (next_attempt_at, id) where status in ('pending', 'sending');
alter table auth.email_outbox enable row level security;

create table auth.rate_limits (
  key text primary key,
  window_started_at timestamptz not null,
  hits integer not null
);
comment on table auth.rate_limits is 'Fixed-window counters shared by every service process (key: what is limited).';
alter table auth.rate_limits enable row level security;

create table auth.mfa_factors (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  friendly_name text not null default '',
  factor_type text not null check (factor_type in ('totp', 'email')),
  status text not null default 'unverified' check (status in ('unverified', 'verified')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  secret bytea,
  last_challenged_at timestamptz,
  last_used_step bigint
);
comment on table auth.mfa_factors is 'Second factors of a user: TOTP authenticator apps, and email.';
comment on column auth.mfa_factors.secret is 'The TOTP key (20 random bytes). Readable only by the owner role.';
comment on column auth.mfa_factors.last_used_step is 'TOTP time step of the last accepted code: a code works once.';
create unique index mfa_factors_user_friendly_name_key on auth.mfa_factors (user_id, friendly_name)
  where friendly_name <> '';
create index mfa_factors_user_id_idx on auth.mfa_factors (user_id);
alter table auth.mfa_factors enable row level security;

create table auth.mfa_challenges (
  id uuid primary key default gen_random_uuid(),
  factor_id uuid not null references auth.mfa_factors (id) on delete cascade,
  session_id uuid references auth.sessions (id) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  verified_at timestamptz,
  ip_address inet,
  attempts integer not null default 0,
  login_token_digest bytea,
  code_digest bytea
);
comment on table auth.mfa_challenges is
  'A request to prove a factor, for a session (or, in strict email 2-step, for a pending password login).';
comment on column auth.mfa_challenges.login_token_digest is
  'SHA-256 of the challenge_token that strict email 2-step hands out instead of a session.';
comment on column auth.mfa_challenges.code_digest is 'For email factors: SHA-256 of the emailed link token.';
create index mfa_challenges_factor_id_idx on auth.mfa_challenges (factor_id);
create unique index mfa_challenges_login_token_key on auth.mfa_challenges (login_token_digest);
alter table auth.mfa_challenges enable row level security;

create table auth.mfa_recovery_codes (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  code_digest bytea not null,
  created_at timestamptz not null default now(),
  used_at timestamptz
);
comment on table auth.mfa_recovery_codes is
  'One-time recovery codes (80 random bits each), accepted in place of a factor''s code. SHA-256 only.';
create index mfa_recovery_codes_user_id_idx on auth.mfa_recovery_codes (user_id);
alter table auth.mfa_recovery_codes enable row level security;

create table auth.api_keys (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  name text not null check (pg_catalog.length(name) between 1 and 100),
  key_prefix text not null,
  key_digest bytea not null unique,
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  last_used_at timestamptz,
  revoked_at timestamptz
);
comment on table auth.api_keys is 'Per-user API keys. The key itself is shown once, at creation.';
comment on column auth.api_keys.key_prefix is 'The first characters of the key, so that its owner can tell keys apart.';
comment on column auth.api_keys.key_digest is 'SHA-256 of the key.';
comment on column auth.api_keys.last_used_at is 'When the key was last used, to the minute (not written on every request).';
create index api_keys_user_id_idx on auth.api_keys (user_id);
alter table auth.api_keys enable row level security;
