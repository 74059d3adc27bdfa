-- 0010: asymmetric (ES256) signing keys, the JWKS, and key rotation.
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
insert into auth.schema_migrations (version) values ('0010');

alter table auth.signing_keys drop constraint signing_keys_algorithm_check;
alter table auth.signing_keys
  add constraint signing_keys_algorithm_check check (algorithm in ('HS256', 'HS384', 'HS512', 'ES256')),
  add column public_jwk jsonb,
  add column mac_key bytea not null default auth._random_bytes(32),
  add column rotated_at timestamptz,
  add column revoked_at timestamptz,
  add constraint signing_keys_public_half check (
    (algorithm = 'ES256') = (public_jwk is not null)
    and (public_jwk is null or (public_jwk ->> 'kid' = kid and public_jwk ->> 'alg' = algorithm
                                and public_jwk ->> 'kty' = 'EC' and public_jwk ->> 'crv' = 'P-256'
                                and public_jwk ? 'x' and public_jwk ? 'y' and not public_jwk ? 'd'))),
  add constraint signing_keys_asymmetric_have_kid check (algorithm like 'HS%' or kid is not null);
create unique index signing_keys_one_next on auth.signing_keys (status) where status = 'next';
comment on column auth.signing_keys.secret is
  'HMAC secret (HS*), or the PKCS#8 PEM private key (ES256). Readable only by the owner role; the service '
  'gets asymmetric private keys from auth.signing_keys_for_service().';
comment on column auth.signing_keys.public_jwk is 'The public half of an asymmetric key as a JWK, as auth.jwks() publishes it.';
comment on column auth.signing_keys.mac_key is
  'Keys the "mac" header member of ES256 tokens, by which SQL recognises tokens it minted under this key.';
comment on column auth.signing_keys.rotated_at is 'When the key stopped signing (became previous).';
comment on column auth.signing_keys.revoked_at is 'When the key stopped verifying.';

-------------------------------------------------------------------------------------------------------
-- Signing and verifying access tokens.
-------------------------------------------------------------------------------------------------------
create function auth._payload_mac(p_payload_segment text, p_mac_key bytea) returns text
  language sql stable strict parallel safe
  return auth.url_encode(auth._hmac(pg_catalog.convert_to(p_payload_segment, 'UTF8'), p_mac_key, 'sha256'));
comment on function auth._payload_mac(text, bytea) is 'The "mac" header member of an ES256 token minted with this mac_key.';

create or replace function auth._sign_claims(p_claims jsonb) returns text
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_key auth.signing_keys;
  v_payload text := auth.url_encode(pg_catalog.convert_to(p_claims::text, 'UTF8'));
  v_signables text;
begin
  select * into v_key from auth.signing_keys where status = 'current';
  if not found then
    raise exception using errcode = 'AUX01', message = 'No current signing key: run auth.configure()';
  end if;
  if v_key.algorithm = 'ES256' then
    -- Signed by the service, which finds it by the empty signature segment.
    return auth.url_encode(pg_catalog.convert_to(pg_catalog.jsonb_build_object(
        'alg', v_key.algorithm, 'typ', 'JWT', 'kid', v_key.kid,
        'mac', auth._payload_mac(v_payload, v_key.mac_key))::text, 'UTF8'))
      || '.' || v_payload || '.';
  end if;
  v_signables := auth.url_encode(pg_catalog.convert_to(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'alg', v_key.algorithm, 'typ', 'JWT', 'kid', v_key.kid))::text, 'UTF8'))
    || '.' || v_payload;
  return v_signables || '.' || auth.algorithm_sign(v_signables, v_key.secret, v_key.algorithm);
end
$$;
comment on function auth._sign_claims(jsonb) is
  'Signs claims with the current key: HS* here; ES256 up to the signature, which the service adds.';

-- One pass, jsonb throughout, the signature checked before the payload is even decoded: this runs on
-- every authenticated request.
create or replace function auth._verified_jwt_claims(p_token text) returns jsonb
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_parts text[] := pg_catalog.string_to_array(p_token, '.');
  v_header jsonb := auth._decode_json_segment(v_parts[1])::jsonb;
  v_payload jsonb;
  v_key record;
  v_now numeric;
