-- 0002: JSON Web Tokens (HS256/384/512) in SQL, with pgjwt's signatures.
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
insert into auth.schema_migrations (version) values ('0002');

create function auth.url_encode(data bytea) returns text
  language sql immutable strict parallel safe
  return pg_catalog.rtrim(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
    pg_catalog.encode(data, 'base64'), E'\n', ''), '+', '-'), '/', '_'), '=');
comment on function auth.url_encode(bytea) is 'base64url without padding (RFC 7515 section 2).';

create function auth.url_decode(data text) returns bytea
  language sql immutable strict parallel safe
  return pg_catalog.decode(
    pg_catalog.replace(pg_catalog.replace(data, '-', '+'), '_', '/')
      || pg_catalog.substr('===', 1, (4 - pg_catalog.octet_length(data) % 4) % 4),
    'base64');
comment on function auth.url_decode(text) is 'Inverse of auth.url_encode(); raises on malformed input.';

-- Not declared STRICT: the planner will not inline a STRICT function whose body has a CASE, and
-- NULL inputs give NULL anyway.
create function auth.algorithm_sign(signables text, secret text, algorithm text) returns text
  language sql stable parallel safe
  return auth.url_encode(auth._hmac(
    pg_catalog.convert_to(signables, 'UTF8'),
    pg_catalog.convert_to(secret, 'UTF8'),
    case algorithm when 'HS256' then 'sha256' when 'HS384' then 'sha384' when 'HS512' then 'sha512' end));
comment on function auth.algorithm_sign(text, text, text) is
  'base64url HMAC signature of signables: HS256, HS384 or HS512; NULL for any other algorithm.';

create function auth.sign(payload json, secret text, algorithm text default 'HS256') returns text
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

-- Compares digests instead of the values: an early exit in the byte comparison then says something
-- only about SHA-256 of the secret value, which does not lead back to the value itself.
create function auth._equal_secure(p_left text, p_right text) returns boolean
  language sql stable parallel safe
  return coalesce(
    pg_catalog.sha256(pg_catalog.convert_to(p_left, 'UTF8')) = pg_catalog.sha256(pg_catalog.convert_to(p_right, 'UTF8')),
    false);
comment on function auth._equal_secure(text, text) is
  'Equality of two secrets whose timing does not reveal them; false when either side is NULL.';

create function auth._decode_json_segment(p_segment text) returns json
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

create function auth._check_jwt(
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

create function auth.verify(token text, secret text, algorithm text default 'HS256')
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

-- These are SECURITY INVOKER: whoever may call verify() or sign() needs the helpers they call, too.
grant execute on function
  auth._hmac(bytea, bytea, text), auth._equal_secure(text, text),
  auth._decode_json_segment(text), auth._check_jwt(text, text, text),
  auth.url_encode(bytea), auth.url_decode(text), auth.algorithm_sign(text, text, text),
  auth.sign(json, text, text), auth.verify(text, text, text)
  to authgres_service;
