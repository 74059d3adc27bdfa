-- 0019: third-party sign-in (OAuth 2.0 / OpenID Connect providers, ID tokens) and identity linking.
--   flow_state          also the state of a provider sign-in: GET /authorize starts a row (its id is the
--                       single-use `state` the provider hands back), the callback consumes it. Such a flow
--                       may have no code challenge (the implicit flow), may be a manual link to a signed-in
--                       user (linking_target_id), and when PKCE keeps the provider's tokens sealed.
--   settings            manual_linking_enabled: GET /user/identities/authorize and DELETE
--                       /user/identities/{id} answer (AUTHGRES_SECURITY_MANUAL_LINKING_ENABLED).
--   identities          (provider, provider_id) is already unique: one row per provider account.
set local role authgres_owner;
insert into auth.schema_migrations (version) values ('0019');

alter table auth.flow_state
  alter column code_challenge drop not null,
  alter column code_challenge_method drop not null,
  add column linking_target_id uuid references auth.users (id) on delete cascade,
  add constraint flow_state_challenge_pair check ((code_challenge is null) = (code_challenge_method is null)),
  add constraint flow_state_challenge_only_oauth_optional check (code_challenge is not null or authentication_method = 'oauth');
create index flow_state_created_at_idx on auth.flow_state (created_at) where auth_code_digest is null;
comment on column auth.flow_state.code_challenge is
  'The client''s code challenge (RFC 7636): S256 or the plain verifier; NULL only for a provider sign-in in the '
  'implicit flow, whose row lives only as the single-use state.';
comment on column auth.flow_state.linking_target_id is
  'A provider flow started by GET /user/identities/authorize: the signed-in user its identity is linked to.';
comment on column auth.flow_state.provider_type is 'email for the email flows; the provider''s name (google, github ...) for OAuth.';

alter table auth.settings
  add column manual_linking_enabled boolean not null default false;
comment on column auth.settings.manual_linking_enabled is
  'Signed-in users may link another provider''s identity and unlink one (GoTrue''s GOTRUE_SECURITY_MANUAL_LINKING_ENABLED).';

