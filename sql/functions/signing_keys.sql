-- signing_keys.sql: signing keys: next, current, previous, revoked; the JWKS.
--
-- PostgreSQL cannot make ECDSA signatures (pgcrypto has no elliptic curves), so for an ES256 key SQL
-- builds the token up to its signature and the service signs it with the private key (Python,
-- PyJWT + cryptography). Third parties verify the signature with the public keys in auth.jwks().
--
-- SQL itself does not verify ECDSA: a PL/pgSQL P-256 verification measured 9 ms per token, which would
-- make every forged token cost the database 300 times what an HS256 check costs. Instead each ES256
-- key carries a random mac_key, and SQL puts HMAC-SHA256(payload segment, mac_key) in the token's
-- header as "mac". The header is covered by the ES256 signature, so clients see one ordinary ES256
-- token; SQL checks the mac in constant time, which proves the claims were minted by this database
-- under that key, exactly the guarantee an HS256 signature gives. Revoking the key (by kid) kills both.
--
-- Key lifecycle: add (next: published in the JWKS, not signing yet, so caches learn it first) ->
-- rotate (next becomes current and signs; current becomes previous and still verifies) -> revoke.
set local role authgres_owner;

-- The key lifecycle, for `authgres keys` (run with the service's credentials).
create or replace function auth._signing_key_json(p_key auth.signing_keys) returns jsonb
  language sql stable
  return pg_catalog.jsonb_build_object(
    'id', p_key.id, 'kid', p_key.kid, 'algorithm', p_key.algorithm, 'status', p_key.status,
    'created_at', p_key.created_at, 'rotated_at', p_key.rotated_at, 'revoked_at', p_key.revoked_at);
comment on function auth._signing_key_json(auth.signing_keys) is 'A signing key without its secrets.';

create or replace function auth.add_signing_key(
  p_algorithm text, p_private_key text default null, p_public_jwk jsonb default null
) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_key auth.signing_keys;
  v_kid text := coalesce(p_public_jwk ->> 'kid', pg_catalog.gen_random_uuid()::text);
begin
  if exists (select from auth.signing_keys where status = 'next') then
    raise exception using errcode = 'AUV01',
      message = 'A next signing key already exists: rotate to it or revoke it first';
  end if;
  if p_algorithm in ('HS256', 'HS384', 'HS512') then
    if p_private_key is not null or p_public_jwk is not null then
      raise exception using errcode = 'AUV01', message = 'An HMAC key is generated here: give no key material';
    end if;
    insert into auth.signing_keys (kid, algorithm, secret, status, mac_key)
    values (v_kid, p_algorithm, auth.url_encode(auth._random_bytes(48)), 'next', auth._random_bytes(32))
    returning * into v_key;
  elsif p_algorithm = 'ES256' then
    if p_private_key is null or p_private_key !~ '^-----BEGIN PRIVATE KEY-----' then
      raise exception using errcode = 'AUV01', message = 'An ES256 key needs its PKCS#8 PEM private key';
    end if;
    begin
      insert into auth.signing_keys (kid, algorithm, secret, public_jwk, status, mac_key)
      values (v_kid, p_algorithm, p_private_key, p_public_jwk, 'next', auth._random_bytes(32))
      returning * into v_key;
    exception when check_violation then
      raise exception using errcode = 'AUV01',
        message = 'An ES256 key needs a public JWK with kty EC, crv P-256, x, y, kid and alg, and no private member';
    end;
  else
    raise exception using errcode = 'AUV01',
      message = pg_catalog.format('Unsupported signing algorithm %s (HS256, HS384, HS512 or ES256)', p_algorithm);
  end if;
  perform auth._audit(null, 'signing_key_added', 'system', null, auth._signing_key_json(v_key));
  return auth._signing_key_json(v_key);
end
$$;
comment on function auth.add_signing_key(text, text, jsonb) is
  'Adds the next signing key: published in the JWKS at once, signing only after auth.rotate_signing_keys(). '
  'HMAC secrets are generated here; ES256 key pairs by the caller (SQL cannot make them).';
grant execute on function auth.add_signing_key(text, text, jsonb) to authgres_service;

create or replace function auth.rotate_signing_keys() returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_next auth.signing_keys;
begin
  select * into v_next from auth.signing_keys where status = 'next' for update;
  if not found then
    raise exception using errcode = 'AUV01', message = 'There is no next signing key: add one first';
  end if;
  update auth.signing_keys set status = 'previous', rotated_at = pg_catalog.now() where status = 'current';
  update auth.signing_keys set status = 'current' where id = v_next.id returning * into v_next;
  perform auth._audit(null, 'signing_keys_rotated', 'system', null, auth._signing_key_json(v_next));
  return auth._signing_key_json(v_next);
end
$$;
comment on function auth.rotate_signing_keys() is
  'The next key becomes current (signs new tokens); the current one becomes previous: tokens it signed '
  'still verify until they expire, or until it is revoked.';
grant execute on function auth.rotate_signing_keys() to authgres_service;

create or replace function auth.revoke_signing_key(p_key text) returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_key auth.signing_keys;
begin
  update auth.signing_keys set status = 'revoked', revoked_at = pg_catalog.now()
   where (kid = p_key or id::text = p_key) and status in ('next', 'previous')
  returning * into v_key;
  if not found then
    raise exception using errcode = 'AUV01', message = case
      when exists (select from auth.signing_keys where (kid = p_key or id::text = p_key) and status = 'current')
        then 'The current signing key cannot be revoked: rotate first'
      else 'No next or previous signing key has this kid or id' end;
  end if;
  perform auth._audit(null, 'signing_key_revoked', 'system', null, auth._signing_key_json(v_key));
  return auth._signing_key_json(v_key);
end
$$;
comment on function auth.revoke_signing_key(text) is
  'Revokes a next or previous key (by kid, or by id for the kid-less AUTHGRES_JWT_SECRET key): tokens it '
  'signed stop verifying at once. Revoking that key also ends the anon and service_role keys signed with it.';
grant execute on function auth.revoke_signing_key(text) to authgres_service;

create or replace function auth.list_signing_keys() returns jsonb
  language sql stable security definer
  set search_path = ''
  return (select coalesce(pg_catalog.jsonb_agg(auth._signing_key_json(k) order by k.created_at), '[]')
            from auth.signing_keys k);
comment on function auth.list_signing_keys() is 'Every signing key with its status, without secrets.';
grant execute on function auth.list_signing_keys() to authgres_service;

create or replace function auth.jwks() returns jsonb
  language sql stable security definer
  set search_path = ''
  return pg_catalog.jsonb_build_object('keys', (
    select coalesce(pg_catalog.jsonb_agg(k.public_jwk order by k.status = 'current' desc, k.created_at desc), '[]')
      from auth.signing_keys k
     where k.public_jwk is not null and k.status in ('next', 'current', 'previous')));
comment on function auth.jwks() is
  'The JWK Set served at /.well-known/jwks.json: public halves of the next, current and previous asymmetric keys.';
grant execute on function auth.jwks() to authgres_service;

create or replace function auth.signing_keys_for_service()
  returns table (kid text, algorithm text, private_key text)
  language sql stable security definer
  set search_path = ''
begin atomic
  select k.kid, k.algorithm, k.secret from auth.signing_keys k
   where k.algorithm = 'ES256' and k.status in ('next', 'current');
end;
comment on function auth.signing_keys_for_service() is
  'The private keys the service signs ES256 tokens with: the current key, and the next one ahead of rotation.';
grant execute on function auth.signing_keys_for_service() to authgres_service;