begin
  if pg_catalog.array_length(v_parts, 1) = 3 and pg_catalog.jsonb_typeof(v_header) = 'object' then
    for v_key in
      select k.algorithm, k.secret, k.mac_key from auth.signing_keys k
       where k.status in ('current', 'previous') and k.kid is not distinct from v_header ->> 'kid'
         and k.algorithm = v_header ->> 'alg'
       order by k.status = 'current' desc, k.created_at desc
    loop
      if (case when v_key.algorithm = 'ES256'
               then v_parts[3] ~ '^[A-Za-z0-9_-]{86}$'
                    and auth._equal_secure(v_header ->> 'mac', auth._payload_mac(v_parts[2], v_key.mac_key))
               else auth._equal_secure(
                      auth.algorithm_sign(v_parts[1] || '.' || v_parts[2], v_key.secret, v_key.algorithm), v_parts[3])
          end) then
        v_payload := auth._decode_json_segment(v_parts[2])::jsonb;
        v_now := extract(epoch from pg_catalog.now());
        if pg_catalog.jsonb_typeof(v_payload -> 'exp') = 'number' and (v_payload ->> 'exp')::numeric > v_now
           and (v_payload -> 'nbf' is null
                or (pg_catalog.jsonb_typeof(v_payload -> 'nbf') = 'number' and (v_payload ->> 'nbf')::numeric <= v_now)) then
          return v_payload;
        end if;
        raise exception using errcode = 'AUJ01',
          message = 'invalid JWT: unable to parse or verify signature, token has invalid claims: token is expired';
      end if;
    end loop;
  end if;
  raise exception using errcode = 'AUJ01',
    message = 'invalid JWT: unable to parse or verify signature, signature is invalid';
end
$$;
comment on function auth._verified_jwt_claims(text) is
  'Claims of an unexpired JWT minted under a current or previous key (chosen by kid; none means the '
  'kid-less HS* key of AUTHGRES_JWT_SECRET). HS* tokens by their signature, ES256 tokens by their mac. '
  'Raises AUJ01 otherwise.';

-------------------------------------------------------------------------------------------------------
-- The key lifecycle, for `authgres keys` (run with the service's credentials).
-------------------------------------------------------------------------------------------------------
create function auth._signing_key_json(p_key auth.signing_keys) returns jsonb
  language sql stable
  return pg_catalog.jsonb_build_object(
    'id', p_key.id, 'kid', p_key.kid, 'algorithm', p_key.algorithm, 'status', p_key.status,
    'created_at', p_key.created_at, 'rotated_at', p_key.rotated_at, 'revoked_at', p_key.revoked_at);
comment on function auth._signing_key_json(auth.signing_keys) is 'A signing key without its secrets.';

create function auth.add_signing_key(
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
    insert into auth.signing_keys (kid, algorithm, secret, status)
    values (v_kid, p_algorithm, auth.url_encode(auth._random_bytes(48)), 'next')
    returning * into v_key;
  elsif p_algorithm = 'ES256' then
    if p_private_key is null or p_private_key !~ '^-----BEGIN PRIVATE KEY-----' then
      raise exception using errcode = 'AUV01', message = 'An ES256 key needs its PKCS#8 PEM private key';
    end if;
    begin
      insert into auth.signing_keys (kid, algorithm, secret, public_jwk, status)
      values (v_kid, p_algorithm, p_private_key, p_public_jwk, 'next')
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

create function auth.rotate_signing_keys() returns jsonb
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

create function auth.revoke_signing_key(p_key text) returns jsonb
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

create function auth.list_signing_keys() returns jsonb
  language sql stable security definer
  set search_path = ''
  return (select coalesce(pg_catalog.jsonb_agg(auth._signing_key_json(k) order by k.created_at), '[]')
            from auth.signing_keys k);
comment on function auth.list_signing_keys() is 'Every signing key with its status, without secrets.';

create function auth.jwks() returns jsonb
  language sql stable security definer
  set search_path = ''
  return pg_catalog.jsonb_build_object('keys', (
    select coalesce(pg_catalog.jsonb_agg(k.public_jwk order by k.status = 'current' desc, k.created_at desc), '[]')
      from auth.signing_keys k
     where k.public_jwk is not null and k.status in ('next', 'current', 'previous')));
comment on function auth.jwks() is
  'The JWK Set served at /.well-known/jwks.json: public halves of the next, current and previous asymmetric keys.';

create function auth.signing_keys_for_service()
  returns table (kid text, algorithm text, private_key text)
  language sql stable security definer
  set search_path = ''
begin atomic
  select k.kid, k.algorithm, k.secret from auth.signing_keys k
   where k.algorithm = 'ES256' and k.status in ('next', 'current');
end;
comment on function auth.signing_keys_for_service() is
  'The private keys the service signs ES256 tokens with: the current key, and the next one ahead of rotation.';

grant execute on function
  auth.add_signing_key(text, text, jsonb), auth.rotate_signing_keys(), auth.revoke_signing_key(text),
  auth.list_signing_keys(), auth.jwks(), auth.signing_keys_for_service()
  to authgres_service;
