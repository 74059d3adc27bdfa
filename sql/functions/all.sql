-- Every function file, in the order they are applied: a file may use what an earlier one defines.
-- sql/migrate.sh reads this list; `psql -1 -f sql/functions/all.sql` applies them all.
\ir crypto.sql
\ir jwt.sql
\ir settings.sql
\ir audit.sql
\ir events.sql
\ir hooks.sql
\ir users.sql
\ir api_keys.sql
\ir bearer.sql
\ir rls.sql
\ir sessions.sql
\ir sign_in.sql
\ir throttles.sql
\ir one_time_tokens.sql
\ir pkce.sql
\ir email.sql
\ir phone.sql
\ir identities.sql
\ir outbox.sql
\ir mfa.sql
\ir passkeys.sql
\ir admin.sql
\ir signing_keys.sql
\ir prune.sql
