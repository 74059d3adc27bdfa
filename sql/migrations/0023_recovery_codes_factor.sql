-- 0023: a user's recovery codes are a factor (factor_type recovery_code), as auth-js's
-- mfa.recoveryCodes API and user.factors show them: one set per user, never the only verified factor.
--   mfa_factors   factor_type recovery_code (verified from the start, no secret of its own); at most one
--                 per user. Users who already have codes get theirs.
--   settings      mfa_recovery_codes_enroll_enabled, mfa_recovery_codes_verify_enabled,
--                 mfa_recovery_codes_with_first_factor.
-- Codes made from now on are stored by the digest of their canonical form (lowercase, no separators);
-- older ones, by that of the grouped form they were shown in, still verify.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0023');

alter table auth.mfa_factors drop constraint mfa_factors_factor_type_check;
alter table auth.mfa_factors add constraint mfa_factors_factor_type_check
  check (factor_type in ('totp', 'email', 'phone', 'webauthn', 'recovery_code'));
create unique index mfa_factors_one_recovery_code_set_key on auth.mfa_factors (user_id)
  where factor_type = 'recovery_code';
comment on table auth.mfa_factors is
  'Second factors of a user: TOTP authenticator apps, email, phones, WebAuthn authenticators, and the set of '
  'recovery codes (auth.mfa_recovery_codes).';

insert into auth.mfa_factors (user_id, friendly_name, factor_type, status, created_at, updated_at)
select c.user_id,
       case when exists (select from auth.mfa_factors f where f.user_id = c.user_id and f.friendly_name = 'Recovery codes')
            then 'Recovery codes ' || pg_catalog.left(pg_catalog.gen_random_uuid()::text, 8) else 'Recovery codes' end,
       'recovery_code', 'verified', pg_catalog.min(c.created_at), pg_catalog.max(c.created_at)
  from auth.mfa_recovery_codes c
 group by c.user_id;

comment on table auth.mfa_recovery_codes is
  'The codes of a user''s recovery_code factor (80 random bits each), each usable once. SHA-256 only.';

alter table auth.settings
  add column mfa_recovery_codes_enroll_enabled boolean not null default true,
  add column mfa_recovery_codes_verify_enabled boolean not null default true,
  add column mfa_recovery_codes_with_first_factor boolean not null default true;
comment on column auth.settings.mfa_recovery_codes_enroll_enabled is 'Whether users may get recovery codes.';
comment on column auth.settings.mfa_recovery_codes_verify_enabled is 'Whether a recovery code raises a session to aal2.';
comment on column auth.settings.mfa_recovery_codes_with_first_factor is
  'Whether verifying the first TOTP factor also hands out a set of recovery codes (in recovery_codes).';

-- Replaced by the functions of the recovery-codes API (mfa.sql).
drop function if exists auth.recovery_codes(text, boolean, inet);
drop function if exists auth._new_recovery_codes(auth.users);
