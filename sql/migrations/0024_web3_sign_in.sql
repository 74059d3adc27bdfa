-- 0024: sign in with a wallet (POST /token?grant_type=web3, auth-js's signInWithWeb3). The identity is an
-- ordinary provider identity (provider web3, subject web3:<chain>:<address>); what is new is state:
--   web3_used_messages  each accepted signed message, by digest, until its validity ends: a message signs
--                       in once (GoTrue accepts it again for its whole validity window).
--   settings            rate_limit_web3: wallet sign-ins per client IP per 5 minutes.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0024');

create table auth.web3_used_messages (
  message_digest bytea primary key check (pg_catalog.length(message_digest) = 32),
  used_at timestamptz not null default pg_catalog.now(),
  valid_until timestamptz not null
);
create index web3_used_messages_valid_until_idx on auth.web3_used_messages (valid_until);
alter table auth.web3_used_messages enable row level security;
comment on table auth.web3_used_messages is
  'Signed wallet sign-in messages already used: a second use is refused. Kept until the message''s validity '
  'ends (then auth.prune deletes it).';
comment on column auth.web3_used_messages.message_digest is 'SHA-256 of the message text as signed (UTF-8).';
comment on column auth.web3_used_messages.used_at is 'When the message signed in.';
comment on column auth.web3_used_messages.valid_until is
  'When the message stops being accepted anyway: its Expiration Time or Issued At plus the maximum validity, '
  'the earlier.';

alter table auth.settings
  add column rate_limit_web3 integer not null default 30 check (rate_limit_web3 > 0);
comment on column auth.settings.rate_limit_web3 is 'Wallet sign-ins one client IP may make per 5 minutes.';

-- It takes the used message's digest and validity, and the audit entry's details, now.
drop function if exists auth.sign_in_with_identity(text, text, jsonb, text, text, text, bytea, bytea, text, inet);
