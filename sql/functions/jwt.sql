-- jwt.sql: JSON Web Tokens: pgjwt-compatible sign() and verify(), and minting and checking the
-- access tokens this server issues.
--
-- Differences from pgjwt, on purpose:
--   * the signature comparison does not leak timing (it compares SHA-256 digests of both values);
--   * a token without a numeric `exp` is invalid, and so is one whose `nbf` lies in the future;
--   * the caller's algorithm is the only one tried: a header naming another one (or `none`) fails;
--   * STABLE rather than IMMUTABLE: verify() reads the clock, and text/bytes conversions depend on the
--     encoding (a function claiming IMMUTABLE over a STABLE body is also never inlined);
--   * PL/pgSQL (plans cached per session) or inlinable SQL-standard bodies, never a SQL function the
--     planner re-plans on every call; replace() rather than translate(), which is several times slower.
set local role authgres_owner;

-- Not declared STRICT: the planner will not inline a STRICT function whose body has a CASE, and
-- NULL inputs give NULL anyway.
create or replace function auth.algorithm_sign(signables text, secret text, algorithm text) returns text
  language sql stable parallel safe
  return auth.url_encode(auth._hmac(
    pg_catalog.convert_to(signables, 'UTF8'),
    pg_catalog.convert_to(secret, 'UTF8'),
    case algorithm when 'HS256' then 'sha256' when 'HS384' then 'sha384' when 'HS512' then 'sha512' end));
comment on function auth.algorithm_sign(text, text, text) is
  'base64url HMAC signature of signables: HS256, HS384 or HS512; NULL for any other algorithm.';
grant execute on function auth.algorithm_sign(text, text, text) to authgres_service;

create or replace function auth.sign(payload json, secret text, algorithm text default 'HS256') returns text
  language plpgsql stable strict parallel safe
  set search_path = ''
as $$
declare
  v_signables text := auth.url_encode(pg_catalog.convert_to(
      pg_catalog.json_build_object('alg', algorithm, 'typ', 'JWT')::text, 'UTF8'))
    || '.' || auth.url_encode(pg_catalog.convert_to(payload::text, 'UTF8'));
begin
  if algorithm not in ('HS256', 'HS384', 'HS512') then
    raise exception using errcode = 'AUV01', message = 'Unsupported signing algorithm';
  end if;
  return v_signables || '.' || auth.algorithm_sign(v_signables, secret, algorithm);
end
$$;
comment on function auth.sign(json, text, text) is
  'Signs payload as a compact JWT with header {"alg": algorithm, "typ": "JWT"} (pgjwt-compatible).';
grant execute on function auth.sign(json, text, text) to authgres_service;

create or replace function auth._decode_json_segment(p_segment text) returns json
  language plpgsql stable parallel safe
  set search_path = ''
as $$
begin
  return pg_catalog.convert_from(auth.url_decode(p_segment), 'UTF8')::json;
exception when others then
  return null;
end
$$;
comment on function auth._decode_json_segment(text) is
  'JSON from one base64url JWT segment, or NULL when the segment is not valid base64url JSON.';
grant execute on function auth._decode_json_segment(text) to authgres_service;

create or replace function auth._check_jwt(
  p_token text, p_secret text, p_algorithm text,
  out header json, out payload json, out signed boolean, out unexpired boolean
)
  language plpgsql stable parallel safe
  set search_path = ''
as $$
declare
  v_parts text[] := pg_catalog.string_to_array(p_token, '.');
  v_now numeric := extract(epoch from pg_catalog.now());
begin
  signed := false;
  unexpired := false;
  if pg_catalog.array_length(v_parts, 1) is distinct from 3
     or p_algorithm not in ('HS256', 'HS384', 'HS512') or p_secret is null then
    return;
  end if;
  header := auth._decode_json_segment(v_parts[1]);
  payload := auth._decode_json_segment(v_parts[2]);
  signed := coalesce(auth._equal_secure(
      auth.algorithm_sign(v_parts[1] || '.' || v_parts[2], p_secret, p_algorithm), v_parts[3])
    and pg_catalog.json_typeof(header) = 'object' and pg_catalog.json_typeof(payload) = 'object'
    and header ->> 'alg' = p_algorithm, false);
  unexpired := coalesce(signed
    and pg_catalog.json_typeof(payload -> 'exp') = 'number'
    and (payload ->> 'exp')::numeric > v_now
    and (payload -> 'nbf' is null
         or (pg_catalog.json_typeof(payload -> 'nbf') = 'number' and (payload ->> 'nbf')::numeric <= v_now)), false);
end
$$;
comment on function auth._check_jwt(text, text, text) is
  'Shared core of auth.verify() and the access-token checks: signed says the signature and header alg '
  'hold; unexpired says exp (required) and nbf hold as well.';
grant execute on function auth._check_jwt(text, text, text) to authgres_service;

create or replace function auth.verify(token text, secret text, algorithm text default 'HS256')
  returns table (header json, payload json, valid boolean)
  language plpgsql stable parallel safe
  set search_path = ''
as $$
begin
  return query select c.header, c.payload, c.signed and c.unexpired
                 from auth._check_jwt(token, secret, algorithm) c;
end
$$;
comment on function auth.verify(text, text, text) is
  'Verifies a compact JWT (pgjwt-compatible): valid only with a matching signature under the given '
  'algorithm, a header naming that algorithm, a numeric exp in the future and no nbf in the future.';
grant execute on function auth.verify(text, text, text) to authgres_service;

create or replace function auth._epoch(p_at timestamptz) returns bigint
  language sql stable strict parallel safe
  return pg_catalog.floor(extract(epoch from p_at))::bigint;
comment on function auth._epoch(timestamptz) is 'Whole seconds since 1970, as JWT NumericDate.';

-- Signing and verifying access tokens.
create or replace function auth._payload_mac(p_payload_segment text, p_mac_key bytea) returns text
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
  v_audience text;
  v_issuer text;
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
        if not (pg_catalog.jsonb_typeof(v_payload -> 'exp') = 'number' and (v_payload ->> 'exp')::numeric > v_now
                and (v_payload -> 'nbf' is null
                     or (pg_catalog.jsonb_typeof(v_payload -> 'nbf') = 'number'
                         and (v_payload ->> 'nbf')::numeric <= v_now))) then
          raise exception using errcode = 'AUJ01',
            message = 'invalid JWT: unable to parse or verify signature, token has invalid claims: token is expired';
        end if;
        -- A user's token must be meant for this audience and, when it names an issuer, this issuer.
        -- Role keys (anon, service_role: no sub) never carried either, as in GoTrue.
        if v_payload ? 'sub' then
          select s.jwt_aud, s.jwt_issuer into v_audience, v_issuer from auth.settings s;
          if not coalesce(v_payload -> 'aud' = pg_catalog.to_jsonb(v_audience)
                          or (pg_catalog.jsonb_typeof(v_payload -> 'aud') = 'array' and v_payload -> 'aud' ? v_audience),
                          false) then
            raise exception using errcode = 'AUJ06', message = 'Token audience doesn''t match request audience';
          end if;
          if v_payload ? 'iss' and v_payload -> 'iss' is distinct from pg_catalog.to_jsonb(v_issuer) then
            raise exception using errcode = 'AUJ01',
              message = 'invalid JWT: unable to parse or verify signature, token has invalid claims: token has invalid issuer';
          end if;
        end if;
        return v_payload;
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
  'A user''s token (with a sub) must name settings.jwt_aud in aud (else AUJ06) and, if it has an iss, '
  'settings.jwt_issuer. Raises AUJ01 otherwise.';
