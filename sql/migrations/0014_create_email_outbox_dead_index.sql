-- 0014: dead emails get a partial index of their own, so that counting them (auth.outbox_stats(),
-- read at every metrics scrape) reads only them, not the week of sent emails the outbox keeps.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0014');

create index if not exists email_outbox_dead_idx on auth.email_outbox (id) where status = 'dead';
