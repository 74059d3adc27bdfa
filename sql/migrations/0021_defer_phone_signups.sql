-- 0021: no user row before the number is proven, for phone sign-ups too (AUTHGRES_SIGNUP_DEFERRED).
--   pending_signups     a pending sign-up is for an email address or for a phone number (E.164 digits
--                       without +), never both. At most one waits per number: a newer sign-up for the
--                       number replaces it (its password, metadata, expiry and code).
--   sms_outbox          pending_signup_id: the pending sign-up whose code the text carries; when the
--                       provider refuses the number, that pending sign-up goes with it.
--   _queue_sms          gains p_pending_signup: its old signature goes.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0021');

alter table auth.pending_signups
  alter column email drop not null,
  add column phone text check (phone ~ '^[1-9][0-9]{1,14}$'),
  add constraint pending_signups_address_check check ((email is null) <> (phone is null));
create unique index pending_signups_phone_key on auth.pending_signups (phone) where phone is not null;
comment on column auth.pending_signups.email is 'The address to prove (NULL for a phone sign-up).';
comment on column auth.pending_signups.phone is
  'The number to prove, E.164 digits without + (NULL for an email sign-up); one pending sign-up per number.';
comment on table auth.pending_signups is
  'Sign-ups waiting for their address or number to be proven; several may wait for one address (the first '
  'verified wins), one for a number (a newer sign-up replaces it).';

alter table auth.sms_outbox
  add column pending_signup_id uuid references auth.pending_signups (id) on delete set null;
comment on column auth.sms_outbox.pending_signup_id is
  'The pending sign-up whose code this text carries: when the provider refuses the number, it is removed.';
create index sms_outbox_pending_signup_id_idx on auth.sms_outbox (pending_signup_id) where pending_signup_id is not null;

drop function if exists auth._queue_sms(auth.users, text, text, text, boolean, boolean);
