-- 0018: Passkeys (WebAuthn): passwordless sign-in with a passkey, and WebAuthn as a second factor.
--   webauthn_credentials  one row per public-key credential: a passkey (factor_id NULL) signs in alone;
--                         a WebAuthn MFA factor's credential (factor_id set) only raises a session to aal2.
--   webauthn_challenges   the live ceremonies of the passkey endpoints: the random challenge the
--                         authenticator must sign, for whom (NULL: a discoverable sign-in), until when.
--                         Consumed (deleted) by the statement that records the ceremony's result.
--   mfa_factors           factor_type webauthn.
--   mfa_challenges        web_authn_challenge: the random challenge of a WebAuthn factor's challenge.
--   settings              passkey_max_per_user, webauthn_challenge_expiry, mfa_web_authn_enabled.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0018');

alter table auth.mfa_factors drop constraint mfa_factors_factor_type_check;
alter table auth.mfa_factors add constraint mfa_factors_factor_type_check
  check (factor_type in ('totp', 'email', 'phone', 'webauthn'));
comment on table auth.mfa_factors is
  'Second factors of a user: TOTP authenticator apps, email, and WebAuthn authenticators.';

alter table auth.mfa_challenges add column web_authn_challenge bytea;
comment on column auth.mfa_challenges.web_authn_challenge is
  'The random challenge a WebAuthn factor''s authenticator must sign (NULL for the other factors).';

create table auth.webauthn_credentials (
  id uuid primary key default pg_catalog.gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  factor_id uuid references auth.mfa_factors (id) on delete cascade,
  credential_id bytea not null unique check (pg_catalog.length(credential_id) between 16 and 1023),
  public_key bytea not null,
  attestation_type text not null default '',
  aaguid uuid,
  sign_count bigint not null default 0 check (sign_count between 0 and 4294967295),
  transports jsonb not null default '[]' check (pg_catalog.jsonb_typeof(transports) = 'array'),
  backup_eligible boolean not null default false,
  backed_up boolean not null default false,
  friendly_name text not null default '' check (pg_catalog.length(friendly_name) <= 120),
  created_at timestamptz not null default pg_catalog.now(),
  updated_at timestamptz not null default pg_catalog.now(),
  last_used_at timestamptz
);
create index webauthn_credentials_user_id_idx on auth.webauthn_credentials (user_id);
create unique index webauthn_credentials_factor_id_key on auth.webauthn_credentials (factor_id)
  where factor_id is not null;
alter table auth.webauthn_credentials enable row level security;
comment on table auth.webauthn_credentials is
  'WebAuthn public-key credentials: passkeys (factor_id NULL), which sign in alone, and the credentials of '
  'WebAuthn MFA factors. Only public keys: nothing here signs anything in.';
comment on column auth.webauthn_credentials.factor_id is
  'The WebAuthn MFA factor this credential proves; NULL for a passkey.';
comment on column auth.webauthn_credentials.credential_id is 'The authenticator''s credential id (rawId).';
comment on column auth.webauthn_credentials.public_key is 'The credential''s COSE public key, as registered.';
comment on column auth.webauthn_credentials.attestation_type is 'The attestation format registered with (none).';
comment on column auth.webauthn_credentials.aaguid is 'The authenticator model''s AAGUID (zeros when not told).';
comment on column auth.webauthn_credentials.sign_count is
  'The authenticator''s signature counter at its last use: a later assertion must count higher (or both stay 0), '
  'else the authenticator may have been cloned and the sign-in is refused.';
comment on column auth.webauthn_credentials.transports is 'How the browser reaches the authenticator (usb, internal, ...).';
comment on column auth.webauthn_credentials.backup_eligible is 'Whether the credential may be synced (a multi-device passkey).';
comment on column auth.webauthn_credentials.backed_up is 'Whether the credential was synced, at its last use.';
comment on column auth.webauthn_credentials.friendly_name is 'The user''s name for the passkey (at most 120 characters).';
comment on column auth.webauthn_credentials.last_used_at is 'When it last signed in (or proved its factor).';

create table auth.webauthn_challenges (
  id uuid primary key default pg_catalog.gen_random_uuid(),
  user_id uuid references auth.users (id) on delete cascade,
  challenge_type text not null check (challenge_type in ('registration', 'authentication')),
  challenge bytea not null check (pg_catalog.length(challenge) >= 16),
  session_data jsonb not null default '{}' check (pg_catalog.jsonb_typeof(session_data) = 'object'),
  created_at timestamptz not null default pg_catalog.now(),
  expires_at timestamptz not null,
  check ((challenge_type = 'registration') = (user_id is not null))
);
create index webauthn_challenges_user_id_idx on auth.webauthn_challenges (user_id) where user_id is not null;
create index webauthn_challenges_expires_at_idx on auth.webauthn_challenges (expires_at);
alter table auth.webauthn_challenges enable row level security;
comment on table auth.webauthn_challenges is
  'Live passkey ceremonies: a registration (for a signed-in user) or a discoverable sign-in (no user). '
  'Each is deleted by the one verification that uses it, in the transaction that records its result.';
comment on column auth.webauthn_challenges.user_id is 'Who registers; NULL for a sign-in (the passkey names its user).';
comment on column auth.webauthn_challenges.challenge is 'The random challenge (32 bytes) the authenticator must sign.';
comment on column auth.webauthn_challenges.session_data is 'What else the ceremony was started with (user verification asked).';
comment on column auth.webauthn_challenges.expires_at is 'After this the challenge is refused (webauthn_challenge_expired).';

alter table auth.settings
  add column passkey_max_per_user integer not null default 10 check (passkey_max_per_user > 0),
  add column webauthn_challenge_expiry integer not null default 300 check (webauthn_challenge_expiry > 0),
  add column mfa_web_authn_enabled boolean not null default false,
  add column rate_limit_passkey integer not null default 30 check (rate_limit_passkey > 0);
comment on column auth.settings.passkey_max_per_user is 'How many passkeys one user may register.';
comment on column auth.settings.webauthn_challenge_expiry is 'Seconds a passkey ceremony''s challenge lives.';
comment on column auth.settings.rate_limit_passkey is
  'Passkey sign-in challenges one client IP may ask for per 5 minutes (they need no session and are stored).';
comment on column auth.settings.mfa_web_authn_enabled is 'Whether WebAuthn may be enrolled and verified as an MFA factor.';
