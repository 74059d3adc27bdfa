-- 0022: a provider sign-in started by GET /authorize finishes only in the browser that started it. The
-- browser keeps a random value in a cookie, the flow its digest, and the callback must present the value.
-- Without it, an attacker could start a sign-in with his own provider account and send the victim the
-- provider's link: the victim's browser would come back signed in as the attacker (login CSRF; the PKCE
-- flow stops it at the code exchange, the implicit flow did not).
-- A PKCE link (GET /user/identities/authorize, which a fetch starts, so no cookie) is made at the code
-- exchange instead of at the callback: the flow keeps the provider identity until then (pending_link).
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0022');

alter table auth.flow_state add column browser_binding_digest bytea, add column pending_link jsonb;
comment on column auth.flow_state.browser_binding_digest is
  'A provider flow started by GET /authorize: SHA-256 of the value in the starting browser''s cookie, which '
  'the callback must present. NULL for a link started by GET /user/identities/authorize (a fetch sets no '
  'cookie) and for the email flows.';

comment on column auth.flow_state.pending_link is
  'A PKCE link''s provider identity ({provider, subject, claims}) from its callback, added to the user at the '
  'code exchange.';

-- Both take the browser's value now.
drop function if exists auth.start_provider_flow(text, text, text, text, text);
drop function if exists auth.provider_flow(text);
