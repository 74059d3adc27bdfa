-- 0017: phone numbers as identities, SMS and WhatsApp one-time codes, and phone as a second factor.
--   one_time_tokens     three more purposes: phone_confirmation (a sign-up or sign-in code texted to the
--                       user's number), phone_change (the code texted to a new number) and mfa_phone (a
--                       phone factor's challenge). relates_to holds the number (E.164 digits, no +).
--   sms_outbox          texts to deliver, written in the transaction that issues their code and drained by
--                       the service like the email outbox. message_id is what POST /otp answers.
--   mfa_factors         factor_type phone, with the factor's own number.
--   settings            phone sign-in on/off, code length, lifetime and send gap, the hourly SMS budget,
--                       autoconfirm, fixed development codes, the send_sms hook, phone MFA switches.
--   sign_in_with_password gains p_phone (a phone sign-in needs a confirmed phone): its old signature goes.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0017');

alter table auth.one_time_tokens drop constraint one_time_tokens_token_type_check;
alter table auth.one_time_tokens add constraint one_time_tokens_token_type_check check (token_type in (
  'confirmation', 'invite', 'magiclink', 'recovery', 'email_change_current', 'email_change_new',
  'reauthentication', 'mfa_email', 'phone_confirmation', 'phone_change', 'mfa_phone'));
comment on column auth.one_time_tokens.relates_to is
  'The address (or phone number, E.164 digits without +) the token was sent to.';

create table auth.sms_outbox (
  id bigserial primary key,
  message_id uuid not null unique default pg_catalog.gen_random_uuid(),
  kind text not null,
  channel text not null default 'sms' check (channel in ('sms', 'whatsapp')),
  to_phone text not null check (to_phone ~ '^[1-9][0-9]{1,14}$'),
  user_id uuid references auth.users (id) on delete set null,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'sending', 'sent', 'dead')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default pg_catalog.now(),
  leased_until timestamptz,
  last_error text,
  provider_message_id text,
  created_user boolean not null default false,
  created_at timestamptz not null default pg_catalog.now(),
  sent_at timestamptz
);
comment on table auth.sms_outbox is
  'Texts (SMS or WhatsApp) to deliver, written in the transaction that issued their code. pending -> sending '
  '(leased to one sender) -> sent, or back to pending with a later next_attempt_at, or dead after the last '
  'attempt or when the provider refuses the number.';
comment on column auth.sms_outbox.message_id is 'The id POST /otp and /resend answer (message_id); not the provider''s.';
comment on column auth.sms_outbox.payload is 'The code ({"code": ...}); removed once the text is sent or given up.';
comment on column auth.sms_outbox.provider_message_id is 'The provider''s id of the delivered message (Twilio''s SID ...).';
comment on column auth.sms_outbox.created_user is
  'The request that queued this text also created its user: when the provider refuses the number, that '
  'user (never confirmed, never signed in) is removed with it.';
create index sms_outbox_due_idx on auth.sms_outbox (next_attempt_at, id) where status in ('pending', 'sending');
create index sms_outbox_dead_idx on auth.sms_outbox (id) where status = 'dead';
alter table auth.sms_outbox enable row level security;

alter table auth.mfa_factors drop constraint mfa_factors_factor_type_check;
alter table auth.mfa_factors
  add constraint mfa_factors_factor_type_check check (factor_type in ('totp', 'email', 'phone')),
  add column phone text check (phone ~ '^[1-9][0-9]{1,14}$'),
  add constraint mfa_factors_phone_factor_has_phone check ((factor_type = 'phone') = (phone is not null));
comment on column auth.mfa_factors.phone is 'A phone factor''s number (E.164 digits without +).';
comment on table auth.mfa_factors is 'Second factors of a user: TOTP authenticator apps, email, and phone (SMS or WhatsApp).';

alter table auth.settings
  add column external_phone_enabled boolean not null default false,
  add column sms_autoconfirm boolean not null default false,
  add column sms_otp_length integer not null default 6 check (sms_otp_length between 6 and 10),
  add column sms_otp_exp integer not null default 60 check (sms_otp_exp > 0),
  add column sms_max_frequency integer not null default 60 check (sms_max_frequency >= 0),
  add column rate_limit_sms_sent integer not null default 30 check (rate_limit_sms_sent >= 0),
  add column sms_test_otp jsonb not null default '{}' check (pg_catalog.jsonb_typeof(sms_test_otp) = 'object'),
  add column sms_test_otp_valid_until timestamptz,
  add column hook_send_sms text,
  add column mfa_phone_enroll_enabled boolean not null default false,
  add column mfa_phone_verify_enabled boolean not null default false;
comment on column auth.settings.external_phone_enabled is 'Phone numbers may sign up and sign in (codes by SMS or WhatsApp).';
comment on column auth.settings.sms_otp_exp is 'Seconds a texted code lives.';
comment on column auth.settings.sms_max_frequency is 'Minimum seconds between two texts of one kind to one number.';
comment on column auth.settings.rate_limit_sms_sent is 'Texts per hour the whole installation may send (GoTrue''s RATE_LIMIT_SMS_SENT).';
comment on column auth.settings.sms_test_otp is 'Development: number -> fixed code; those numbers get no text.';
comment on column auth.settings.hook_send_sms is
  'A function f(event jsonb) returns jsonb that delivers texts itself, in place of the SMS outbox.';

drop function if exists auth.sign_in_with_password(uuid, text, text, text, inet);
drop function if exists auth.update_user(text, jsonb, text, text, text, text, inet, text, text);
drop function if exists auth.enroll_factor(text, text, text, inet);
drop function if exists auth.challenge_factor(text, uuid, inet);
