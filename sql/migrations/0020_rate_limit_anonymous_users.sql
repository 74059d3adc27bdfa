-- 0020: anonymous sign-ins per client IP (GoTrue's GOTRUE_RATE_LIMIT_ANONYMOUS_USERS): each one makes a
-- user, and it needs nothing but a request.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0020');

alter table auth.settings
  add column rate_limit_anonymous_users integer not null default 30 check (rate_limit_anonymous_users > 0);
comment on column auth.settings.rate_limit_anonymous_users is
  'Anonymous sign-ins one client IP may make per hour (each makes a user).';
