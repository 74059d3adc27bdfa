--
-- PostgreSQL database dump
--

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: auth; Type: SCHEMA; Schema: -; Owner: authgres_owner
--

CREATE SCHEMA auth;

ALTER SCHEMA auth OWNER TO authgres_owner;

--
-- Name: SCHEMA auth; Type: COMMENT; Schema: -; Owner: authgres_owner
--

COMMENT ON SCHEMA auth IS 'authgres: users, sessions, tokens and the functions that manage them.';

--
-- Name: extensions; Type: SCHEMA; Schema: -; Owner: postgres
--

CREATE SCHEMA extensions;

ALTER SCHEMA extensions OWNER TO postgres;

--
-- Name: pgcrypto; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;

--
-- Name: EXTENSION pgcrypto; Type: COMMENT; Schema: -; Owner: 
--

COMMENT ON EXTENSION pgcrypto IS 'cryptographic functions';

--
-- Name: aal_level; Type: TYPE; Schema: auth; Owner: authgres_owner
--

CREATE TYPE auth.aal_level AS ENUM (
    'aal1',
    'aal2',
    'aal3'
);

ALTER TYPE auth.aal_level OWNER TO authgres_owner;

--
-- Name: TYPE aal_level; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TYPE auth.aal_level IS 'Authenticator assurance level of a session (NIST SP 800-63B).';

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: sessions; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.sessions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    factor_id uuid,
    aal auth.aal_level DEFAULT 'aal1'::auth.aal_level NOT NULL,
    not_after timestamp with time zone,
    refreshed_at timestamp with time zone,
    user_agent text,
    ip inet,
    tag text,
    refresh_token_key bytea NOT NULL
);

ALTER TABLE auth.sessions OWNER TO authgres_owner;

--
-- Name: TABLE sessions; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.sessions IS 'A signed-in device. Access tokens name it in their session_id claim; deleting the row signs the device out.';

--
-- Name: COLUMN sessions.not_after; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.sessions.not_after IS 'The session ends at this time whatever its refresh tokens say.';

--
-- Name: COLUMN sessions.refresh_token_key; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.sessions.refresh_token_key IS 'Secret of the session''s refresh-token chain: each token is the HMAC of its parent under this key, so a lost response can be replayed without keeping any token in the clear. Readable only by the owner.';

--
-- Name: users; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.users (
    instance_id uuid DEFAULT '00000000-0000-0000-0000-000000000000'::uuid NOT NULL,
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    aud character varying(255),
    role character varying(255),
    email character varying(255),
    encrypted_password character varying(255),
    email_confirmed_at timestamp with time zone,
    invited_at timestamp with time zone,
    confirmation_sent_at timestamp with time zone,
    recovery_sent_at timestamp with time zone,
    email_change character varying(255) DEFAULT ''::character varying NOT NULL,
    email_change_sent_at timestamp with time zone,
    last_sign_in_at timestamp with time zone,
    raw_app_meta_data jsonb DEFAULT '{}'::jsonb NOT NULL,
    raw_user_meta_data jsonb DEFAULT '{}'::jsonb NOT NULL,
    is_super_admin boolean,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    phone text,
    phone_confirmed_at timestamp with time zone,
    phone_change text DEFAULT ''::text NOT NULL,
    phone_change_sent_at timestamp with time zone,
    confirmed_at timestamp with time zone GENERATED ALWAYS AS (LEAST(email_confirmed_at, phone_confirmed_at)) STORED,
    reauthentication_sent_at timestamp with time zone,
    banned_until timestamp with time zone,
    is_sso_user boolean DEFAULT false NOT NULL,
    deleted_at timestamp with time zone,
    is_anonymous boolean DEFAULT false NOT NULL,
    email_change_confirm_status smallint DEFAULT 0 NOT NULL,
    CONSTRAINT users_email_change_confirm_status_check CHECK (((email_change_confirm_status >= 0) AND (email_change_confirm_status <= 2))),
    CONSTRAINT users_email_lowercase CHECK (((email)::text = lower((email)::text)))
);

ALTER TABLE auth.users OWNER TO authgres_owner;

--
-- Name: TABLE users; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.users IS 'One row per user account. Applications reference auth.users(id).';

--
-- Name: COLUMN users.email; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.users.email IS 'Lower-cased; unique among non-SSO users.';

--
-- Name: COLUMN users.encrypted_password; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.users.encrypted_password IS 'argon2id (or imported bcrypt) hash; NULL when the user has no password.';

--
-- Name: COLUMN users.is_anonymous; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.users.is_anonymous IS 'Created by an anonymous sign-in; has no email, phone or identity.';

--
-- Name: COLUMN users.email_change_confirm_status; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.users.email_change_confirm_status IS 'How many of the two email-change confirmations arrived.';

--
-- Name: _access_token(auth.users, auth.sessions); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._access_token(p_user auth.users, p_session auth.sessions, OUT token text, OUT expires_at bigint) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_iat bigint := auth._epoch(pg_catalog.now());
  v_claims jsonb;
  v_custom jsonb;
begin
  select * into v_settings from auth.settings;
  expires_at := v_iat + v_settings.jwt_exp;
  v_claims := pg_catalog.jsonb_build_object(
    'sub', p_user.id,
    'aud', coalesce(p_user.aud, v_settings.jwt_aud),
    'exp', expires_at,
    'iat', v_iat,
    'email', coalesce(p_user.email, ''),
    'phone', coalesce(p_user.phone, ''),
    'app_metadata', p_user.raw_app_meta_data,
    'user_metadata', p_user.raw_user_meta_data,
    'role', coalesce(p_user.role, v_settings.jwt_default_role),
    'aal', p_session.aal,
    'amr', coalesce(
      (select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'method', c.authentication_method, 'timestamp', auth._epoch(c.updated_at))
              order by c.updated_at desc)
         from auth.mfa_amr_claims c
        where c.session_id = p_session.id),
      '[]'::jsonb),
    'session_id', p_session.id,
    'is_anonymous', p_user.is_anonymous)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('iss', v_settings.jwt_issuer));
  if v_settings.hook_custom_access_token is not null then
    v_custom := auth._call_hook(v_settings.hook_custom_access_token, pg_catalog.jsonb_build_object(
      'user_id', p_user.id, 'claims', v_claims,
      'authentication_method', v_claims -> 'amr' -> 0 ->> 'method'));
    if pg_catalog.jsonb_typeof(v_custom -> 'claims') <> 'object'
       or not (v_custom -> 'claims') ?& array['aud', 'email', 'phone', 'role', 'is_anonymous'] then
      raise exception using errcode = 'AUH01',
        message = 'Hook custom_access_token must return claims with at least aud, email, phone, role and is_anonymous';
    end if;
    -- Who, which session, how strongly and for how long are not the hook's to change.
    v_claims := (v_custom -> 'claims') || pg_catalog.jsonb_build_object(
      'sub', v_claims -> 'sub', 'session_id', v_claims -> 'session_id', 'aal', v_claims -> 'aal',
      'amr', v_claims -> 'amr', 'exp', v_claims -> 'exp', 'iat', v_claims -> 'iat');
  end if;
  token := auth._sign_claims(v_claims);
end
$$;

ALTER FUNCTION auth._access_token(p_user auth.users, p_session auth.sessions, OUT token text, OUT expires_at bigint) OWNER TO authgres_owner;

--
-- Name: FUNCTION _access_token(p_user auth.users, p_session auth.sessions, OUT token text, OUT expires_at bigint); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._access_token(p_user auth.users, p_session auth.sessions, OUT token text, OUT expires_at bigint) IS 'A signed access token for a session, with GoTrue''s claims (changed by the custom_access_token hook, if any).';

--
-- Name: identities; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.identities (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    provider_id text NOT NULL,
    user_id uuid NOT NULL,
    identity_data jsonb NOT NULL,
    provider text NOT NULL,
    last_sign_in_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    email text GENERATED ALWAYS AS (lower((identity_data ->> 'email'::text))) STORED
);

ALTER TABLE auth.identities OWNER TO authgres_owner;

--
-- Name: TABLE identities; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.identities IS 'How a user signs in: one row per provider (email, phone, OAuth ...).';

--
-- Name: COLUMN identities.provider_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.identities.provider_id IS 'The user id at the provider; the auth.users id for email and phone.';

--
-- Name: _add_provider(auth.users, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._add_provider(p_user auth.users, p_provider text) RETURNS auth.users
    LANGUAGE sql
    SET search_path TO ''
    BEGIN ATOMIC
 UPDATE auth.users u SET raw_app_meta_data = jsonb_set((u.raw_app_meta_data || jsonb_build_object('provider', COALESCE((u.raw_app_meta_data ->> 'provider'::text), _add_provider.p_provider))), '{providers}'::text[], ( SELECT jsonb_agg(DISTINCT i.provider) AS jsonb_agg
            FROM auth.identities i
           WHERE (i.user_id = u.id))), updated_at = now()
   WHERE (u.id = (_add_provider.p_user).id)
   RETURNING u.instance_id,
     u.id,
     u.aud,
     u.role,
     u.email,
     u.encrypted_password,
     u.email_confirmed_at,
     u.invited_at,
     u.confirmation_sent_at,
     u.recovery_sent_at,
     u.email_change,
     u.email_change_sent_at,
     u.last_sign_in_at,
     u.raw_app_meta_data,
     u.raw_user_meta_data,
     u.is_super_admin,
     u.created_at,
     u.updated_at,
     u.phone,
     u.phone_confirmed_at,
     u.phone_change,
     u.phone_change_sent_at,
     u.confirmed_at,
     u.reauthentication_sent_at,
     u.banned_until,
     u.is_sso_user,
     u.deleted_at,
     u.is_anonymous,
     u.email_change_confirm_status;
END;

ALTER FUNCTION auth._add_provider(p_user auth.users, p_provider text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _add_provider(p_user auth.users, p_provider text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._add_provider(p_user auth.users, p_provider text) IS 'app_metadata.providers brought in line with the user''s identities (provider set when it had none).';

--
-- Name: _admin_user(uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._admin_user(p_user_id uuid) RETURNS auth.users
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
begin
  select * into v_user from auth.users where id = p_user_id;
  if not found then
    raise exception using errcode = 'AUA02', message = 'User not found';
  end if;
  return v_user;
end
$$;

ALTER FUNCTION auth._admin_user(p_user_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION _admin_user(p_user_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._admin_user(p_user_id uuid) IS 'The user, or AUA02.';

--
-- Name: _api_key_claims(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._api_key_claims(p_key text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_key auth.api_keys;
  v_user auth.users;
  v_settings auth.settings;
  v_now bigint := auth._epoch(pg_catalog.now());
begin
  select * into v_key from auth.api_keys where key_digest = auth._token_hash(p_key);
  if not found or v_key.revoked_at is not null or v_key.expires_at <= pg_catalog.now() then
    raise exception using errcode = 'AUJ01', message = 'invalid API key: unknown, revoked or expired';
  end if;
  select * into strict v_user from auth.users where id = v_key.user_id;
  -- Coarse bookkeeping: at most one write a minute per key, not one per request.
  if v_key.last_used_at is null or v_key.last_used_at < pg_catalog.now() - interval '1 minute' then
    update auth.api_keys set last_used_at = pg_catalog.now() where id = v_key.id;
  end if;
  select * into v_settings from auth.settings;
  return pg_catalog.jsonb_build_object(
    'sub', v_user.id, 'aud', coalesce(v_user.aud, v_settings.jwt_aud),
    'exp', coalesce(auth._epoch(v_key.expires_at), v_now + v_settings.jwt_exp), 'iat', v_now,
    'email', coalesce(v_user.email, ''), 'phone', coalesce(v_user.phone, ''),
    'app_metadata', v_user.raw_app_meta_data, 'user_metadata', v_user.raw_user_meta_data,
    'role', coalesce(v_user.role, v_settings.jwt_default_role), 'aal', 'aal1',
    'amr', pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
             'method', 'api_key', 'timestamp', auth._epoch(v_key.created_at))),
    'api_key_id', v_key.id, 'is_anonymous', v_user.is_anonymous);
end
$$;

ALTER FUNCTION auth._api_key_claims(p_key text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _api_key_claims(p_key text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._api_key_claims(p_key text) IS 'The claims an API key stands for: its user at aal1, amr api_key, no session. AUJ01 when unknown, revoked or expired.';

--
-- Name: _audit(auth.users, text, text, inet, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._audit(p_user auth.users, p_action text, p_log_type text, p_ip inet, p_traits jsonb DEFAULT NULL::jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  insert into auth.audit_log_entries (payload, ip_address)
  values (
    pg_catalog.json_strip_nulls(pg_catalog.json_build_object(
      'actor_id', p_user.id,
      'actor_username', p_user.email,
      'actor_via_sso', false,
      'action', p_action,
      'log_type', p_log_type,
      'traits', p_traits)),
    coalesce(pg_catalog.host(p_ip), ''));
end
$$;

ALTER FUNCTION auth._audit(p_user auth.users, p_action text, p_log_type text, p_ip inet, p_traits jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _audit(p_user auth.users, p_action text, p_log_type text, p_ip inet, p_traits jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._audit(p_user auth.users, p_action text, p_log_type text, p_ip inet, p_traits jsonb) IS 'Appends one audit_log_entries row, in the caller''s transaction.';

--
-- Name: _audit_admin(text, auth.users, inet, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._audit_admin(p_action text, p_user auth.users, p_ip inet, p_traits jsonb DEFAULT '{}'::jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  insert into auth.audit_log_entries (payload, ip_address)
  values (pg_catalog.json_build_object(
            'actor_id', '00000000-0000-0000-0000-000000000000',
            'actor_username', 'service_role',
            'actor_via_sso', false,
            'action', p_action,
            'log_type', 'admin',
            'traits', pg_catalog.jsonb_build_object('user_id', p_user.id, 'user_email', p_user.email) || p_traits),
          coalesce(pg_catalog.host(p_ip), ''));
end
$$;

ALTER FUNCTION auth._audit_admin(p_action text, p_user auth.users, p_ip inet, p_traits jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _audit_admin(p_action text, p_user auth.users, p_ip inet, p_traits jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._audit_admin(p_action text, p_user auth.users, p_ip inet, p_traits jsonb) IS 'Audits an admin action on a user.';

--
-- Name: _authorize(text, boolean); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._authorize(p_token text, p_require_user boolean, OUT claims jsonb, OUT usr auth.users, OUT sess auth.sessions) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
declare
  v_sub text;
  v_session_id text;
begin
  claims := auth._verified_claims(p_token);
  v_sub := claims ->> 'sub';
  if v_sub is null then
    if p_require_user then
      raise exception using errcode = 'AUJ01', message = 'invalid claim: missing sub claim';
    end if;
    return;
  end if;
  if v_sub !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    raise exception using errcode = 'AUJ02', message = 'invalid claim: sub claim must be a UUID';
  end if;
  select * into usr from auth.users u where u.id = v_sub::uuid and u.deleted_at is null;
  if not found then
    raise exception using errcode = 'AUJ03', message = 'User from sub claim in JWT does not exist';
  end if;
  v_session_id := claims ->> 'session_id';
  if v_session_id is not null and v_session_id <> '00000000-0000-0000-0000-000000000000' then
    if v_session_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      select * into sess from auth.sessions s
       where s.id = v_session_id::uuid and s.user_id = usr.id
         and (s.not_after is null or s.not_after > pg_catalog.now());
    end if;
    if sess.id is null then
      raise exception using errcode = 'AUJ04', message = 'Session from session_id claim in JWT does not exist';
    end if;
  end if;
  if usr.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;
end
$_$;

ALTER FUNCTION auth._authorize(p_token text, p_require_user boolean, OUT claims jsonb, OUT usr auth.users, OUT sess auth.sessions) OWNER TO authgres_owner;

--
-- Name: FUNCTION _authorize(p_token text, p_require_user boolean, OUT claims jsonb, OUT usr auth.users, OUT sess auth.sessions); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._authorize(p_token text, p_require_user boolean, OUT claims jsonb, OUT usr auth.users, OUT sess auth.sessions) IS 'Who a bearer token speaks for: its claims, and its user and session, which must still exist.';

--
-- Name: _call_hook(text, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._call_hook(p_function text, p_event jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_result jsonb;
begin
  -- The hook runs in a subtransaction of the request's own: whatever it did is undone when it fails,
  -- and the request's statement_timeout bounds it.
  begin
    v_result := auth._run_hook(p_function::regproc, p_event);
  exception
    when query_canceled then
      raise exception using errcode = 'AUH02', message = pg_catalog.format('Hook %s timed out', p_function);
    when others then
      raise exception using errcode = 'AUH01',
        message = pg_catalog.format('Error running hook %s: %s', p_function, sqlerrm);
  end;
  if v_result ? 'error' then
    raise exception using errcode = 'AUH03',
      message = coalesce(v_result -> 'error' ->> 'message', 'Rejected by a hook');
  end if;
  return coalesce(v_result, '{}');
end
$$;

ALTER FUNCTION auth._call_hook(p_function text, p_event jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _call_hook(p_function text, p_event jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._call_hook(p_function text, p_event jsonb) IS 'Calls a configured hook f(event jsonb) returns jsonb, as authgres_hook. Raises AUH01 if it fails, AUH02 if it times out, AUH03 when it answers {"error": {"message": ...}}.';

--
-- Name: _canonical_recovery_code(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._canonical_recovery_code(p_code text) RETURNS text
    LANGUAGE sql IMMUTABLE
    RETURN lower(regexp_replace(COALESCE(p_code, ''::text), '[\s-]'::text, ''::text, 'g'::text));

ALTER FUNCTION auth._canonical_recovery_code(p_code text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _canonical_recovery_code(p_code text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._canonical_recovery_code(p_code text) IS 'A recovery code as typed, in its canonical form: lowercase, without whitespace or - separators.';

--
-- Name: mfa_factors; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.mfa_factors (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    friendly_name text DEFAULT ''::text NOT NULL,
    factor_type text NOT NULL,
    status text DEFAULT 'unverified'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    secret bytea,
    last_challenged_at timestamp with time zone,
    last_used_step bigint,
    phone text,
    CONSTRAINT mfa_factors_factor_type_check CHECK ((factor_type = ANY (ARRAY['totp'::text, 'email'::text, 'phone'::text, 'webauthn'::text, 'recovery_code'::text]))),
    CONSTRAINT mfa_factors_phone_check CHECK ((phone ~ '^[1-9][0-9]{1,14}$'::text)),
    CONSTRAINT mfa_factors_phone_factor_has_phone CHECK (((factor_type = 'phone'::text) = (phone IS NOT NULL))),
    CONSTRAINT mfa_factors_status_check CHECK ((status = ANY (ARRAY['unverified'::text, 'verified'::text])))
);

ALTER TABLE auth.mfa_factors OWNER TO authgres_owner;

--
-- Name: TABLE mfa_factors; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.mfa_factors IS 'Second factors of a user: TOTP authenticator apps, email, phones, WebAuthn authenticators, and the set of recovery codes (auth.mfa_recovery_codes).';

--
-- Name: COLUMN mfa_factors.secret; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.mfa_factors.secret IS 'The TOTP key (20 random bytes). Readable only by the owner role.';

--
-- Name: COLUMN mfa_factors.last_used_step; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.mfa_factors.last_used_step IS 'TOTP time step of the last accepted code: a code works once.';

--
-- Name: COLUMN mfa_factors.phone; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.mfa_factors.phone IS 'A phone factor''s number (E.164 digits without +).';

--
-- Name: _challenge_webauthn_factor(auth.users, uuid, auth.mfa_factors, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._challenge_webauthn_factor(p_user auth.users, p_session_id uuid, p_factor auth.mfa_factors, p_ip inet) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_challenge auth.mfa_challenges;
begin
  select * into v_settings from auth.settings;
  if not v_settings.mfa_web_authn_enabled then
    raise exception using errcode = 'AUM14', message = 'MFA verification is disabled for WebAuthn';
  end if;
  insert into auth.mfa_challenges (factor_id, session_id, expires_at, ip_address, web_authn_challenge)
  values (p_factor.id, p_session_id, pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry),
          p_ip, auth._random_bytes(32))
  returning * into v_challenge;
  update auth.mfa_factors set last_challenged_at = pg_catalog.now() where id = p_factor.id;
  -- An unverified factor registers its credential (excluding the user's others); a verified one asserts it.
  return pg_catalog.jsonb_build_object(
    'id', v_challenge.id, 'type', 'webauthn', 'expires_at', auth._epoch(v_challenge.expires_at),
    'webauthn', pg_catalog.jsonb_build_object(
      'type', case p_factor.status when 'verified' then 'request' else 'create' end,
      'challenge', auth.url_encode(v_challenge.web_authn_challenge),
      'user', auth._webauthn_user(p_user),
      'credentials', case p_factor.status
        when 'verified' then coalesce((select pg_catalog.jsonb_agg(auth.url_encode(c.credential_id))
                                         from auth.webauthn_credentials c where c.factor_id = p_factor.id), '[]')
        else auth._user_credential_ids(p_user.id) end));
end
$$;

ALTER FUNCTION auth._challenge_webauthn_factor(p_user auth.users, p_session_id uuid, p_factor auth.mfa_factors, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _challenge_webauthn_factor(p_user auth.users, p_session_id uuid, p_factor auth.mfa_factors, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._challenge_webauthn_factor(p_user auth.users, p_session_id uuid, p_factor auth.mfa_factors, p_ip inet) IS 'A WebAuthn factor''s challenge: type create (register its credential; credentials: those to exclude) or request (assert it; credentials: the one allowed), with the random challenge and the user.';

--
-- Name: _check_jwt(text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._check_jwt(p_token text, p_secret text, p_algorithm text, OUT header json, OUT payload json, OUT signed boolean, OUT unexpired boolean) RETURNS record
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION auth._check_jwt(p_token text, p_secret text, p_algorithm text, OUT header json, OUT payload json, OUT signed boolean, OUT unexpired boolean) OWNER TO authgres_owner;

--
-- Name: FUNCTION _check_jwt(p_token text, p_secret text, p_algorithm text, OUT header json, OUT payload json, OUT signed boolean, OUT unexpired boolean); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._check_jwt(p_token text, p_secret text, p_algorithm text, OUT header json, OUT payload json, OUT signed boolean, OUT unexpired boolean) IS 'Shared core of auth.verify() and the access-token checks: signed says the signature and header alg hold; unexpired says exp (required) and nbf hold as well.';

--
-- Name: _confirm_email(auth.users); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._confirm_email(p_user auth.users) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
begin
  if p_user.email_confirmed_at is not null then
    return p_user;
  end if;
  update auth.users
     set email_confirmed_at = pg_catalog.now(), updated_at = pg_catalog.now(),
         raw_user_meta_data = raw_user_meta_data || '{"email_verified": true}'
   where id = p_user.id
  returning * into v_user;
  update auth.identities
     set identity_data = identity_data || '{"email_verified": true}', updated_at = pg_catalog.now()
   where user_id = p_user.id and provider = 'email';
  perform auth._audit(v_user, 'user_confirmation_completed', 'user', null);
  return v_user;
end
$$;

ALTER FUNCTION auth._confirm_email(p_user auth.users) OWNER TO authgres_owner;

--
-- Name: FUNCTION _confirm_email(p_user auth.users); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._confirm_email(p_user auth.users) IS 'Marks the user''s email verified (user, metadata and email identity).';

--
-- Name: _confirm_phone(auth.users); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._confirm_phone(p_user auth.users) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
begin
  if p_user.phone_confirmed_at is not null then
    return p_user;
  end if;
  update auth.users
     set phone_confirmed_at = pg_catalog.now(), updated_at = pg_catalog.now(),
         raw_user_meta_data = raw_user_meta_data || '{"phone_verified": true}'
   where id = p_user.id
  returning * into v_user;
  update auth.identities
     set identity_data = identity_data || '{"phone_verified": true}', updated_at = pg_catalog.now()
   where user_id = p_user.id and provider = 'phone';
  perform auth._audit(v_user, 'user_confirmation_completed', 'user', null, '{"provider": "phone"}');
  return v_user;
end
$$;

ALTER FUNCTION auth._confirm_phone(p_user auth.users) OWNER TO authgres_owner;

--
-- Name: FUNCTION _confirm_phone(p_user auth.users); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._confirm_phone(p_user auth.users) IS 'Marks the user''s phone verified (user, metadata and phone identity).';

--
-- Name: webauthn_challenges; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.webauthn_challenges (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid,
    challenge_type text NOT NULL,
    challenge bytea NOT NULL,
    session_data jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT webauthn_challenges_challenge_check CHECK ((length(challenge) >= 16)),
    CONSTRAINT webauthn_challenges_challenge_type_check CHECK ((challenge_type = ANY (ARRAY['registration'::text, 'authentication'::text]))),
    CONSTRAINT webauthn_challenges_check CHECK (((challenge_type = 'registration'::text) = (user_id IS NOT NULL))),
    CONSTRAINT webauthn_challenges_session_data_check CHECK ((jsonb_typeof(session_data) = 'object'::text))
);

ALTER TABLE auth.webauthn_challenges OWNER TO authgres_owner;

--
-- Name: TABLE webauthn_challenges; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.webauthn_challenges IS 'Live passkey ceremonies: a registration (for a signed-in user) or a discoverable sign-in (no user). Each is deleted by the one verification that uses it, in the transaction that records its result.';

--
-- Name: COLUMN webauthn_challenges.user_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_challenges.user_id IS 'Who registers; NULL for a sign-in (the passkey names its user).';

--
-- Name: COLUMN webauthn_challenges.challenge; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_challenges.challenge IS 'The random challenge (32 bytes) the authenticator must sign.';

--
-- Name: COLUMN webauthn_challenges.session_data; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_challenges.session_data IS 'What else the ceremony was started with (user verification asked).';

--
-- Name: COLUMN webauthn_challenges.expires_at; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_challenges.expires_at IS 'After this the challenge is refused (webauthn_challenge_expired).';

--
-- Name: _consume_webauthn_challenge(uuid, text, uuid, bytea); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._consume_webauthn_challenge(p_challenge_id uuid, p_challenge_type text, p_user_id uuid, p_challenge bytea) RETURNS auth.webauthn_challenges
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_challenge auth.webauthn_challenges;
begin
  -- Deleted first: a concurrent verification of the same challenge waits on this row, then finds it
  -- gone. A refusal below rolls the delete back with everything else.
  delete from auth.webauthn_challenges
   where id = p_challenge_id and challenge_type = p_challenge_type and user_id is not distinct from p_user_id
  returning * into v_challenge;
  if not found then
    raise exception using errcode = 'AUW01', message = 'Challenge not found or already used';
  end if;
  if v_challenge.expires_at <= pg_catalog.now() then
    raise exception using errcode = 'AUW02', message = 'Challenge has expired';
  end if;
  if not auth._equal_keyed(v_challenge.challenge, p_challenge) then
    raise exception using errcode = 'AUW03', message = 'Credential verification failed';
  end if;
  return v_challenge;
end
$$;

ALTER FUNCTION auth._consume_webauthn_challenge(p_challenge_id uuid, p_challenge_type text, p_user_id uuid, p_challenge bytea) OWNER TO authgres_owner;

--
-- Name: FUNCTION _consume_webauthn_challenge(p_challenge_id uuid, p_challenge_type text, p_user_id uuid, p_challenge bytea); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._consume_webauthn_challenge(p_challenge_id uuid, p_challenge_type text, p_user_id uuid, p_challenge bytea) IS 'Spends a live passkey challenge of this type (and user), whose value is the one the authenticator signed: AUW01 unknown or spent, AUW02 expired, AUW03 another challenge was signed.';

--
-- Name: rate_limits; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.rate_limits (
    key text NOT NULL,
    window_started_at timestamp with time zone NOT NULL,
    hits integer NOT NULL
);

ALTER TABLE auth.rate_limits OWNER TO authgres_owner;

--
-- Name: TABLE rate_limits; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.rate_limits IS 'Fixed-window counters shared by every service process (key: what is limited).';

--
-- Name: _count_hit(text, interval); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._count_hit(p_key text, p_window interval) RETURNS auth.rate_limits
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_row auth.rate_limits;
begin
  insert into auth.rate_limits as r (key, window_started_at, hits)
  values (p_key, pg_catalog.now(), 1)
  on conflict (key) do update
     set window_started_at = case when r.window_started_at + p_window <= pg_catalog.now()
                                  then pg_catalog.now() else r.window_started_at end,
         hits = case when r.window_started_at + p_window <= pg_catalog.now() then 1 else r.hits + 1 end
  returning * into v_row;
  return v_row;
end
$$;

ALTER FUNCTION auth._count_hit(p_key text, p_window interval) OWNER TO authgres_owner;

--
-- Name: FUNCTION _count_hit(p_key text, p_window interval); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._count_hit(p_key text, p_window interval) IS 'Counts one hit on p_key in its current window (a new window once the last one ended); the row after it.';

--
-- Name: _decode_json_segment(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._decode_json_segment(p_segment text) RETURNS json
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
begin
  return pg_catalog.convert_from(auth.url_decode(p_segment), 'UTF8')::json;
exception when others then
  return null;
end
$$;

ALTER FUNCTION auth._decode_json_segment(p_segment text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _decode_json_segment(p_segment text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._decode_json_segment(p_segment text) IS 'JSON from one base64url JWT segment, or NULL when the segment is not valid base64url JSON.';

--
-- Name: _defer_signup(text, text, jsonb, text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._defer_signup(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_user auth.users;
  v_pending auth.pending_signups;
begin
  select * into v_settings from auth.settings;
  select * into v_user from auth.users where email = p_email and not is_sso_user;
  if not found then
    insert into auth.pending_signups (email, password_hash, data, expires_at)
    values (p_email, p_password_hash, coalesce(p_data, '{}'),
            pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mailer_otp_exp))
    returning * into v_pending;
    perform auth._queue_pending_signup_email(v_pending, p_redirect_to, p_code_challenge, p_code_challenge_method);
  elsif v_user.email_confirmed_at is null then
    -- A user made before sign-ups were deferred, still unconfirmed: confirmed as before.
    perform auth._queue_email(v_user, 'confirmation', p_email, p_redirect_to, '{}', null,
                              p_code_challenge, p_code_challenge_method);
  end if;
  return auth._pending_signup_answer(p_email, null, p_data);
end
$$;

ALTER FUNCTION auth._defer_signup(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _defer_signup(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._defer_signup(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) IS 'Deferred sign-up: records a pending sign-up and emails its code (nothing for a registered address); the answer is the same for new, pending and registered addresses.';

--
-- Name: _delete_user(auth.users, boolean); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._delete_user(p_user auth.users, p_soft boolean) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if not p_soft then
    delete from auth.users where id = p_user.id;
  else
    -- Soft: the row stays for foreign keys, but nothing can sign in with it and its address is free.
    delete from auth.sessions where user_id = p_user.id;
    delete from auth.identities where user_id = p_user.id;
    delete from auth.mfa_factors where user_id = p_user.id;
    delete from auth.webauthn_credentials where user_id = p_user.id;
    delete from auth.webauthn_challenges where user_id = p_user.id;
    delete from auth.mfa_recovery_codes where user_id = p_user.id;
    delete from auth.one_time_tokens where user_id = p_user.id;
    update auth.api_keys set revoked_at = pg_catalog.now() where user_id = p_user.id and revoked_at is null;
    update auth.users set email = null, phone = null, encrypted_password = null, email_change = '',
           deleted_at = pg_catalog.now(), updated_at = pg_catalog.now()
     where id = p_user.id;
  end if;
  -- Told last, after the sessions' own session_revoked events, like every event: the per-user event
  -- lock is then taken after the rows are, so a sign-out racing the deletion queues instead of deadlocking.
  perform auth._user_event(p_user.id, 'account_deleted');
end
$$;

ALTER FUNCTION auth._delete_user(p_user auth.users, p_soft boolean) OWNER TO authgres_owner;

--
-- Name: FUNCTION _delete_user(p_user auth.users, p_soft boolean); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._delete_user(p_user auth.users, p_soft boolean) IS 'Removes a user with everything it signs in with (sessions, identities, factors, API keys), or with p_soft keeps the row freed of address and secrets; emits account_deleted.';

--
-- Name: _email_factor(auth.users); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._email_factor(p_user auth.users) RETURNS auth.mfa_factors
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_factor auth.mfa_factors;
begin
  select * into v_factor from auth.mfa_factors where user_id = p_user.id and factor_type = 'email';
  if not found then
    insert into auth.mfa_factors (user_id, factor_type, status, friendly_name)
    values (p_user.id, 'email', 'verified', 'email')
    returning * into v_factor;
    perform auth._user_event(p_user.id, 'factor_changed',
                             pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'enrolled'));
  end if;
  return v_factor;
end
$$;

ALTER FUNCTION auth._email_factor(p_user auth.users) OWNER TO authgres_owner;

--
-- Name: FUNCTION _email_factor(p_user auth.users); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._email_factor(p_user auth.users) IS 'The user''s email factor, created (verified: the address is) when missing.';

--
-- Name: _epoch(timestamp with time zone); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._epoch(p_at timestamp with time zone) RETURNS bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN (floor(EXTRACT(epoch FROM p_at)))::bigint;

ALTER FUNCTION auth._epoch(p_at timestamp with time zone) OWNER TO authgres_owner;

--
-- Name: FUNCTION _epoch(p_at timestamp with time zone); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._epoch(p_at timestamp with time zone) IS 'Whole seconds since 1970, as JWT NumericDate.';

--
-- Name: _equal_keyed(bytea, bytea); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._equal_keyed(p_left bytea, p_right bytea) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  -- A fresh key: the compared digests cannot be computed by a caller probing short codes.
  v_key bytea := auth._random_bytes(32);
begin
  return coalesce(auth._hmac(p_left, v_key, 'sha256') = auth._hmac(p_right, v_key, 'sha256'), false);
end
$$;

ALTER FUNCTION auth._equal_keyed(p_left bytea, p_right bytea) OWNER TO authgres_owner;

--
-- Name: FUNCTION _equal_keyed(p_left bytea, p_right bytea); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._equal_keyed(p_left bytea, p_right bytea) IS 'Equality of a secret with a guess that leaks nothing through timing, even for a small guess space.';

--
-- Name: _equal_secure(text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._equal_secure(p_left text, p_right text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN COALESCE((sha256(convert_to(p_left, 'UTF8'::name)) = sha256(convert_to(p_right, 'UTF8'::name))), false);

ALTER FUNCTION auth._equal_secure(p_left text, p_right text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _equal_secure(p_left text, p_right text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._equal_secure(p_left text, p_right text) IS 'Equality of two secrets whose timing does not reveal them; false when either side is NULL.';

--
-- Name: _factor_json(auth.mfa_factors); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._factor_json(p_factor auth.mfa_factors) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  return pg_catalog.jsonb_build_object(
    'id', p_factor.id, 'friendly_name', p_factor.friendly_name, 'factor_type', p_factor.factor_type,
    'status', p_factor.status, 'created_at', p_factor.created_at, 'updated_at', p_factor.updated_at,
    'last_challenged_at', p_factor.last_challenged_at, 'phone', coalesce(p_factor.phone, ''));
end
$$;

ALTER FUNCTION auth._factor_json(p_factor auth.mfa_factors) OWNER TO authgres_owner;

--
-- Name: FUNCTION _factor_json(p_factor auth.mfa_factors); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._factor_json(p_factor auth.mfa_factors) IS 'A factor as GoTrue serialises it (never its secret).';

--
-- Name: _factor_of(uuid, uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._factor_of(p_user_id uuid, p_factor_id uuid) RETURNS auth.mfa_factors
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_factor auth.mfa_factors;
begin
  select * into v_factor from auth.mfa_factors where id = p_factor_id and user_id = p_user_id;
  if not found then
    raise exception using errcode = 'AUM01', message = 'Factor not found';
  end if;
  return v_factor;
end
$$;

ALTER FUNCTION auth._factor_of(p_user_id uuid, p_factor_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION _factor_of(p_user_id uuid, p_factor_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._factor_of(p_user_id uuid, p_factor_id uuid) IS 'The user''s factor, or AUM01.';

--
-- Name: settings; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.settings (
    singleton boolean DEFAULT true NOT NULL,
    site_url text DEFAULT 'http://localhost:3000'::text NOT NULL,
    jwt_exp integer DEFAULT 3600 NOT NULL,
    jwt_aud text DEFAULT 'authenticated'::text NOT NULL,
    jwt_issuer text,
    jwt_default_role text DEFAULT 'authenticated'::text NOT NULL,
    mailer_autoconfirm boolean DEFAULT false NOT NULL,
    disable_signup boolean DEFAULT false NOT NULL,
    anonymous_users_enabled boolean DEFAULT false NOT NULL,
    refresh_token_reuse_interval integer DEFAULT 10 NOT NULL,
    refresh_token_replay_revokes text DEFAULT 'session'::text NOT NULL,
    sessions_timebox integer,
    sessions_inactivity_timeout integer,
    sessions_single_per_user boolean DEFAULT false NOT NULL,
    hook_custom_access_token text,
    hook_before_user_created text,
    hook_password_verification_attempt text,
    hook_send_email text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    mailer_otp_exp integer DEFAULT 3600 NOT NULL,
    mailer_otp_length integer DEFAULT 6 NOT NULL,
    mailer_otp_max_attempts integer DEFAULT 5 NOT NULL,
    mailer_secure_email_change boolean DEFAULT true NOT NULL,
    smtp_max_frequency integer DEFAULT 60 NOT NULL,
    rate_limit_email_per_address integer DEFAULT 30 NOT NULL,
    rate_limit_email_per_ip integer DEFAULT 100 NOT NULL,
    secure_password_change boolean DEFAULT false NOT NULL,
    mfa_challenge_expiry integer DEFAULT 300 NOT NULL,
    mfa_max_attempts integer DEFAULT 5 NOT NULL,
    mfa_max_enrolled_factors integer DEFAULT 10 NOT NULL,
    mfa_email text DEFAULT 'off'::text NOT NULL,
    mfa_email_strict boolean DEFAULT false NOT NULL,
    audit_retention_days integer DEFAULT 90 NOT NULL,
    signup_deferred boolean DEFAULT false NOT NULL,
    account_deletion text DEFAULT 'hard'::text NOT NULL,
    hook_before_user_deleted text,
    mailer_test_otp jsonb DEFAULT '{}'::jsonb NOT NULL,
    mailer_test_otp_valid_until timestamp with time zone,
    flow_state_expiry integer DEFAULT 300 NOT NULL,
    external_phone_enabled boolean DEFAULT false NOT NULL,
    sms_autoconfirm boolean DEFAULT false NOT NULL,
    sms_otp_length integer DEFAULT 6 NOT NULL,
    sms_otp_exp integer DEFAULT 60 NOT NULL,
    sms_max_frequency integer DEFAULT 60 NOT NULL,
    rate_limit_sms_sent integer DEFAULT 30 NOT NULL,
    sms_test_otp jsonb DEFAULT '{}'::jsonb NOT NULL,
    sms_test_otp_valid_until timestamp with time zone,
    hook_send_sms text,
    mfa_phone_enroll_enabled boolean DEFAULT false NOT NULL,
    mfa_phone_verify_enabled boolean DEFAULT false NOT NULL,
    passkey_max_per_user integer DEFAULT 10 NOT NULL,
    webauthn_challenge_expiry integer DEFAULT 300 NOT NULL,
    mfa_web_authn_enabled boolean DEFAULT false NOT NULL,
    rate_limit_passkey integer DEFAULT 30 NOT NULL,
    manual_linking_enabled boolean DEFAULT false NOT NULL,
    rate_limit_anonymous_users integer DEFAULT 30 NOT NULL,
    mfa_recovery_codes_enroll_enabled boolean DEFAULT true NOT NULL,
    mfa_recovery_codes_verify_enabled boolean DEFAULT true NOT NULL,
    mfa_recovery_codes_with_first_factor boolean DEFAULT true NOT NULL,
    rate_limit_web3 integer DEFAULT 30 NOT NULL,
    CONSTRAINT settings_account_deletion_check CHECK ((account_deletion = ANY (ARRAY['hard'::text, 'soft'::text]))),
    CONSTRAINT settings_audit_retention_days_check CHECK ((audit_retention_days >= 0)),
    CONSTRAINT settings_flow_state_expiry_check CHECK ((flow_state_expiry > 0)),
    CONSTRAINT settings_jwt_exp_check CHECK ((jwt_exp > 0)),
    CONSTRAINT settings_mailer_otp_exp_check CHECK ((mailer_otp_exp > 0)),
    CONSTRAINT settings_mailer_otp_length_check CHECK (((mailer_otp_length >= 6) AND (mailer_otp_length <= 10))),
    CONSTRAINT settings_mailer_otp_max_attempts_check CHECK ((mailer_otp_max_attempts > 0)),
    CONSTRAINT settings_mailer_test_otp_check CHECK ((jsonb_typeof(mailer_test_otp) = 'object'::text)),
    CONSTRAINT settings_mfa_challenge_expiry_check CHECK ((mfa_challenge_expiry > 0)),
    CONSTRAINT settings_mfa_email_check CHECK ((mfa_email = ANY (ARRAY['off'::text, 'optional'::text, 'required'::text]))),
    CONSTRAINT settings_mfa_max_attempts_check CHECK ((mfa_max_attempts > 0)),
    CONSTRAINT settings_mfa_max_enrolled_factors_check CHECK ((mfa_max_enrolled_factors > 0)),
    CONSTRAINT settings_passkey_max_per_user_check CHECK ((passkey_max_per_user > 0)),
    CONSTRAINT settings_rate_limit_anonymous_users_check CHECK ((rate_limit_anonymous_users > 0)),
    CONSTRAINT settings_rate_limit_email_per_address_check CHECK ((rate_limit_email_per_address >= 0)),
    CONSTRAINT settings_rate_limit_email_per_ip_check CHECK ((rate_limit_email_per_ip >= 0)),
    CONSTRAINT settings_rate_limit_passkey_check CHECK ((rate_limit_passkey > 0)),
    CONSTRAINT settings_rate_limit_sms_sent_check CHECK ((rate_limit_sms_sent >= 0)),
    CONSTRAINT settings_rate_limit_web3_check CHECK ((rate_limit_web3 > 0)),
    CONSTRAINT settings_refresh_token_replay_revokes_check CHECK ((refresh_token_replay_revokes = ANY (ARRAY['session'::text, 'user'::text]))),
    CONSTRAINT settings_refresh_token_reuse_interval_check CHECK ((refresh_token_reuse_interval >= 0)),
    CONSTRAINT settings_sessions_inactivity_timeout_check CHECK ((sessions_inactivity_timeout > 0)),
    CONSTRAINT settings_sessions_timebox_check CHECK ((sessions_timebox > 0)),
    CONSTRAINT settings_singleton_check CHECK (singleton),
    CONSTRAINT settings_sms_max_frequency_check CHECK ((sms_max_frequency >= 0)),
    CONSTRAINT settings_sms_otp_exp_check CHECK ((sms_otp_exp > 0)),
    CONSTRAINT settings_sms_otp_length_check CHECK (((sms_otp_length >= 6) AND (sms_otp_length <= 10))),
    CONSTRAINT settings_sms_test_otp_check CHECK ((jsonb_typeof(sms_test_otp) = 'object'::text)),
    CONSTRAINT settings_smtp_max_frequency_check CHECK ((smtp_max_frequency >= 0)),
    CONSTRAINT settings_webauthn_challenge_expiry_check CHECK ((webauthn_challenge_expiry > 0))
);

ALTER TABLE auth.settings OWNER TO authgres_owner;

--
-- Name: TABLE settings; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.settings IS 'The one row of behaviour settings the SQL functions read; the service writes it at start-up from its AUTHGRES_* environment (auth.configure).';

--
-- Name: COLUMN settings.refresh_token_reuse_interval; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.refresh_token_reuse_interval IS 'Seconds after its rotation during which a refresh token may still be presented (concurrent tabs).';

--
-- Name: COLUMN settings.refresh_token_replay_revokes; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.refresh_token_replay_revokes IS 'What a replayed refresh token ends: its own session, or every session of its user.';

--
-- Name: COLUMN settings.sessions_timebox; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.sessions_timebox IS 'Seconds after sign-in when a session can no longer refresh (NULL: never).';

--
-- Name: COLUMN settings.sessions_inactivity_timeout; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.sessions_inactivity_timeout IS 'Seconds without a refresh after which a session ends (NULL: never).';

--
-- Name: COLUMN settings.sessions_single_per_user; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.sessions_single_per_user IS 'A new sign-in ends the user''s older sessions at their next refresh.';

--
-- Name: COLUMN settings.hook_custom_access_token; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.hook_custom_access_token IS 'A function f(event jsonb) returns jsonb that may change access-token claims (see auth._call_hook).';

--
-- Name: COLUMN settings.hook_before_user_created; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.hook_before_user_created IS 'A function f(event jsonb) returns jsonb that may reject a new user with {"error": {"message": ...}}.';

--
-- Name: COLUMN settings.hook_password_verification_attempt; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.hook_password_verification_attempt IS 'A function f(event jsonb) returns jsonb told of every password check; it may refuse a correct one.';

--
-- Name: COLUMN settings.hook_send_email; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.hook_send_email IS 'A function f(event jsonb) returns jsonb that delivers emails itself, in place of the outbox.';

--
-- Name: COLUMN settings.smtp_max_frequency; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.smtp_max_frequency IS 'Minimum seconds between two emails of one kind to one address.';

--
-- Name: COLUMN settings.rate_limit_email_per_address; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.rate_limit_email_per_address IS 'Emails per hour to one address.';

--
-- Name: COLUMN settings.rate_limit_email_per_ip; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.rate_limit_email_per_ip IS 'Emails per hour requested from one client IP.';

--
-- Name: COLUMN settings.secure_password_change; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.secure_password_change IS 'A password change needs a reauthentication nonce when the session is older than 24 hours.';

--
-- Name: COLUMN settings.mfa_email; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.mfa_email IS 'Email as a second step after the password: off, optional (users who enrol an email factor), or required.';

--
-- Name: COLUMN settings.mfa_email_strict; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.mfa_email_strict IS 'The password grant answers twofa_required and no session until the emailed code is given.';

--
-- Name: COLUMN settings.audit_retention_days; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.audit_retention_days IS 'Audit entries older than this many days are pruned (0 keeps them).';

--
-- Name: COLUMN settings.external_phone_enabled; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.external_phone_enabled IS 'Phone numbers may sign up and sign in (codes by SMS or WhatsApp).';

--
-- Name: COLUMN settings.sms_otp_exp; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.sms_otp_exp IS 'Seconds a texted code lives.';

--
-- Name: COLUMN settings.sms_max_frequency; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.sms_max_frequency IS 'Minimum seconds between two texts of one kind to one number.';

--
-- Name: COLUMN settings.rate_limit_sms_sent; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.rate_limit_sms_sent IS 'Texts per hour the whole installation may send (GoTrue''s RATE_LIMIT_SMS_SENT).';

--
-- Name: COLUMN settings.sms_test_otp; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.sms_test_otp IS 'Development: number -> fixed code; those numbers get no text.';

--
-- Name: COLUMN settings.hook_send_sms; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.hook_send_sms IS 'A function f(event jsonb) returns jsonb that delivers texts itself, in place of the SMS outbox.';

--
-- Name: COLUMN settings.passkey_max_per_user; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.passkey_max_per_user IS 'How many passkeys one user may register.';

--
-- Name: COLUMN settings.webauthn_challenge_expiry; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.webauthn_challenge_expiry IS 'Seconds a passkey ceremony''s challenge lives.';

--
-- Name: COLUMN settings.mfa_web_authn_enabled; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.mfa_web_authn_enabled IS 'Whether WebAuthn may be enrolled and verified as an MFA factor.';

--
-- Name: COLUMN settings.rate_limit_passkey; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.rate_limit_passkey IS 'Passkey sign-in challenges one client IP may ask for per 5 minutes (they need no session and are stored).';

--
-- Name: COLUMN settings.manual_linking_enabled; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.manual_linking_enabled IS 'Signed-in users may link another provider''s identity and unlink one (GoTrue''s GOTRUE_SECURITY_MANUAL_LINKING_ENABLED).';

--
-- Name: COLUMN settings.rate_limit_anonymous_users; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.rate_limit_anonymous_users IS 'Anonymous sign-ins one client IP may make per hour (each makes a user).';

--
-- Name: COLUMN settings.mfa_recovery_codes_enroll_enabled; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.mfa_recovery_codes_enroll_enabled IS 'Whether users may get recovery codes.';

--
-- Name: COLUMN settings.mfa_recovery_codes_verify_enabled; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.mfa_recovery_codes_verify_enabled IS 'Whether a recovery code raises a session to aal2.';

--
-- Name: COLUMN settings.mfa_recovery_codes_with_first_factor; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.mfa_recovery_codes_with_first_factor IS 'Whether verifying the first TOTP factor also hands out a set of recovery codes (in recovery_codes).';

--
-- Name: COLUMN settings.rate_limit_web3; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.settings.rate_limit_web3 IS 'Wallet sign-ins one client IP may make per 5 minutes.';

--
-- Name: _fixed_code(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._fixed_code(p_address text) RETURNS text
    LANGUAGE sql STABLE
    RETURN (SELECT COALESCE(CASE WHEN (s.mailer_test_otp_valid_until > now()) THEN (s.mailer_test_otp ->> _fixed_code.p_address) ELSE NULL::text END, CASE WHEN (s.sms_test_otp_valid_until > now()) THEN (s.sms_test_otp ->> _fixed_code.p_address) ELSE NULL::text END) AS "coalesce" FROM auth.settings s);

ALTER FUNCTION auth._fixed_code(p_address text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _fixed_code(p_address text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._fixed_code(p_address text) IS 'The fixed development code of an address listed in mailer_test_otp (or a number in sms_test_otp) while its valid-until is ahead; else NULL.';

--
-- Name: _verification_type(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._verification_type(p_token_type text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE p_token_type WHEN 'confirmation'::text THEN 'signup'::text WHEN 'phone_confirmation'::text THEN 'sms'::text WHEN 'email_change_current'::text THEN 'email_change'::text WHEN 'email_change_new'::text THEN 'email_change'::text ELSE p_token_type END;

ALTER FUNCTION auth._verification_type(p_token_type text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _verification_type(p_token_type text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._verification_type(p_token_type text) IS 'The verify type a token of this kind is presented with.';

--
-- Name: _flow_authentication_method(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._flow_authentication_method(p_token_type text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE p_token_type WHEN 'confirmation'::text THEN 'email/signup'::text ELSE auth._verification_type(p_token_type) END;

ALTER FUNCTION auth._flow_authentication_method(p_token_type text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _flow_authentication_method(p_token_type text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._flow_authentication_method(p_token_type text) IS 'What a flow whose emailed token is of this kind signs in with, as GoTrue names it.';

--
-- Name: _get_user(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._get_user(p_access_token text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  return auth._user_json((auth._authorize(p_access_token, true)).usr);
end
$$;

ALTER FUNCTION auth._get_user(p_access_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _get_user(p_access_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._get_user(p_access_token text) IS 'The user an access token speaks for; GET /user calls it through auth.get_users().';

--
-- Name: _hmac(bytea, bytea, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._hmac(p_data bytea, p_key bytea, p_algorithm text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN extensions.hmac(p_data, p_key, p_algorithm);

ALTER FUNCTION auth._hmac(p_data bytea, p_key bytea, p_algorithm text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _hmac(p_data bytea, p_key bytea, p_algorithm text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._hmac(p_data bytea, p_key bytea, p_algorithm text) IS 'pgcrypto hmac(), wherever pgcrypto is installed.';

--
-- Name: _identity_json(auth.identities); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._identity_json(p_identity auth.identities) RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN (jsonb_build_object('identity_id', (p_identity).id, 'id', (p_identity).provider_id, 'user_id', (p_identity).user_id, 'identity_data', (p_identity).identity_data, 'provider', (p_identity).provider, 'created_at', (p_identity).created_at, 'updated_at', (p_identity).updated_at) || jsonb_strip_nulls(jsonb_build_object('last_sign_in_at', (p_identity).last_sign_in_at, 'email', (p_identity).email)));

ALTER FUNCTION auth._identity_json(p_identity auth.identities) OWNER TO authgres_owner;

--
-- Name: FUNCTION _identity_json(p_identity auth.identities); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._identity_json(p_identity auth.identities) IS 'An identity as GoTrue serialises it.';

--
-- Name: _identity_user(text, text, jsonb, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._identity_user(p_provider text, p_subject text, p_claims jsonb, p_link_to uuid, p_ip inet) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_identity auth.identities;
  v_user auth.users;
  v_email record;
begin
  select * into v_email from auth._provider_email(p_claims);
  -- Concurrent first sign-ins of one provider account: the unique (provider_id, provider) makes the
  -- second wait and then find the first's identity.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('authgres identity ' || p_provider || ' ' || p_subject));
  select * into v_identity from auth.identities i
   where i.provider = p_provider and i.provider_id = p_subject
     for update;
  if found then
    if p_link_to is not null and v_identity.user_id <> p_link_to then
      raise exception using errcode = 'AUI01', message = 'Identity is already linked to another user';
    end if;
    update auth.identities
       set identity_data = p_claims, last_sign_in_at = pg_catalog.now(), updated_at = pg_catalog.now()
     where id = v_identity.id;
    update auth.users u
       set raw_user_meta_data = u.raw_user_meta_data || p_claims, updated_at = pg_catalog.now()
     where u.id = v_identity.user_id and u.deleted_at is null
    returning * into v_user;
    if not found then
      raise exception using errcode = 'AUJ03', message = 'User from this identity does not exist';
    end if;
    return v_user;
  end if;

  if p_link_to is not null then  -- a manual link: the signed-in user gets the identity
    select * into strict v_user from auth.users where id = p_link_to for update;
    if v_user.is_anonymous then
      -- An anonymous user becomes permanent, with the provider's address when it is verified and free.
      update auth.users u
         set is_anonymous = false,
             email = case when v_email.verified and not exists (
                                select from auth.users o where o.email = v_email.email and not o.is_sso_user)
                          then v_email.email end,
             email_confirmed_at = case when v_email.verified and not exists (
                                         select from auth.users o where o.email = v_email.email and not o.is_sso_user)
                                       then pg_catalog.now() end,
             raw_app_meta_data = u.raw_app_meta_data || pg_catalog.jsonb_build_object('provider', p_provider),
             raw_user_meta_data = u.raw_user_meta_data || p_claims
       where u.id = v_user.id
      returning * into v_user;
    end if;
    return auth._link_identity(v_user, p_provider, p_subject, p_claims, p_ip);
  end if;

  if v_email.verified then
    select * into v_user from auth.users u
     where u.email = v_email.email and not u.is_sso_user and u.deleted_at is null
       for update;
    if found then
      if v_user.email_confirmed_at is null then
        -- Nobody proved this address before the provider did: whoever registered it unconfirmed (perhaps
        -- in anticipation of its owner, "pre-hijacking") loses the password and sessions set without proof.
        update auth.users
           set email_confirmed_at = pg_catalog.now(), encrypted_password = null, updated_at = pg_catalog.now()
         where id = v_user.id
        returning * into v_user;
        delete from auth.sessions where user_id = v_user.id;
        update auth.identities
           set identity_data = identity_data || '{"email_verified": true}', updated_at = pg_catalog.now()
         where user_id = v_user.id and provider = 'email';
      end if;
      return auth._link_identity(v_user, p_provider, p_subject, p_claims, p_ip);
    end if;
  end if;
  return auth._new_provider_user(p_provider, p_subject, p_claims, v_email.email, v_email.verified, p_ip);
end
$$;

ALTER FUNCTION auth._identity_user(p_provider text, p_subject text, p_claims jsonb, p_link_to uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _identity_user(p_provider text, p_subject text, p_claims jsonb, p_link_to uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._identity_user(p_provider text, p_subject text, p_claims jsonb, p_link_to uuid, p_ip inet) IS 'The user a provider identity signs in: the identity''s (claims refreshed), else p_link_to''s (a manual link; AUI01 when the identity is another user''s), else the confirmed account of the provider-verified address (an unconfirmed one is taken over: its password and sessions go), else a new user.';

--
-- Name: _issue_auth_code(uuid, uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._issue_auth_code(p_flow_state uuid, p_user_id uuid) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_code text := pg_catalog.gen_random_uuid()::text;  -- 122 random bits, GoTrue's shape
begin
  update auth.flow_state
     set user_id = p_user_id, auth_code_digest = auth._token_hash(v_code), auth_code_issued_at = pg_catalog.now()
   where id = p_flow_state and auth_code_digest is null;
  if not found then
    return null;
  end if;
  return v_code;
end
$$;

ALTER FUNCTION auth._issue_auth_code(p_flow_state uuid, p_user_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION _issue_auth_code(p_flow_state uuid, p_user_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._issue_auth_code(p_flow_state uuid, p_user_id uuid) IS 'Issues the flow''s single-use auth code for the user (once per flow; NULL when the flow is gone or has one); only its digest is kept.';

--
-- Name: mfa_challenges; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.mfa_challenges (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    factor_id uuid NOT NULL,
    session_id uuid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    verified_at timestamp with time zone,
    ip_address inet,
    attempts integer DEFAULT 0 NOT NULL,
    login_token_digest bytea,
    code_digest bytea,
    web_authn_challenge bytea
);

ALTER TABLE auth.mfa_challenges OWNER TO authgres_owner;

--
-- Name: TABLE mfa_challenges; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.mfa_challenges IS 'A request to prove a factor, for a session (or, in strict email 2-step, for a pending password login).';

--
-- Name: COLUMN mfa_challenges.login_token_digest; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.mfa_challenges.login_token_digest IS 'SHA-256 of the challenge_token that strict email 2-step hands out instead of a session.';

--
-- Name: COLUMN mfa_challenges.code_digest; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.mfa_challenges.code_digest IS 'For email factors: SHA-256 of the emailed link token.';

--
-- Name: COLUMN mfa_challenges.web_authn_challenge; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.mfa_challenges.web_authn_challenge IS 'The random challenge a WebAuthn factor''s authenticator must sign (NULL for the other factors).';

--
-- Name: _issue_mfa_email(auth.users, auth.mfa_factors, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._issue_mfa_email(p_user auth.users, p_factor auth.mfa_factors, p_session_id uuid, p_ip inet) RETURNS auth.mfa_challenges
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_challenge auth.mfa_challenges;
begin
  select * into v_settings from auth.settings;
  -- Only the hourly budget: the password was right, and a second sign-in within a minute is normal.
  perform auth._throttle('email-hour:' || p_user.email, v_settings.rate_limit_email_per_address, interval '1 hour');
  perform auth._queue_email(p_user, 'mfa_email', p_user.email, null);
  insert into auth.mfa_challenges (factor_id, session_id, expires_at, ip_address, code_digest)
  values (p_factor.id, p_session_id, pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry),
          p_ip, (select t.token_digest from auth.one_time_tokens t
                  where t.user_id = p_user.id and t.token_type = 'mfa_email'))
  returning * into v_challenge;
  update auth.mfa_factors set last_challenged_at = pg_catalog.now() where id = p_factor.id;
  return v_challenge;
end
$$;

ALTER FUNCTION auth._issue_mfa_email(p_user auth.users, p_factor auth.mfa_factors, p_session_id uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _issue_mfa_email(p_user auth.users, p_factor auth.mfa_factors, p_session_id uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._issue_mfa_email(p_user auth.users, p_factor auth.mfa_factors, p_session_id uuid, p_ip inet) IS 'Emails a second-step code and records the challenge it answers.';

--
-- Name: _issue_recovery_codes(auth.users, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._issue_recovery_codes(p_user auth.users, p_mode text, p_friendly_name text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  -- 32 symbols without look-alikes (no l, o, 0, 1): each random byte picks one without bias.
  v_alphabet constant text := 'abcdefghijkmnpqrstuvwxyz23456789';
  v_factor auth.mfa_factors;
  v_codes text[] := '{}';
  v_code text;
  v_bytes bytea;
  v_exists boolean;
  v_constraint text;
begin
  v_exists := exists (select from auth.mfa_factors where user_id = p_user.id and factor_type = 'recovery_code');
  if not v_exists then
    begin
      insert into auth.mfa_factors (user_id, friendly_name, factor_type, status)
      values (p_user.id, coalesce(nullif(pg_catalog.btrim(p_friendly_name), ''), 'Recovery codes'),
              'recovery_code', 'verified')
      returning * into v_factor;
      perform auth._user_event(p_user.id, 'factor_changed',
                               pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'enrolled'));
    exception when unique_violation then
      get stacked diagnostics v_constraint = constraint_name;
      if v_constraint <> 'mfa_factors_one_recovery_code_set_key' then
        raise exception using errcode = 'AUM04',
          message = pg_catalog.format('A factor with the friendly name "%s" for this user already exists', p_friendly_name);
      end if;
      v_exists := true;  -- made meanwhile, by another request
    end;
  end if;
  if v_exists and p_mode = 'generate' then
    raise exception using errcode = 'AUM18', message = 'Recovery codes already exist; regenerate them instead';
  end if;
  if v_exists then
    update auth.mfa_factors set updated_at = pg_catalog.now()
     where user_id = p_user.id and factor_type = 'recovery_code'
    returning * into v_factor;
  end if;
  delete from auth.mfa_recovery_codes where user_id = p_user.id;
  delete from auth.rate_limits where key = auth._recovery_code_lock_key(p_user.id);
  for n in 1 .. 10 loop
    v_bytes := auth._random_bytes(16);
    v_code := '';
    for i in 0 .. 15 loop
      v_code := v_code || pg_catalog.substr(v_alphabet, (pg_catalog.get_byte(v_bytes, i) & 31) + 1, 1);
    end loop;
    v_codes := v_codes || v_code;
    insert into auth.mfa_recovery_codes (user_id, code_digest) values (p_user.id, auth._token_hash(v_code));
  end loop;
  perform auth._audit(p_user, 'recovery_codes_generated', 'user', null,
                      pg_catalog.jsonb_build_object('factor_id', v_factor.id));
  return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'recovery_code', 'friendly_name', v_factor.friendly_name,
                                       'total', 10, 'codes', pg_catalog.to_jsonb(v_codes));
end
$$;

ALTER FUNCTION auth._issue_recovery_codes(p_user auth.users, p_mode text, p_friendly_name text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _issue_recovery_codes(p_user auth.users, p_mode text, p_friendly_name text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._issue_recovery_codes(p_user auth.users, p_mode text, p_friendly_name text) IS 'A new set of 10 recovery codes (16 symbols, 80 bits; canonical form), the only time they are seen: p_mode generate makes the user''s recovery_code factor (AUM18 when there is one); any other (regenerate, replace) also replaces the codes of one, its id and name kept. The old set dies and its lockout ends.';

--
-- Name: _issue_token(auth.users, text, text, text, uuid, uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._issue_token(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_pending_signup uuid DEFAULT NULL::uuid, p_flow_state uuid DEFAULT NULL::uuid, OUT code text, OUT link_token text) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_length integer;
  v_lifetime interval;
begin
  select * into v_settings from auth.settings;
  -- Texted codes have their own length and lifetime; everything else about them is this one mechanism.
  v_length := case when auth._texted(p_token_type) then v_settings.sms_otp_length else v_settings.mailer_otp_length end;
  v_lifetime := pg_catalog.make_interval(secs => case when auth._texted(p_token_type) then v_settings.sms_otp_exp
                                                      else v_settings.mailer_otp_exp end);
  code := coalesce(auth._fixed_code(p_address), pg_catalog.lpad(
    ((('x' || pg_catalog.encode(auth._random_bytes(7), 'hex'))::bit(56)::bigint
      % (10::bigint ^ v_length)::bigint))::text,
    v_length, '0'));
  link_token := auth._link_token(p_address, code);
  if p_flow_state is not null then
    -- A PKCE flow's token lives for its own flow: a newer one of the same purpose replaces nothing.
    insert into auth.one_time_tokens
      (user_id, pending_signup_id, flow_state_id, token_type, token_digest, relates_to, redirect_to, expires_at)
    values (p_user.id, p_pending_signup, p_flow_state, p_token_type, auth._token_hash(link_token), p_address,
            p_redirect_to, pg_catalog.now() + v_lifetime);
    return;
  end if;
  if p_pending_signup is not null then
    -- A pending sign-up has no user row to key on: its live token is replaced by hand.
    delete from auth.one_time_tokens
     where pending_signup_id = p_pending_signup and token_type = p_token_type and flow_state_id is null;
  end if;
  insert into auth.one_time_tokens as t
    (user_id, pending_signup_id, token_type, token_digest, relates_to, redirect_to, expires_at)
  values (p_user.id, p_pending_signup, p_token_type, auth._token_hash(link_token), p_address, p_redirect_to,
          pg_catalog.now() + v_lifetime)
  on conflict (user_id, token_type) where flow_state_id is null do update
     set token_digest = excluded.token_digest, relates_to = excluded.relates_to,
         redirect_to = excluded.redirect_to, attempts = 0, created_at = excluded.created_at,
         expires_at = excluded.expires_at;
end
$$;

ALTER FUNCTION auth._issue_token(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_pending_signup uuid, p_flow_state uuid, OUT code text, OUT link_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _issue_token(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_pending_signup uuid, p_flow_state uuid, OUT code text, OUT link_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._issue_token(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_pending_signup uuid, p_flow_state uuid, OUT code text, OUT link_token text) IS 'Issues a fresh token of p_token_type for the user, or for the pending sign-up p_pending_signup (replacing any live one), or bound to the PKCE flow p_flow_state (replacing none); the code and link token are returned, never stored.';

--
-- Name: _link_identity(auth.users, text, text, jsonb, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._link_identity(p_user auth.users, p_provider text, p_subject text, p_claims jsonb, p_ip inet) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
begin
  insert into auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at)
  values (p_subject, p_user.id, p_claims, p_provider, pg_catalog.now());
  v_user := auth._add_provider(p_user, p_provider);
  perform auth._audit(v_user, 'identity_linked', 'user', p_ip, pg_catalog.jsonb_build_object('provider', p_provider));
  return v_user;
end
$$;

ALTER FUNCTION auth._link_identity(p_user auth.users, p_provider text, p_subject text, p_claims jsonb, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _link_identity(p_user auth.users, p_provider text, p_subject text, p_claims jsonb, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._link_identity(p_user auth.users, p_provider text, p_subject text, p_claims jsonb, p_ip inet) IS 'Adds a provider identity to a user.';

--
-- Name: _link_token(text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._link_token(p_address text, p_code text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN encode(sha224(convert_to((p_address || p_code), 'UTF8'::name)), 'hex'::text);

ALTER FUNCTION auth._link_token(p_address text, p_code text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _link_token(p_address text, p_code text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._link_token(p_address text, p_code text) IS 'GoTrue''s token_hash: hex SHA-224 of address || code.';

--
-- Name: flow_state; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.flow_state (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid,
    auth_code_digest bytea,
    code_challenge text,
    code_challenge_method text,
    authentication_method text NOT NULL,
    provider_type text DEFAULT 'email'::text NOT NULL,
    provider_access_token bytea,
    provider_refresh_token bytea,
    referrer text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    auth_code_issued_at timestamp with time zone,
    linking_target_id uuid,
    browser_binding_digest bytea,
    pending_link jsonb,
    CONSTRAINT flow_state_authentication_method_check CHECK ((authentication_method = ANY (ARRAY['email/signup'::text, 'magiclink'::text, 'recovery'::text, 'email_change'::text, 'invite'::text, 'oauth'::text, 'sso/saml'::text]))),
    CONSTRAINT flow_state_challenge_only_oauth_optional CHECK (((code_challenge IS NOT NULL) OR (authentication_method = 'oauth'::text))),
    CONSTRAINT flow_state_challenge_pair CHECK (((code_challenge IS NULL) = (code_challenge_method IS NULL))),
    CONSTRAINT flow_state_check CHECK (((auth_code_digest IS NULL) = (auth_code_issued_at IS NULL))),
    CONSTRAINT flow_state_check1 CHECK (((auth_code_digest IS NULL) OR (user_id IS NOT NULL))),
    CONSTRAINT flow_state_code_challenge_check CHECK ((code_challenge ~ '^[A-Za-z0-9._~-]{43,128}$'::text)),
    CONSTRAINT flow_state_code_challenge_method_check CHECK ((code_challenge_method = ANY (ARRAY['s256'::text, 'plain'::text])))
);

ALTER TABLE auth.flow_state OWNER TO authgres_owner;

--
-- Name: TABLE flow_state; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.flow_state IS 'PKCE flows: a code challenge waiting for its emailed link (or, later, a provider''s callback), then the single-use auth code POST /token?grant_type=pkce exchanges, with the verifier, for a session.';

--
-- Name: COLUMN flow_state.user_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.user_id IS 'The user, once known (a deferred sign-up has none before its link).';

--
-- Name: COLUMN flow_state.auth_code_digest; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.auth_code_digest IS 'SHA-256 of the auth code, set when the code is issued (the link is followed); the code itself is never stored.';

--
-- Name: COLUMN flow_state.code_challenge; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.code_challenge IS 'The client''s code challenge (RFC 7636): S256 or the plain verifier; NULL only for a provider sign-in in the implicit flow, whose row lives only as the single-use state.';

--
-- Name: COLUMN flow_state.authentication_method; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.authentication_method IS 'What the flow signs in with, as GoTrue names it.';

--
-- Name: COLUMN flow_state.provider_type; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.provider_type IS 'email for the email flows; the provider''s name (google, github ...) for OAuth.';

--
-- Name: COLUMN flow_state.provider_access_token; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.provider_access_token IS 'An OAuth provider''s access token, sealed (encrypted), never in the clear; unused by the email flows.';

--
-- Name: COLUMN flow_state.provider_refresh_token; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.provider_refresh_token IS 'An OAuth provider''s refresh token, sealed (encrypted), never in the clear; unused by the email flows.';

--
-- Name: COLUMN flow_state.referrer; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.referrer IS 'Where the flow returns the browser to (redirect_to).';

--
-- Name: COLUMN flow_state.auth_code_issued_at; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.auth_code_issued_at IS 'When the auth code was issued: its lifetime counts from here.';

--
-- Name: COLUMN flow_state.linking_target_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.linking_target_id IS 'A provider flow started by GET /user/identities/authorize: the signed-in user its identity is linked to.';

--
-- Name: COLUMN flow_state.browser_binding_digest; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.browser_binding_digest IS 'A provider flow started by GET /authorize: SHA-256 of the value in the starting browser''s cookie, which the callback must present. NULL for a link started by GET /user/identities/authorize (a fetch sets no cookie) and for the email flows.';

--
-- Name: COLUMN flow_state.pending_link; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.flow_state.pending_link IS 'A PKCE link''s provider identity ({provider, subject, claims}) from its callback, added to the user at the code exchange.';

--
-- Name: _live_provider_flow(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._live_provider_flow(p_state text) RETURNS auth.flow_state
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
declare
  v_flow auth.flow_state;
begin
  if p_state ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select * into v_flow from auth.flow_state f
     where f.id = p_state::uuid and f.authentication_method = 'oauth' and f.auth_code_digest is null
       and f.created_at + auth._provider_state_lifetime() > pg_catalog.now()
       for update;
  end if;
  if v_flow.id is null then
    raise exception using errcode = 'AUI05', message = 'OAuth state parameter is invalid, used or expired';
  end if;
  return v_flow;
end
$_$;

ALTER FUNCTION auth._live_provider_flow(p_state text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _live_provider_flow(p_state text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._live_provider_flow(p_state text) IS 'The provider flow of a state that is still unused and unexpired, locked; AUI05 otherwise.';

--
-- Name: _lock_for_second_factor(auth.users, auth.sessions); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._lock_for_second_factor(p_user auth.users, p_session auth.sessions) RETURNS auth.sessions
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_session auth.sessions;
begin
  -- The user first: a verification ends the user's other aal1 sessions, so two of them at once (two
  -- devices) would each hold its own session and wait for the other's. Then the session, which
  -- refreshes read the aal of.
  perform from auth.users where id = p_user.id for no key update;
  select * into v_session from auth.sessions where id = p_session.id for no key update;
  if not found then  -- ended meanwhile, by the verification that went first
    raise exception using errcode = 'AUJ04', message = 'Session from session_id claim in JWT does not exist';
  end if;
  return v_session;
end
$$;

ALTER FUNCTION auth._lock_for_second_factor(p_user auth.users, p_session auth.sessions) OWNER TO authgres_owner;

--
-- Name: FUNCTION _lock_for_second_factor(p_user auth.users, p_session auth.sessions); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._lock_for_second_factor(p_user auth.users, p_session auth.sessions) IS 'Locks the user, then the session a second factor is verified in (AUJ04 when it ended meanwhile).';

--
-- Name: _strip_nulls(jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._strip_nulls(p_object jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (SELECT COALESCE(jsonb_object_agg(e.key, e.value), '{}'::jsonb) AS "coalesce" FROM jsonb_each(_strip_nulls.p_object) e(key, value) WHERE (jsonb_typeof(e.value) <> 'null'::text));

ALTER FUNCTION auth._strip_nulls(p_object jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _strip_nulls(p_object jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._strip_nulls(p_object jsonb) IS 'Drops top-level null members only: jsonb_strip_nulls() would also reach into the values.';

--
-- Name: _merge_metadata(jsonb, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._merge_metadata(p_current jsonb, p_changes jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN (p_changes IS NULL) THEN p_current ELSE ((p_current - ARRAY(SELECT e.key FROM jsonb_each(_merge_metadata.p_changes) e(key, value) WHERE (jsonb_typeof(e.value) = 'null'::text))) || auth._strip_nulls(p_changes)) END;

ALTER FUNCTION auth._merge_metadata(p_current jsonb, p_changes jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _merge_metadata(p_current jsonb, p_changes jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._merge_metadata(p_current jsonb, p_changes jsonb) IS 'GoTrue''s metadata merge: null removes a key, other keys are set.';

--
-- Name: _mfa_user(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._mfa_user(p_access_token text, OUT usr auth.users, OUT sess auth.sessions) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_auth record;
begin
  select * into v_auth from auth._authorize(p_access_token, true);
  usr := v_auth.usr;
  sess := v_auth.sess;
  if usr.is_anonymous then
    raise exception using errcode = 'AUM09', message = 'Anonymous user not allowed to perform these actions';
  end if;
  if sess.id is null then
    raise exception using errcode = 'AUJ04', message = 'Session from session_id claim in JWT does not exist';
  end if;
end
$$;

ALTER FUNCTION auth._mfa_user(p_access_token text, OUT usr auth.users, OUT sess auth.sessions) OWNER TO authgres_owner;

--
-- Name: FUNCTION _mfa_user(p_access_token text, OUT usr auth.users, OUT sess auth.sessions); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._mfa_user(p_access_token text, OUT usr auth.users, OUT sess auth.sessions) IS 'The signed-in, non-anonymous user and session behind an MFA request.';

--
-- Name: _needs_email_step(auth.users); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._needs_email_step(p_user auth.users) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_mode text := (select s.mfa_email from auth.settings s);
begin
  return p_user.email is not null and p_user.email_confirmed_at is not null and (
    v_mode = 'required'
    or (v_mode = 'optional' and exists (
          select from auth.mfa_factors where user_id = p_user.id and factor_type = 'email' and status = 'verified')));
end
$$;

ALTER FUNCTION auth._needs_email_step(p_user auth.users) OWNER TO authgres_owner;

--
-- Name: FUNCTION _needs_email_step(p_user auth.users); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._needs_email_step(p_user auth.users) IS 'Whether a password sign-in of this user continues with an emailed code.';

--
-- Name: _new_email_user(text, text, jsonb, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._new_email_user(p_email text, p_password_hash text, p_data jsonb, p_ip inet) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_id uuid := pg_catalog.gen_random_uuid();
  v_identity_data jsonb;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if v_settings.hook_before_user_created is not null then
    perform auth._call_hook(v_settings.hook_before_user_created, pg_catalog.jsonb_build_object(
      'user', pg_catalog.jsonb_build_object('email', p_email, 'is_anonymous', false,
                                            'user_metadata', coalesce(p_data, '{}')),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip))));
  end if;
  v_identity_data := pg_catalog.jsonb_build_object(
    'sub', v_id, 'email', p_email, 'email_verified', false, 'phone_verified', false);
  insert into auth.users (id, aud, role, email, encrypted_password, raw_app_meta_data, raw_user_meta_data)
  values (v_id, v_settings.jwt_aud, v_settings.jwt_default_role, p_email, p_password_hash,
          '{"provider": "email", "providers": ["email"]}', coalesce(p_data, '{}') || v_identity_data)
  on conflict (email) where is_sso_user = false do nothing
  returning * into v_user;
  if not found then
    return null;
  end if;
  insert into auth.identities (provider_id, user_id, identity_data, provider)
  values (v_id::text, v_id, v_identity_data, 'email');
  perform auth._audit(v_user, 'user_signedup', 'team', p_ip, '{"provider": "email"}');
  return v_user;
end
$$;

ALTER FUNCTION auth._new_email_user(p_email text, p_password_hash text, p_data jsonb, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _new_email_user(p_email text, p_password_hash text, p_data jsonb, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._new_email_user(p_email text, p_password_hash text, p_data jsonb, p_ip inet) IS 'Inserts an unconfirmed email user with its identity; NULL when the address is taken (concurrently too).';

--
-- Name: _pkce_method(text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._pkce_method(p_code_challenge text, p_code_challenge_method text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
declare
  v_method text := pg_catalog.lower(p_code_challenge_method);
begin
  if coalesce(p_code_challenge, '') = '' and coalesce(p_code_challenge_method, '') = '' then
    return null;  -- no PKCE: the implicit flow
  end if;
  if coalesce(p_code_challenge, '') = '' or coalesce(p_code_challenge_method, '') = '' then
    raise exception using errcode = 'AUV01', message = 'PKCE flow requires code_challenge_method and code_challenge';
  end if;
  if v_method not in ('s256', 'plain') then
    raise exception using errcode = 'AUV01', message = 'code challenge method not supported';
  end if;
  if p_code_challenge !~ '^[A-Za-z0-9._~-]{43,128}$' then
    raise exception using errcode = 'AUV01',
      message = 'code challenge must be 43 to 128 characters of A-Z, a-z, 0-9, hyphen, period, underscore and tilde';
  end if;
  return v_method;
end
$_$;

ALTER FUNCTION auth._pkce_method(p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _pkce_method(p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._pkce_method(p_code_challenge text, p_code_challenge_method text) IS 'The code challenge method, lowercased (s256 or plain), or NULL without PKCE; AUV01 when only one of the pair is given or either is malformed.';

--
-- Name: _new_flow_state(uuid, text, text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._new_flow_state(p_user_id uuid, p_token_type text, p_code_challenge text, p_code_challenge_method text, p_referrer text) RETURNS uuid
    LANGUAGE sql
    SET search_path TO ''
    BEGIN ATOMIC
 INSERT INTO auth.flow_state (user_id, code_challenge, code_challenge_method, authentication_method, referrer)
   VALUES (_new_flow_state.p_user_id, _new_flow_state.p_code_challenge, auth._pkce_method(_new_flow_state.p_code_challenge, _new_flow_state.p_code_challenge_method), auth._flow_authentication_method(_new_flow_state.p_token_type), _new_flow_state.p_referrer)
   RETURNING flow_state.id;
END;

ALTER FUNCTION auth._new_flow_state(p_user_id uuid, p_token_type text, p_code_challenge text, p_code_challenge_method text, p_referrer text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _new_flow_state(p_user_id uuid, p_token_type text, p_code_challenge text, p_code_challenge_method text, p_referrer text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._new_flow_state(p_user_id uuid, p_token_type text, p_code_challenge text, p_code_challenge_method text, p_referrer text) IS 'Starts the PKCE flow of one emailed token (user_id NULL for a pending sign-up); returns its id.';

--
-- Name: _new_phone_user(text, text, jsonb, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._new_phone_user(p_phone text, p_password_hash text, p_data jsonb, p_ip inet) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_id uuid := pg_catalog.gen_random_uuid();
  v_identity_data jsonb;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if v_settings.hook_before_user_created is not null then
    perform auth._call_hook(v_settings.hook_before_user_created, pg_catalog.jsonb_build_object(
      'user', pg_catalog.jsonb_build_object('email', '', 'phone', p_phone, 'is_anonymous', false,
                                            'user_metadata', coalesce(p_data, '{}')),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip))));
  end if;
  v_identity_data := pg_catalog.jsonb_build_object(
    'sub', v_id, 'phone', p_phone, 'email_verified', false, 'phone_verified', false);
  insert into auth.users (id, aud, role, phone, encrypted_password, raw_app_meta_data, raw_user_meta_data)
  values (v_id, v_settings.jwt_aud, v_settings.jwt_default_role, p_phone, p_password_hash,
          '{"provider": "phone", "providers": ["phone"]}', coalesce(p_data, '{}') || v_identity_data)
  on conflict (phone) do nothing
  returning * into v_user;
  if not found then
    return null;
  end if;
  insert into auth.identities (provider_id, user_id, identity_data, provider)
  values (v_id::text, v_id, v_identity_data, 'phone');
  perform auth._audit(v_user, 'user_signedup', 'team', p_ip, '{"provider": "phone"}');
  return v_user;
end
$$;

ALTER FUNCTION auth._new_phone_user(p_phone text, p_password_hash text, p_data jsonb, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _new_phone_user(p_phone text, p_password_hash text, p_data jsonb, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._new_phone_user(p_phone text, p_password_hash text, p_data jsonb, p_ip inet) IS 'Inserts an unconfirmed phone user with its identity; NULL when the number is taken (concurrently too).';

--
-- Name: _new_provider_user(text, text, jsonb, text, boolean, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._new_provider_user(p_provider text, p_subject text, p_claims jsonb, p_email text, p_verified boolean, p_ip inet) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_email text := p_email;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if v_settings.disable_signup then
    raise exception using errcode = 'AUS02', message = 'Signups not allowed for this instance';
  end if;
  if v_email is not null and exists (select from auth.users u where u.email = v_email and not u.is_sso_user) then
    v_email := null;  -- someone else's address (the provider did not verify it): the new user has none
  end if;
  if v_settings.hook_before_user_created is not null then
    perform auth._call_hook(v_settings.hook_before_user_created, pg_catalog.jsonb_build_object(
      'user', pg_catalog.jsonb_build_object('email', coalesce(v_email, ''), 'is_anonymous', false,
                                            'user_metadata', p_claims,
                                            'app_metadata', pg_catalog.jsonb_build_object('provider', p_provider)),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip))));
  end if;
  insert into auth.users (aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data)
  values (v_settings.jwt_aud, v_settings.jwt_default_role, v_email,
          case when p_verified and v_email is not null then pg_catalog.now() end,
          pg_catalog.jsonb_build_object('provider', p_provider, 'providers', pg_catalog.jsonb_build_array(p_provider)),
          p_claims)
  returning * into v_user;
  insert into auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at)
  values (p_subject, v_user.id, p_claims, p_provider, pg_catalog.now());
  perform auth._audit(v_user, 'user_signedup', 'team', p_ip, pg_catalog.jsonb_build_object('provider', p_provider));
  return v_user;
end
$$;

ALTER FUNCTION auth._new_provider_user(p_provider text, p_subject text, p_claims jsonb, p_email text, p_verified boolean, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _new_provider_user(p_provider text, p_subject text, p_claims jsonb, p_email text, p_verified boolean, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._new_provider_user(p_provider text, p_subject text, p_claims jsonb, p_email text, p_verified boolean, p_ip inet) IS 'A new user signed up through a provider, with its identity: the provider''s address (confirmed when the provider verified it) unless another account has it. AUS02 when sign-ups are disabled.';

--
-- Name: url_encode(bytea); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.url_encode(data bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN rtrim(replace(replace(replace(encode(data, 'base64'::text), '
'::text, ''::text), '+'::text, '-'::text), '/'::text, '_'::text), '='::text);

ALTER FUNCTION auth.url_encode(data bytea) OWNER TO authgres_owner;

--
-- Name: FUNCTION url_encode(data bytea); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.url_encode(data bytea) IS 'base64url without padding (RFC 7515 section 2).';

--
-- Name: _next_refresh_token(text, bytea); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._next_refresh_token(p_token text, p_chain_key bytea) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN auth.url_encode(auth._hmac(convert_to(p_token, 'UTF8'::name), p_chain_key, 'sha256'::text));

ALTER FUNCTION auth._next_refresh_token(p_token text, p_chain_key bytea) OWNER TO authgres_owner;

--
-- Name: FUNCTION _next_refresh_token(p_token text, p_chain_key bytea); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._next_refresh_token(p_token text, p_chain_key bytea) IS 'The token that replaces p_token: derivable only by whoever holds both p_token and the session key.';

--
-- Name: _normalize_email(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._normalize_email(p_email text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
declare
  v_email text := pg_catalog.lower(pg_catalog.btrim(p_email));
begin
  if v_email is null or v_email = '' then
    raise exception using errcode = 'AUV01', message = 'An email address is required';
  end if;
  if pg_catalog.length(v_email) > 255 then
    raise exception using errcode = 'AUV01', message = 'An email address is too long';
  end if;
  if v_email !~ '^[^@[:space:]]+@[^@[:space:].]+(\.[^@[:space:].]+)+$' then
    raise exception using errcode = 'AUV01', message = 'Unable to validate email address: invalid format';
  end if;
  return v_email;
end
$_$;

ALTER FUNCTION auth._normalize_email(p_email text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _normalize_email(p_email text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._normalize_email(p_email text) IS 'Lower-cased, trimmed email; raises AUV01 when it is not one.';

--
-- Name: _normalize_phone(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._normalize_phone(p_phone text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
declare
  v_phone text := pg_catalog.regexp_replace(coalesce(p_phone, ''), '[+[:space:]-]', '', 'g');
begin
  if v_phone !~ '^[1-9][0-9]{1,14}$' then
    raise exception using errcode = 'AUV01', message = 'Invalid phone number format (E.164 required)';
  end if;
  return v_phone;
end
$_$;

ALTER FUNCTION auth._normalize_phone(p_phone text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _normalize_phone(p_phone text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._normalize_phone(p_phone text) IS 'E.164 digits without +: +, spaces and dashes removed; AUV01 unless 2-15 digits not starting with 0.';

--
-- Name: webauthn_credentials; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.webauthn_credentials (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    factor_id uuid,
    credential_id bytea NOT NULL,
    public_key bytea NOT NULL,
    attestation_type text DEFAULT ''::text NOT NULL,
    aaguid uuid,
    sign_count bigint DEFAULT 0 NOT NULL,
    transports jsonb DEFAULT '[]'::jsonb NOT NULL,
    backup_eligible boolean DEFAULT false NOT NULL,
    backed_up boolean DEFAULT false NOT NULL,
    friendly_name text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    last_used_at timestamp with time zone,
    CONSTRAINT webauthn_credentials_credential_id_check CHECK (((length(credential_id) >= 16) AND (length(credential_id) <= 1023))),
    CONSTRAINT webauthn_credentials_friendly_name_check CHECK ((length(friendly_name) <= 120)),
    CONSTRAINT webauthn_credentials_sign_count_check CHECK (((sign_count >= 0) AND (sign_count <= '4294967295'::bigint))),
    CONSTRAINT webauthn_credentials_transports_check CHECK ((jsonb_typeof(transports) = 'array'::text))
);

ALTER TABLE auth.webauthn_credentials OWNER TO authgres_owner;

--
-- Name: TABLE webauthn_credentials; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.webauthn_credentials IS 'WebAuthn public-key credentials: passkeys (factor_id NULL), which sign in alone, and the credentials of WebAuthn MFA factors. Only public keys: nothing here signs anything in.';

--
-- Name: COLUMN webauthn_credentials.factor_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.factor_id IS 'The WebAuthn MFA factor this credential proves; NULL for a passkey.';

--
-- Name: COLUMN webauthn_credentials.credential_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.credential_id IS 'The authenticator''s credential id (rawId).';

--
-- Name: COLUMN webauthn_credentials.public_key; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.public_key IS 'The credential''s COSE public key, as registered.';

--
-- Name: COLUMN webauthn_credentials.attestation_type; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.attestation_type IS 'The attestation format registered with (none).';

--
-- Name: COLUMN webauthn_credentials.aaguid; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.aaguid IS 'The authenticator model''s AAGUID (zeros when not told).';

--
-- Name: COLUMN webauthn_credentials.sign_count; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.sign_count IS 'The authenticator''s signature counter at its last use: a later assertion must count higher (or both stay 0), else the authenticator may have been cloned and the sign-in is refused.';

--
-- Name: COLUMN webauthn_credentials.transports; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.transports IS 'How the browser reaches the authenticator (usb, internal, ...).';

--
-- Name: COLUMN webauthn_credentials.backup_eligible; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.backup_eligible IS 'Whether the credential may be synced (a multi-device passkey).';

--
-- Name: COLUMN webauthn_credentials.backed_up; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.backed_up IS 'Whether the credential was synced, at its last use.';

--
-- Name: COLUMN webauthn_credentials.friendly_name; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.friendly_name IS 'The user''s name for the passkey (at most 120 characters).';

--
-- Name: COLUMN webauthn_credentials.last_used_at; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.webauthn_credentials.last_used_at IS 'When it last signed in (or proved its factor).';

--
-- Name: _passkey_json(auth.webauthn_credentials); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._passkey_json(p_credential auth.webauthn_credentials) RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN jsonb_strip_nulls(jsonb_build_object('id', (p_credential).id, 'friendly_name', NULLIF((p_credential).friendly_name, ''::text), 'created_at', (p_credential).created_at, 'last_used_at', (p_credential).last_used_at));

ALTER FUNCTION auth._passkey_json(p_credential auth.webauthn_credentials) OWNER TO authgres_owner;

--
-- Name: FUNCTION _passkey_json(p_credential auth.webauthn_credentials); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._passkey_json(p_credential auth.webauthn_credentials) IS 'A passkey as GoTrue lists it: id, friendly_name, created_at, last_used_at (the last two omitted when unset).';

--
-- Name: _passkey_of(uuid, uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._passkey_of(p_user_id uuid, p_passkey_id uuid) RETURNS auth.webauthn_credentials
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_credential auth.webauthn_credentials;
begin
  select * into v_credential from auth.webauthn_credentials
   where id = p_passkey_id and user_id = p_user_id and factor_id is null for no key update;
  if not found then
    raise exception using errcode = 'AUW06', message = 'Passkey not found';
  end if;
  return v_credential;
end
$$;

ALTER FUNCTION auth._passkey_of(p_user_id uuid, p_passkey_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION _passkey_of(p_user_id uuid, p_passkey_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._passkey_of(p_user_id uuid, p_passkey_id uuid) IS 'The user''s passkey, locked, or AUW06.';

--
-- Name: _password_attempt_hook(auth.users, boolean); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._password_attempt_hook(p_user auth.users, p_valid boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_hook text := (select s.hook_password_verification_attempt from auth.settings s);
  v_result jsonb;
begin
  if v_hook is null then
    return '{}';
  end if;
  v_result := auth._call_hook(v_hook, pg_catalog.jsonb_build_object('user_id', p_user.id, 'valid', p_valid));
  if (v_result ->> 'should_logout_user')::boolean then
    delete from auth.sessions where user_id = p_user.id;
  end if;
  return v_result;
end
$$;

ALTER FUNCTION auth._password_attempt_hook(p_user auth.users, p_valid boolean) OWNER TO authgres_owner;

--
-- Name: FUNCTION _password_attempt_hook(p_user auth.users, p_valid boolean); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._password_attempt_hook(p_user auth.users, p_valid boolean) IS 'Tells the password_verification_attempt hook of a password check; ends the user''s sessions when it asks. Its answer (decision continue or reject, message) is returned.';

--
-- Name: _payload_mac(text, bytea); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._payload_mac(p_payload_segment text, p_mac_key bytea) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN auth.url_encode(auth._hmac(convert_to(p_payload_segment, 'UTF8'::name), p_mac_key, 'sha256'::text));

ALTER FUNCTION auth._payload_mac(p_payload_segment text, p_mac_key bytea) OWNER TO authgres_owner;

--
-- Name: FUNCTION _payload_mac(p_payload_segment text, p_mac_key bytea); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._payload_mac(p_payload_segment text, p_mac_key bytea) IS 'The "mac" header member of an ES256 token minted with this mac_key.';

--
-- Name: _pending_signup_answer(text, text, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._pending_signup_answer(p_email text, p_phone text, p_data jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  -- Nothing in it depends on whether the address or number is new, pending or registered: the id is
  -- derived from the address (it is not the id the user will have), the times are this transaction's.
  return (select pg_catalog.jsonb_build_object(
    'id', pg_catalog.encode(pg_catalog.substr(pg_catalog.sha256(pg_catalog.convert_to(
            'authgres pending sign-up ' || coalesce(p_email, p_phone), 'UTF8')), 1, 16), 'hex')::uuid,
    'aud', s.jwt_aud, 'role', '', 'email', coalesce(p_email, ''), 'phone', coalesce(p_phone, ''),
    'confirmation_sent_at', pg_catalog.now(),
    'app_metadata', case when p_email is null then '{"provider": "phone", "providers": ["phone"]}'::jsonb
                         else '{"provider": "email", "providers": ["email"]}'::jsonb end,
    'user_metadata', coalesce(p_data, '{}'), 'identities', '[]'::jsonb,
    'created_at', pg_catalog.now(), 'updated_at', pg_catalog.now(), 'is_anonymous', false)
    from auth.settings s);
end
$$;

ALTER FUNCTION auth._pending_signup_answer(p_email text, p_phone text, p_data jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _pending_signup_answer(p_email text, p_phone text, p_data jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._pending_signup_answer(p_email text, p_phone text, p_data jsonb) IS 'What a deferred sign-up answers for an address (or a number): a look-alike user without identities, the same whether it is new, pending or registered.';

--
-- Name: _pkce_verifier_matches(auth.flow_state, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._pkce_verifier_matches(p_flow auth.flow_state, p_code_verifier text) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    RETURN CASE (p_flow).code_challenge_method WHEN 's256'::text THEN auth._equal_secure(auth.url_encode(sha256(convert_to(p_code_verifier, 'UTF8'::name))), (p_flow).code_challenge) WHEN 'plain'::text THEN auth._equal_secure(p_code_verifier, (p_flow).code_challenge) ELSE false END;

ALTER FUNCTION auth._pkce_verifier_matches(p_flow auth.flow_state, p_code_verifier text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _pkce_verifier_matches(p_flow auth.flow_state, p_code_verifier text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._pkce_verifier_matches(p_flow auth.flow_state, p_code_verifier text) IS 'Whether the verifier answers the flow''s challenge (S256: base64url-nopad(SHA-256(verifier))), compared without revealing either through timing.';

--
-- Name: _provider_email(jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._provider_email(p_claims jsonb, OUT email text, OUT verified boolean) RETURNS record
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
begin
  verified := coalesce(p_claims ->> 'email_verified', '') = 'true';  -- Apple sends "true" as text
  begin
    email := auth._normalize_email(p_claims ->> 'email');
  exception when sqlstate 'AUV01' then  -- none, or not an address: the identity has no email
    email := null;
    verified := false;
  end;
end
$$;

ALTER FUNCTION auth._provider_email(p_claims jsonb, OUT email text, OUT verified boolean) OWNER TO authgres_owner;

--
-- Name: FUNCTION _provider_email(p_claims jsonb, OUT email text, OUT verified boolean); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._provider_email(p_claims jsonb, OUT email text, OUT verified boolean) IS 'The address a provider''s claims give (lower-cased; NULL when absent or malformed) and whether the provider says it verified it.';

--
-- Name: _provider_state_lifetime(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._provider_state_lifetime() RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN '00:10:00'::interval;

ALTER FUNCTION auth._provider_state_lifetime() OWNER TO authgres_owner;

--
-- Name: FUNCTION _provider_state_lifetime(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._provider_state_lifetime() IS 'How long the state of a provider sign-in (the time to log in at the provider) stays valid.';

--
-- Name: _queue_email(auth.users, text, text, text, jsonb, uuid, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._queue_email(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_extra jsonb DEFAULT '{}'::jsonb, p_pending_signup uuid DEFAULT NULL::uuid, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_token record;
  v_payload jsonb;
  v_flow uuid;
begin
  select * into v_settings from auth.settings;
  if coalesce(p_code_challenge, '') <> '' then
    v_flow := auth._new_flow_state(p_user.id, p_token_type, p_code_challenge, p_code_challenge_method,
                                   coalesce(p_redirect_to, v_settings.site_url));
  end if;
  select * into v_token
    from auth._issue_token(p_user, p_token_type, p_address, p_redirect_to, p_pending_signup, v_flow);
  v_payload := pg_catalog.jsonb_build_object(
      'token', v_token.code,
      -- GoTrue marks a PKCE flow's link token with pkce_: the link then answers with an auth code.
      'token_hash', case when v_flow is null then v_token.link_token else 'pkce_' || v_token.link_token end,
      'email', p_address,
      'redirect_to', coalesce(p_redirect_to, v_settings.site_url),
      'site_url', v_settings.site_url,
      'data', p_user.raw_user_meta_data,
      'verify_type', auth._verification_type(p_token_type)) || p_extra;
  if auth._fixed_code(p_address) is not null then
    null;  -- a development address: its code is known, nothing is sent
  elsif v_settings.hook_send_email is not null then
    -- The hook takes over delivery, in this transaction: typically it queues the email its own way.
    perform auth._call_hook(v_settings.hook_send_email, pg_catalog.jsonb_build_object(
      'user', auth._user_json(p_user), 'email_data', v_payload || pg_catalog.jsonb_build_object(
        'email_action_type', p_token_type)));
  else
    insert into auth.email_outbox (kind, to_address, user_id, payload)
    values (p_token_type, p_address, p_user.id, v_payload);
    perform pg_catalog.pg_notify('authgres_outbox', '');
  end if;
  update auth.users
     set confirmation_sent_at = case when p_token_type in ('confirmation', 'invite') then pg_catalog.now() else confirmation_sent_at end,
         recovery_sent_at = case when p_token_type in ('magiclink', 'recovery') then pg_catalog.now() else recovery_sent_at end,
         email_change_sent_at = case when p_token_type like 'email_change%' then pg_catalog.now() else email_change_sent_at end,
         reauthentication_sent_at = case when p_token_type = 'reauthentication' then pg_catalog.now() else reauthentication_sent_at end
   where id = p_user.id;
end
$$;

ALTER FUNCTION auth._queue_email(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_extra jsonb, p_pending_signup uuid, p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _queue_email(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_extra jsonb, p_pending_signup uuid, p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._queue_email(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_extra jsonb, p_pending_signup uuid, p_code_challenge text, p_code_challenge_method text) IS 'Issues a fresh token of p_token_type and queues its email, in the caller''s transaction (for a pending sign-up: p_user holds only its address and metadata, p_pending_signup its id); with a code challenge the token is bound to a PKCE flow of its own.';

--
-- Name: _queue_pending_phone_signup(text, text, boolean, text, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._queue_pending_phone_signup(p_phone text, p_channel text, p_signup boolean, p_password_hash text DEFAULT NULL::text, p_data jsonb DEFAULT NULL::jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_lifetime interval := pg_catalog.make_interval(secs => (select s.sms_otp_exp from auth.settings s));
  v_pending auth.pending_signups;
  v_user auth.users;  -- no row yet: only what the text's hook sees of the user
begin
  -- Sign-ups of one number queue here; then the number's codes are locked before its pending sign-up, in
  -- the order a verification locks them, so that a sign-up racing a verification waits instead of
  -- deadlocking.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('authgres pending phone sign-up ' || p_phone));
  perform from auth.one_time_tokens where relates_to = p_phone and token_type = 'phone_confirmation' for update;
  if p_signup then
    insert into auth.pending_signups (phone, password_hash, data, expires_at)
    values (p_phone, p_password_hash, coalesce(p_data, '{}'), pg_catalog.now() + v_lifetime)
    on conflict (phone) where phone is not null do update
       set password_hash = excluded.password_hash, data = excluded.data, created_at = excluded.created_at,
           expires_at = excluded.expires_at
    returning * into v_pending;
  else
    update auth.pending_signups set expires_at = pg_catalog.now() + v_lifetime
     where phone = p_phone and expires_at > pg_catalog.now()
    returning * into v_pending;
    if not found then
      return null;
    end if;
  end if;
  v_user.phone := p_phone;
  v_user.raw_user_meta_data := v_pending.data;
  return auth._queue_sms(v_user, 'phone_confirmation', p_phone, p_channel, false, false, v_pending.id);
end
$$;

ALTER FUNCTION auth._queue_pending_phone_signup(p_phone text, p_channel text, p_signup boolean, p_password_hash text, p_data jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _queue_pending_phone_signup(p_phone text, p_channel text, p_signup boolean, p_password_hash text, p_data jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._queue_pending_phone_signup(p_phone text, p_channel text, p_signup boolean, p_password_hash text, p_data jsonb) IS 'Deferred phone sign-up: with p_signup records the number''s pending sign-up (replacing its password, metadata and code), else refreshes its live one (NULL when none); queues a fresh code''s text as _queue_sms does: {message_id}.';

--
-- Name: pending_signups; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.pending_signups (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    email text,
    password_hash text,
    data jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    phone text,
    CONSTRAINT pending_signups_address_check CHECK (((email IS NULL) <> (phone IS NULL))),
    CONSTRAINT pending_signups_email_check CHECK ((email = lower(email))),
    CONSTRAINT pending_signups_phone_check CHECK ((phone ~ '^[1-9][0-9]{1,14}$'::text))
);

ALTER TABLE auth.pending_signups OWNER TO authgres_owner;

--
-- Name: TABLE pending_signups; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.pending_signups IS 'Sign-ups waiting for their address or number to be proven; several may wait for one address (the first verified wins), one for a number (a newer sign-up replaces it).';

--
-- Name: COLUMN pending_signups.email; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.pending_signups.email IS 'The address to prove (NULL for a phone sign-up).';

--
-- Name: COLUMN pending_signups.phone; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.pending_signups.phone IS 'The number to prove, E.164 digits without + (NULL for an email sign-up); one pending sign-up per number.';

--
-- Name: _queue_pending_signup_email(auth.pending_signups, text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._queue_pending_signup_email(p_pending auth.pending_signups, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;  -- no row yet: only what the email shows of the user
begin
  v_user.email := p_pending.email;
  v_user.raw_user_meta_data := p_pending.data;
  perform auth._queue_email(v_user, 'confirmation', p_pending.email, p_redirect_to, '{}', p_pending.id,
                            p_code_challenge, p_code_challenge_method);
end
$$;

ALTER FUNCTION auth._queue_pending_signup_email(p_pending auth.pending_signups, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _queue_pending_signup_email(p_pending auth.pending_signups, p_redirect_to text, p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._queue_pending_signup_email(p_pending auth.pending_signups, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) IS 'Issues a fresh code for a pending sign-up (replacing its live one) and queues its confirmation email.';

--
-- Name: _queue_sms(auth.users, text, text, text, boolean, boolean, uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._queue_sms(p_user auth.users, p_token_type text, p_phone text, p_channel text, p_now boolean, p_created_user boolean DEFAULT false, p_pending_signup uuid DEFAULT NULL::uuid) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_token record;
  v_message auth.sms_outbox;
  v_channel text := coalesce(nullif(p_channel, ''), 'sms');
begin
  select * into v_settings from auth.settings;
  if v_channel not in ('sms', 'whatsapp') then
    raise exception using errcode = 'AUV01', message = 'Invalid channel, should be one of sms, whatsapp';
  end if;
  select * into v_token from auth._issue_token(p_user, p_token_type, p_phone, null, p_pending_signup);
  update auth.users
     set confirmation_sent_at = case when p_token_type = 'phone_confirmation' then pg_catalog.now() else confirmation_sent_at end,
         phone_change_sent_at = case when p_token_type = 'phone_change' then pg_catalog.now() else phone_change_sent_at end
   where id = p_user.id;
  if auth._fixed_code(p_phone) is not null then
    -- A development number: its code is known, nothing is sent.
    return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
  end if;
  if v_settings.hook_send_sms is not null then
    -- The hook takes over delivery, in this transaction.
    perform auth._call_hook(v_settings.hook_send_sms, pg_catalog.jsonb_build_object(
      'user', auth._user_json(p_user),
      'sms', pg_catalog.jsonb_build_object('otp', v_token.code, 'phone', p_phone, 'channel', v_channel,
                                           'sms_type', auth._verification_type(p_token_type))));
    return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
  end if;
  if p_now then
    -- Leased to the request that queued it, which sends it before answering; should that process die,
    -- the lease ends and the sender takes it over.
    insert into auth.sms_outbox
      (kind, channel, to_phone, user_id, pending_signup_id, payload, created_user, status, attempts, leased_until)
    values (p_token_type, v_channel, p_phone, p_user.id, p_pending_signup,
            pg_catalog.jsonb_build_object('code', v_token.code), p_created_user, 'sending', 1,
            pg_catalog.now() + interval '60 seconds')
    returning * into v_message;
    return pg_catalog.jsonb_build_object('message_id', v_message.message_id, 'sms', pg_catalog.to_jsonb(v_message));
  end if;
  insert into auth.sms_outbox (kind, channel, to_phone, user_id, pending_signup_id, payload, created_user)
  values (p_token_type, v_channel, p_phone, p_user.id, p_pending_signup,
          pg_catalog.jsonb_build_object('code', v_token.code), p_created_user)
  returning * into v_message;
  perform pg_catalog.pg_notify('authgres_sms_outbox', '');
  return pg_catalog.jsonb_build_object('message_id', v_message.message_id);
end
$$;

ALTER FUNCTION auth._queue_sms(p_user auth.users, p_token_type text, p_phone text, p_channel text, p_now boolean, p_created_user boolean, p_pending_signup uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION _queue_sms(p_user auth.users, p_token_type text, p_phone text, p_channel text, p_now boolean, p_created_user boolean, p_pending_signup uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._queue_sms(p_user auth.users, p_token_type text, p_phone text, p_channel text, p_now boolean, p_created_user boolean, p_pending_signup uuid) IS 'Issues a fresh texted code of p_token_type and queues its text (sms or whatsapp) in the caller''s transaction: {message_id}, plus with p_now the outbox row {sms}, leased to the caller to send at once. A fixed development number gets nothing; the send_sms hook, when set, delivers instead of the outbox. For a pending sign-up, p_user holds only its number and metadata, p_pending_signup its id.';

--
-- Name: _raise_session_aal(auth.users, auth.sessions, auth.mfa_factors, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._raise_session_aal(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_method text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_session auth.sessions;
  v_refresh_token text := auth.url_encode(auth._random_bytes(32));
begin
  update auth.sessions set aal = 'aal2', factor_id = p_factor.id, updated_at = pg_catalog.now()
   where id = p_session.id
  returning * into v_session;
  insert into auth.mfa_amr_claims (session_id, authentication_method) values (v_session.id, p_method)
  on conflict (session_id, authentication_method) do update set updated_at = pg_catalog.now();
  -- New tokens for the raised session; refresh tokens from before the second step are void.
  delete from auth.refresh_tokens where session_id = v_session.id;
  insert into auth.refresh_tokens (token_hash, user_id, session_id)
  values (auth._token_hash(v_refresh_token), p_user.id, v_session.id);
  return auth._session_response(p_user, v_session, v_refresh_token);
end
$$;

ALTER FUNCTION auth._raise_session_aal(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _raise_session_aal(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._raise_session_aal(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_method text) IS 'Makes a session aal2 with p_method in its amr, and answers with fresh tokens for it.';

--
-- Name: _random_bytes(integer); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._random_bytes(p_count integer) RETURNS bytea
    LANGUAGE sql STRICT PARALLEL SAFE
    RETURN extensions.gen_random_bytes(p_count);

ALTER FUNCTION auth._random_bytes(p_count integer) OWNER TO authgres_owner;

--
-- Name: FUNCTION _random_bytes(p_count integer); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._random_bytes(p_count integer) IS 'pgcrypto gen_random_bytes(), wherever pgcrypto is installed.';

--
-- Name: _record_failed_login(auth.users, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._record_failed_login(p_user auth.users, p_username text, p_provider text, p_ip inet) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  -- An unknown address or number is recorded too (actor NULL, what was tried as the username): both are
  -- attacks' traces.
  insert into auth.audit_log_entries (payload, ip_address)
  values (pg_catalog.json_strip_nulls(pg_catalog.json_build_object(
            'actor_id', p_user.id, 'actor_username', pg_catalog.left(p_username, 255),
            'actor_via_sso', false, 'action', 'login_failed', 'log_type', 'account',
            'traits', pg_catalog.json_build_object('provider', p_provider, 'known_user', p_user.id is not null))),
          coalesce(pg_catalog.host(p_ip), ''));
  if p_user.id is not null then
    perform auth._password_attempt_hook(p_user, false);
  end if;
end
$$;

ALTER FUNCTION auth._record_failed_login(p_user auth.users, p_username text, p_provider text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _record_failed_login(p_user auth.users, p_username text, p_provider text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._record_failed_login(p_user auth.users, p_username text, p_provider text, p_ip inet) IS 'Audits a password sign-in by p_provider (email or phone) that failed verification (p_user NULL when nobody has that username), and tells the password_verification_attempt hook.';

--
-- Name: _recovery_code_lock_key(uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._recovery_code_lock_key(p_user_id uuid) RETURNS text
    LANGUAGE sql IMMUTABLE
    RETURN ('recovery-code-failures:'::text || p_user_id);

ALTER FUNCTION auth._recovery_code_lock_key(p_user_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION _recovery_code_lock_key(p_user_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._recovery_code_lock_key(p_user_id uuid) IS 'The auth.rate_limits key counting a user''s wrong recovery codes (POST /factors/recovery-codes/verify).';

--
-- Name: _recovery_factor(uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._recovery_factor(p_user_id uuid) RETURNS auth.mfa_factors
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_factor auth.mfa_factors;
begin
  select * into v_factor from auth.mfa_factors where user_id = p_user_id and factor_type = 'recovery_code';
  if not found then
    raise exception using errcode = 'AUM01', message = 'No recovery codes found for this user';
  end if;
  return v_factor;
end
$$;

ALTER FUNCTION auth._recovery_factor(p_user_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION _recovery_factor(p_user_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._recovery_factor(p_user_id uuid) IS 'The user''s recovery_code factor, or AUM01.';

--
-- Name: _refresh_session(text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._refresh_session(p_refresh_token text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
declare
  v_settings auth.settings;
  v_token auth.refresh_tokens;
  v_live auth.refresh_tokens;
  v_session auth.sessions;
  v_user auth.users;
  v_next text;
begin
  if p_refresh_token is null or p_refresh_token !~ '^[A-Za-z0-9_-]{12,}$' then
    raise exception using errcode = 'AUR06', message = 'Refresh token is not valid';
  end if;
  select * into v_token from auth.refresh_tokens where token_hash = auth._token_hash(p_refresh_token);
  if not found then
    raise exception using errcode = 'AUR01', message = 'Invalid Refresh Token: Refresh Token Not Found';
  end if;

  -- Refreshes of one session queue here, so each sees the chain as the previous one left it.
  select * into v_session from auth.sessions where id = v_token.session_id for no key update;
  if not found then
    raise exception using errcode = 'AUR03', message = 'Invalid Refresh Token: No Valid Session Found';
  end if;
  select * into strict v_token from auth.refresh_tokens where id = v_token.id;
  select * into strict v_user from auth.users where id = v_session.user_id;
  select * into v_settings from auth.settings;

  if v_user.deleted_at is not null then
    raise exception using errcode = 'AUR03', message = 'Invalid Refresh Token: No Valid Session Found';
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUR05', message = 'Invalid Refresh Token: User Banned';
  end if;
  if v_session.not_after <= pg_catalog.now() then
    raise exception using errcode = 'AUR04', message = 'Invalid Refresh Token: Session Expired';
  end if;
  if v_session.created_at + pg_catalog.make_interval(secs => v_settings.sessions_timebox) <= pg_catalog.now() then
    delete from auth.sessions where id = v_session.id;
    return pg_catalog.jsonb_build_object('error', 'AUR04', 'message', 'Invalid Refresh Token: Session Expired');
  end if;
  if coalesce(v_session.refreshed_at, v_session.created_at)
       + pg_catalog.make_interval(secs => v_settings.sessions_inactivity_timeout) <= pg_catalog.now() then
    delete from auth.sessions where id = v_session.id;
    return pg_catalog.jsonb_build_object('error', 'AUR04', 'message', 'Invalid Refresh Token: Session Expired (Inactivity)');
  end if;
  if v_settings.sessions_single_per_user and exists (
       select from auth.sessions s where s.user_id = v_user.id and s.created_at > v_session.created_at) then
    delete from auth.sessions where id = v_session.id;
    return pg_catalog.jsonb_build_object('error', 'AUR04', 'message', 'Invalid Refresh Token: Session Expired (Revoked by Newer Login)');
  end if;

  if not v_token.revoked then
    v_next := auth._next_refresh_token(p_refresh_token, v_session.refresh_token_key);
    update auth.refresh_tokens set revoked = true, updated_at = pg_catalog.now() where id = v_token.id;
    insert into auth.refresh_tokens (token_hash, user_id, parent, session_id, generation)
    values (auth._token_hash(v_next), v_user.id, v_token.token_hash, v_session.id, v_token.generation + 1);
  else
    select * into v_live from auth.refresh_tokens where session_id = v_session.id and not revoked;
    -- The live token's parent was presented (its response was lost), or an older token came back
    -- within the reuse interval (another tab refreshed first): both get the live token, derived
    -- along the chain, and nothing new is issued.
    if v_live.id is not null
       and (v_live.parent = v_token.token_hash
            or v_token.updated_at + pg_catalog.make_interval(secs => v_settings.refresh_token_reuse_interval)
               > pg_catalog.now()) then
      v_next := p_refresh_token;
      for i in 1 .. v_live.generation - v_token.generation loop
        v_next := auth._next_refresh_token(v_next, v_session.refresh_token_key);
      end loop;
    end if;
    if v_next is null or auth._token_hash(v_next) <> v_live.token_hash then
      -- Anything else is a replay of a spent token: the chain may be in a thief's hands.
      if v_settings.refresh_token_replay_revokes = 'user' then
        delete from auth.sessions where user_id = v_user.id;
      else
        delete from auth.sessions where id = v_session.id;
      end if;
      perform auth._audit(v_user, 'token_revoked', 'token', p_ip,
        pg_catalog.jsonb_build_object('reason', 'refresh_token_reused', 'session_id', v_session.id,
                                      'scope', v_settings.refresh_token_replay_revokes));
      -- Returned, not raised, so that the revocation commits; the service answers
      -- 400 refresh_token_already_used.
      return pg_catalog.jsonb_build_object(
        'error', 'AUR02', 'message', 'Invalid Refresh Token: Already Used');
    end if;
  end if;

  update auth.sessions
     set refreshed_at = pg_catalog.now(), updated_at = pg_catalog.now(),
         user_agent = coalesce(p_user_agent, user_agent), ip = coalesce(p_ip, ip)
   where id = v_session.id
  returning * into v_session;
  return auth._session_response(v_user, v_session, v_next);
end
$_$;

ALTER FUNCTION auth._refresh_session(p_refresh_token text, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _refresh_session(p_refresh_token text, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._refresh_session(p_refresh_token text, p_user_agent text, p_ip inet) IS 'Rotates a refresh token. A spent token gets the live one back when it is the live token''s parent or was rotated within settings.refresh_token_reuse_interval; any other spent token ends the session (or all the user''s sessions) and returns {"error": "AUR02"} so that the revocation commits.';

--
-- Name: _remove_factor(auth.users, auth.mfa_factors); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._remove_factor(p_user auth.users, p_factor auth.mfa_factors) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_codes auth.mfa_factors;
begin
  delete from auth.mfa_factors where id = p_factor.id;
  -- Sessions that reached aal2 with this factor fall back to aal1.
  update auth.sessions set aal = 'aal1', factor_id = null where factor_id = p_factor.id;
  if p_factor.factor_type = 'recovery_code' then
    delete from auth.mfa_recovery_codes where user_id = p_user.id;
    delete from auth.rate_limits where key = auth._recovery_code_lock_key(p_user.id);
  end if;
  perform auth._user_event(p_user.id, 'factor_changed',
                           pg_catalog.jsonb_build_object('factor_id', p_factor.id, 'action', 'removed'));
  -- Recovery codes back up other factors and never stand alone: they go with the last of them.
  if p_factor.factor_type <> 'recovery_code' and not exists (
       select from auth.mfa_factors
        where user_id = p_user.id and status = 'verified' and factor_type <> 'recovery_code') then
    for v_codes in select * from auth.mfa_factors where user_id = p_user.id and factor_type = 'recovery_code' loop
      perform auth._remove_factor(p_user, v_codes);
    end loop;
  end if;
end
$$;

ALTER FUNCTION auth._remove_factor(p_user auth.users, p_factor auth.mfa_factors) OWNER TO authgres_owner;

--
-- Name: FUNCTION _remove_factor(p_user auth.users, p_factor auth.mfa_factors); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._remove_factor(p_user auth.users, p_factor auth.mfa_factors) IS 'Deletes a factor, lowers the sessions it raised, tells the user''s clients (factor_changed removed), and removes the recovery codes with it when no other verified factor is left (or when it is them).';

--
-- Name: _require_admin(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._require_admin(p_token text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_claims jsonb := (auth._authorize(p_token, false)).claims;
begin
  if coalesce(v_claims ->> 'role', '') not in ('service_role', 'supabase_admin') then
    raise exception using errcode = 'AUA01', message = 'User not allowed';
  end if;
  return v_claims;
end
$$;

ALTER FUNCTION auth._require_admin(p_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _require_admin(p_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._require_admin(p_token text) IS 'The claims of an admin token (role service_role); AUA01 for any other.';

--
-- Name: _require_passkey_aal(auth.users, auth.sessions); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._require_passkey_aal(p_user auth.users, p_session auth.sessions) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  if p_session.aal is distinct from 'aal2'
     and exists (select from auth.mfa_factors where user_id = p_user.id and status = 'verified') then
    raise exception using errcode = 'AUM02',
      message = 'AAL2 session is required to manage passkeys when MFA is enabled';
  end if;
end
$$;

ALTER FUNCTION auth._require_passkey_aal(p_user auth.users, p_session auth.sessions) OWNER TO authgres_owner;

--
-- Name: FUNCTION _require_passkey_aal(p_user auth.users, p_session auth.sessions); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._require_passkey_aal(p_user auth.users, p_session auth.sessions) IS 'AUM02 unless the session is aal2 or the user has no verified factor (then aal1 is the most there is).';

--
-- Name: _resend_pending_signup(text, text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._resend_pending_signup(p_email text, p_redirect_to text, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_pending auth.pending_signups;
begin
  update auth.pending_signups
     set expires_at = pg_catalog.now() + pg_catalog.make_interval(secs => (select s.mailer_otp_exp from auth.settings s))
   where id = (select p.id from auth.pending_signups p
                where p.email = p_email and p.expires_at > pg_catalog.now()
                order by p.created_at desc limit 1)
  returning * into v_pending;
  if found then
    perform auth._queue_pending_signup_email(v_pending, p_redirect_to, p_code_challenge, p_code_challenge_method);
  end if;
end
$$;

ALTER FUNCTION auth._resend_pending_signup(p_email text, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _resend_pending_signup(p_email text, p_redirect_to text, p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._resend_pending_signup(p_email text, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) IS 'POST /resend for an address with a pending sign-up: a fresh code for the newest one, which lives on.';

--
-- Name: _run_hook(regproc, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_hook
--

CREATE FUNCTION auth._run_hook(p_function regproc, p_event jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_result jsonb;
begin
  execute pg_catalog.format('select %s($1)', p_function) using p_event into v_result;
  return v_result;
end
$_$;

ALTER FUNCTION auth._run_hook(p_function regproc, p_event jsonb) OWNER TO authgres_hook;

--
-- Name: FUNCTION _run_hook(p_function regproc, p_event jsonb); Type: COMMENT; Schema: auth; Owner: authgres_hook
--

COMMENT ON FUNCTION auth._run_hook(p_function regproc, p_event jsonb) IS 'Calls a hook function as authgres_hook, whatever role calls it; only auth._call_hook() does.';

--
-- Name: _seconds_left(auth.rate_limits, interval); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._seconds_left(p_row auth.rate_limits, p_window interval) RETURNS integer
    LANGUAGE sql STABLE
    RETURN (ceil(EXTRACT(epoch FROM (((p_row).window_started_at + p_window) - now()))))::integer;

ALTER FUNCTION auth._seconds_left(p_row auth.rate_limits, p_window interval) OWNER TO authgres_owner;

--
-- Name: FUNCTION _seconds_left(p_row auth.rate_limits, p_window interval); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._seconds_left(p_row auth.rate_limits, p_window interval) IS 'Seconds until a throttle''s window ends.';

--
-- Name: _token_hash(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._token_hash(p_token text) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN sha256(convert_to(p_token, 'UTF8'::name));

ALTER FUNCTION auth._token_hash(p_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _token_hash(p_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._token_hash(p_token text) IS 'How refresh tokens (and other bearer secrets) are stored: SHA-256.';

--
-- Name: refresh_tokens; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.refresh_tokens (
    instance_id uuid DEFAULT '00000000-0000-0000-0000-000000000000'::uuid NOT NULL,
    id bigint NOT NULL,
    token_hash bytea NOT NULL,
    user_id uuid NOT NULL,
    revoked boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    parent bytea,
    session_id uuid NOT NULL,
    generation integer DEFAULT 0 NOT NULL
);

ALTER TABLE auth.refresh_tokens OWNER TO authgres_owner;

--
-- Name: TABLE refresh_tokens; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.refresh_tokens IS 'The refresh-token chain of each session. Only SHA-256 digests are stored; at most one token per session is live.';

--
-- Name: COLUMN refresh_tokens.token_hash; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.refresh_tokens.token_hash IS 'SHA-256 of the token handed to the client.';

--
-- Name: COLUMN refresh_tokens.updated_at; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.refresh_tokens.updated_at IS 'When the token was issued or, once revoked, when it was rotated.';

--
-- Name: COLUMN refresh_tokens.parent; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.refresh_tokens.parent IS 'token_hash of the token this one replaced.';

--
-- Name: COLUMN refresh_tokens.generation; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.refresh_tokens.generation IS 'Position in the session''s chain, 0 for the first token.';

--
-- Name: _session_of(jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._session_of(p_response jsonb) RETURNS uuid
    LANGUAGE sql STABLE
    RETURN (SELECT r.session_id FROM auth.refresh_tokens r WHERE (r.token_hash = auth._token_hash((_session_of.p_response ->> 'refresh_token'::text))));

ALTER FUNCTION auth._session_of(p_response jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _session_of(p_response jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._session_of(p_response jsonb) IS 'The session a token response was issued for.';

--
-- Name: _session_response(auth.users, auth.sessions, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._session_response(p_user auth.users, p_session auth.sessions, p_refresh_token text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_access record;
begin
  select * into v_access from auth._access_token(p_user, p_session);
  return pg_catalog.jsonb_build_object(
    'access_token', v_access.token,
    'token_type', 'bearer',
    'expires_in', v_access.expires_at - auth._epoch(pg_catalog.now()),
    'expires_at', v_access.expires_at,
    'refresh_token', p_refresh_token,
    'user', auth._user_json(p_user));
end
$$;

ALTER FUNCTION auth._session_response(p_user auth.users, p_session auth.sessions, p_refresh_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _session_response(p_user auth.users, p_session auth.sessions, p_refresh_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._session_response(p_user auth.users, p_session auth.sessions, p_refresh_token text) IS 'GoTrue''s AccessTokenResponse for a session and the refresh token just handed out.';

--
-- Name: _sessions_ended(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._sessions_ended() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_session record;
begin
  for v_session in select e.id, e.user_id from ended e order by e.user_id, e.id loop
    perform auth._user_event(v_session.user_id, 'session_revoked',
                             pg_catalog.jsonb_build_object('session_id', v_session.id));
  end loop;
  return null;
end
$$;

ALTER FUNCTION auth._sessions_ended() OWNER TO authgres_owner;

--
-- Name: FUNCTION _sessions_ended(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._sessions_ended() IS 'Trigger: a session_revoked event for each deleted session.';

--
-- Name: _sign_claims(jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._sign_claims(p_claims jsonb) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION auth._sign_claims(p_claims jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _sign_claims(p_claims jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._sign_claims(p_claims jsonb) IS 'Signs claims with the current key: HS* here; ES256 up to the signature, which the service adds.';

--
-- Name: _sign_count_regressed(bigint, bigint); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._sign_count_regressed(p_stored bigint, p_presented bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    RETURN (((p_stored > 0) OR (p_presented > 0)) AND (p_presented <= p_stored));

ALTER FUNCTION auth._sign_count_regressed(p_stored bigint, p_presented bigint) OWNER TO authgres_owner;

--
-- Name: FUNCTION _sign_count_regressed(p_stored bigint, p_presented bigint); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._sign_count_regressed(p_stored bigint, p_presented bigint) IS 'Whether an assertion''s signature counter fails to move past the stored one (an authenticator without a counter reports 0 every time): the mark of a cloned authenticator.';

--
-- Name: _signed_in(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._signed_in(p_access_token text, OUT usr auth.users, OUT sess auth.sessions) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_auth record;
begin
  select * into v_auth from auth._authorize(p_access_token, true);
  if (v_auth.sess).id is null then
    raise exception using errcode = 'AUK02', message = 'This action needs a signed-in session, not an API key';
  end if;
  usr := v_auth.usr;
  sess := v_auth.sess;
end
$$;

ALTER FUNCTION auth._signed_in(p_access_token text, OUT usr auth.users, OUT sess auth.sessions) OWNER TO authgres_owner;

--
-- Name: FUNCTION _signed_in(p_access_token text, OUT usr auth.users, OUT sess auth.sessions); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._signed_in(p_access_token text, OUT usr auth.users, OUT sess auth.sessions) IS 'The user and session of an access token; AUK02 for an API key or a sessionless token.';

--
-- Name: signing_keys; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.signing_keys (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    kid text,
    algorithm text NOT NULL,
    secret text NOT NULL,
    status text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    public_jwk jsonb,
    mac_key bytea NOT NULL,
    rotated_at timestamp with time zone,
    revoked_at timestamp with time zone,
    CONSTRAINT signing_keys_algorithm_check CHECK ((algorithm = ANY (ARRAY['HS256'::text, 'HS384'::text, 'HS512'::text, 'ES256'::text]))),
    CONSTRAINT signing_keys_asymmetric_have_kid CHECK (((algorithm ~~ 'HS%'::text) OR (kid IS NOT NULL))),
    CONSTRAINT signing_keys_public_half CHECK ((((algorithm = 'ES256'::text) = (public_jwk IS NOT NULL)) AND ((public_jwk IS NULL) OR (((public_jwk ->> 'kid'::text) = kid) AND ((public_jwk ->> 'alg'::text) = algorithm) AND ((public_jwk ->> 'kty'::text) = 'EC'::text) AND ((public_jwk ->> 'crv'::text) = 'P-256'::text) AND (public_jwk ? 'x'::text) AND (public_jwk ? 'y'::text) AND (NOT (public_jwk ? 'd'::text)))))),
    CONSTRAINT signing_keys_status_check CHECK ((status = ANY (ARRAY['next'::text, 'current'::text, 'previous'::text, 'revoked'::text])))
);

ALTER TABLE auth.signing_keys OWNER TO authgres_owner;

--
-- Name: TABLE signing_keys; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.signing_keys IS 'JWT signing keys. Exactly one is current (it signs); previous keys still verify until revoked.';

--
-- Name: COLUMN signing_keys.kid; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.signing_keys.kid IS 'Key id put in the JWT header; NULL signs without a kid, as GoTrue does by default.';

--
-- Name: COLUMN signing_keys.secret; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.signing_keys.secret IS 'HMAC secret (HS*), or the PKCS#8 PEM private key (ES256). Readable only by the owner role; the service gets asymmetric private keys from auth.signing_keys_for_service().';

--
-- Name: COLUMN signing_keys.public_jwk; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.signing_keys.public_jwk IS 'The public half of an asymmetric key as a JWK, as auth.jwks() publishes it.';

--
-- Name: COLUMN signing_keys.mac_key; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.signing_keys.mac_key IS 'Keys the "mac" header member of ES256 tokens, by which SQL recognises tokens it minted under this key.';

--
-- Name: COLUMN signing_keys.rotated_at; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.signing_keys.rotated_at IS 'When the key stopped signing (became previous).';

--
-- Name: COLUMN signing_keys.revoked_at; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.signing_keys.revoked_at IS 'When the key stopped verifying.';

--
-- Name: _signing_key_json(auth.signing_keys); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._signing_key_json(p_key auth.signing_keys) RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN jsonb_build_object('id', (p_key).id, 'kid', (p_key).kid, 'algorithm', (p_key).algorithm, 'status', (p_key).status, 'created_at', (p_key).created_at, 'rotated_at', (p_key).rotated_at, 'revoked_at', (p_key).revoked_at);

ALTER FUNCTION auth._signing_key_json(p_key auth.signing_keys) OWNER TO authgres_owner;

--
-- Name: FUNCTION _signing_key_json(p_key auth.signing_keys); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._signing_key_json(p_key auth.signing_keys) IS 'A signing key without its secrets.';

--
-- Name: one_time_tokens; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.one_time_tokens (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid,
    token_type text NOT NULL,
    token_digest bytea NOT NULL,
    relates_to text NOT NULL,
    redirect_to text,
    attempts integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    pending_signup_id uuid,
    flow_state_id uuid,
    CONSTRAINT one_time_tokens_owner_check CHECK (((user_id IS NULL) <> (pending_signup_id IS NULL))),
    CONSTRAINT one_time_tokens_token_type_check CHECK ((token_type = ANY (ARRAY['confirmation'::text, 'invite'::text, 'magiclink'::text, 'recovery'::text, 'email_change_current'::text, 'email_change_new'::text, 'reauthentication'::text, 'mfa_email'::text, 'phone_confirmation'::text, 'phone_change'::text, 'mfa_phone'::text])))
);

ALTER TABLE auth.one_time_tokens OWNER TO authgres_owner;

--
-- Name: TABLE one_time_tokens; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.one_time_tokens IS 'Emailed secrets. Deleted when used; re-issuing replaces the live one of the user and purpose, except tokens of PKCE flows, each of which lives for its own flow.';

--
-- Name: COLUMN one_time_tokens.token_digest; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.one_time_tokens.token_digest IS 'SHA-256 of the link token (hex SHA-224 of relates_to || code). Neither the code nor the link token is stored.';

--
-- Name: COLUMN one_time_tokens.relates_to; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.one_time_tokens.relates_to IS 'The address (or phone number, E.164 digits without +) the token was sent to.';

--
-- Name: COLUMN one_time_tokens.attempts; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.one_time_tokens.attempts IS 'Wrong codes presented so far.';

--
-- Name: COLUMN one_time_tokens.flow_state_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.one_time_tokens.flow_state_id IS 'The PKCE flow this token''s link belongs to: following the link issues that flow''s auth code.';

--
-- Name: _spend_code(text, text[], text, boolean); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._spend_code(p_address text, p_types text[], p_code text, p_provider_approved boolean DEFAULT NULL::boolean) RETURNS auth.one_time_tokens
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_token auth.one_time_tokens;
  v_digest bytea := auth._token_hash(auth._link_token(p_address, pg_catalog.btrim(coalesce(p_code, ''))));
begin
  -- Lock the candidates first: concurrent guesses queue here, so the attempt count stays exact.
  for v_token in
    select * from auth.one_time_tokens
     where relates_to = p_address and token_type = any (p_types)
     order by created_at desc
     for update
  loop
    if v_token.expires_at > pg_catalog.now()
       and v_token.attempts < (select s.mailer_otp_max_attempts from auth.settings s)
       and (p_provider_approved or (p_provider_approved is null and auth._equal_keyed(v_token.token_digest, v_digest))) then
      return v_token;
    end if;
  end loop;
  update auth.one_time_tokens set attempts = attempts + 1
   where relates_to = p_address and token_type = any (p_types) and expires_at > pg_catalog.now();
  delete from auth.one_time_tokens
   where relates_to = p_address and token_type = any (p_types)
     and (attempts >= (select s.mailer_otp_max_attempts from auth.settings s) or expires_at <= pg_catalog.now());
  return null;
end
$$;

ALTER FUNCTION auth._spend_code(p_address text, p_types text[], p_code text, p_provider_approved boolean) OWNER TO authgres_owner;

--
-- Name: FUNCTION _spend_code(p_address text, p_types text[], p_code text, p_provider_approved boolean); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._spend_code(p_address text, p_types text[], p_code text, p_provider_approved boolean) IS 'The live token of one of p_types sent to p_address whose code is p_code, locked, for the caller to spend; NULL after counting a wrong code against every live one (a token dies after mailer_otp_max_attempts). p_provider_approved: the code was checked by the SMS provider (Twilio Verify), true or false, instead.';

--
-- Name: _spend_reauthentication_nonce(auth.users, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._spend_reauthentication_nonce(p_user auth.users, p_nonce text, p_missing text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_nonce auth.one_time_tokens;
begin
  if p_nonce is null then
    raise exception using errcode = 'AUE02', message = p_missing;
  end if;
  select * into v_nonce from auth.one_time_tokens
   where user_id = p_user.id and token_type = 'reauthentication' for update;
  if not found or v_nonce.expires_at <= pg_catalog.now() or not auth._equal_keyed(
       v_nonce.token_digest, auth._token_hash(auth._link_token(v_nonce.relates_to, pg_catalog.btrim(p_nonce)))) then
    raise exception using errcode = 'AUE03', message = 'Nonce has expired or is invalid';
  end if;
  delete from auth.one_time_tokens where id = v_nonce.id;
end
$$;

ALTER FUNCTION auth._spend_reauthentication_nonce(p_user auth.users, p_nonce text, p_missing text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _spend_reauthentication_nonce(p_user auth.users, p_nonce text, p_missing text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._spend_reauthentication_nonce(p_user auth.users, p_nonce text, p_missing text) IS 'Consumes the user''s GET /reauthenticate nonce: AUE02 (with p_missing) when none is given, AUE03 when it is wrong or expired.';

--
-- Name: _start_phone_change(auth.users, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._start_phone_change(p_user auth.users, p_phone text, p_channel text, p_ip inet) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_phone text := auth._normalize_phone(p_phone);
  v_user auth.users;
begin
  if v_phone is not distinct from p_user.phone then
    return '{}';
  end if;
  if exists (select from auth.users where phone = v_phone and id <> p_user.id) then
    raise exception using errcode = 'AUP03', message = 'A user with this phone number has already been registered';
  end if;
  perform auth._throttle_sms(v_phone, 'phone_change');
  update auth.users set phone_change = v_phone where id = p_user.id returning * into v_user;
  delete from auth.one_time_tokens where user_id = p_user.id and token_type = 'phone_change';
  return auth._queue_sms(v_user, 'phone_change', v_phone, p_channel, true) - 'message_id';
end
$$;

ALTER FUNCTION auth._start_phone_change(p_user auth.users, p_phone text, p_channel text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _start_phone_change(p_user auth.users, p_phone text, p_channel text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._start_phone_change(p_user auth.users, p_phone text, p_channel text, p_ip inet) IS 'PUT /user {phone}: records the new number and texts it a phone_change code, leased to the caller in {sms}.';

--
-- Name: _start_session(auth.users, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._start_session(p_user auth.users, p_method text, p_user_agent text, p_ip inet) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_session auth.sessions;
  v_refresh_token text := auth.url_encode(auth._random_bytes(32));
begin
  insert into auth.sessions (user_id, user_agent, ip, refresh_token_key)
  values (p_user.id, p_user_agent, p_ip, auth._random_bytes(32))
  returning * into v_session;
  insert into auth.mfa_amr_claims (session_id, authentication_method) values (v_session.id, p_method);
  insert into auth.refresh_tokens (token_hash, user_id, session_id)
  values (auth._token_hash(v_refresh_token), p_user.id, v_session.id);
  return auth._session_response(p_user, v_session, v_refresh_token);
end
$$;

ALTER FUNCTION auth._start_session(p_user auth.users, p_method text, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _start_session(p_user auth.users, p_method text, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._start_session(p_user auth.users, p_method text, p_user_agent text, p_ip inet) IS 'Creates a session signed in by p_method, with its first refresh token; returns the token response.';

--
-- Name: _texted(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._texted(p_token_type text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (p_token_type = ANY (ARRAY['phone_confirmation'::text, 'phone_change'::text, 'mfa_phone'::text]));

ALTER FUNCTION auth._texted(p_token_type text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _texted(p_token_type text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._texted(p_token_type text) IS 'Whether tokens of this purpose go to a phone number (their length and lifetime are the sms_ settings).';

--
-- Name: _throttle(text, integer, interval, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._throttle(p_key text, p_limit integer, p_window interval, p_errcode text DEFAULT 'AUL01'::text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_row auth.rate_limits := auth._count_hit(p_key, p_window);
begin
  if v_row.hits > p_limit then
    raise exception using errcode = p_errcode,
      message = 'For security purposes, you can only request this after '
        || auth._seconds_left(v_row, p_window) || ' seconds.',
      detail = auth._seconds_left(v_row, p_window)::text;
  end if;
end
$$;

ALTER FUNCTION auth._throttle(p_key text, p_limit integer, p_window interval, p_errcode text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _throttle(p_key text, p_limit integer, p_window interval, p_errcode text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._throttle(p_key text, p_limit integer, p_window interval, p_errcode text) IS 'Counts one hit on p_key; raises p_errcode (detail: seconds to wait) past p_limit hits per window.';

--
-- Name: _throttle_email(text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._throttle_email(p_address text, p_kind text, p_ip inet) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
begin
  select * into v_settings from auth.settings;
  -- Keyed by address, never by user: a known and an unknown address are throttled alike.
  if v_settings.smtp_max_frequency > 0 then
    perform auth._throttle('email-gap:' || p_kind || ':' || p_address, 1,
                           pg_catalog.make_interval(secs => v_settings.smtp_max_frequency));
  end if;
  perform auth._throttle('email-hour:' || p_address, v_settings.rate_limit_email_per_address, interval '1 hour');
  if p_ip is not null then
    perform auth._throttle('email-ip-hour:' || pg_catalog.host(p_ip), v_settings.rate_limit_email_per_ip,
                           interval '1 hour', 'AUL02');
  end if;
end
$$;

ALTER FUNCTION auth._throttle_email(p_address text, p_kind text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _throttle_email(p_address text, p_kind text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._throttle_email(p_address text, p_kind text, p_ip inet) IS 'The send throttles: one email of a kind per address per smtp_max_frequency, and hourly budgets per address and per client IP.';

--
-- Name: _throttle_sms(text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._throttle_sms(p_phone text, p_kind text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
begin
  select * into v_settings from auth.settings;
  if v_settings.sms_max_frequency > 0 then
    perform auth._throttle('sms-gap:' || p_kind || ':' || p_phone, 1,
                           pg_catalog.make_interval(secs => v_settings.sms_max_frequency), 'AUL03');
  end if;
  perform auth._throttle('sms-hour', v_settings.rate_limit_sms_sent, interval '1 hour', 'AUL03');
end
$$;

ALTER FUNCTION auth._throttle_sms(p_phone text, p_kind text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _throttle_sms(p_phone text, p_kind text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._throttle_sms(p_phone text, p_kind text) IS 'The text throttles: one text of a kind per number per sms_max_frequency, and rate_limit_sms_sent texts per hour in all (GoTrue''s budget is the installation''s); AUL03 past either.';

--
-- Name: _totp_step_accepted(auth.mfa_factors, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._totp_step_accepted(p_factor auth.mfa_factors, p_code text) RETURNS bigint
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_now bigint := pg_catalog.floor(extract(epoch from pg_catalog.now()) / 30)::bigint;
begin
  -- One step of clock drift either way; a step already used (or older) is refused.
  for v_step in v_now - 1 .. v_now + 1 loop
    if v_step > coalesce(p_factor.last_used_step, -1)
       and auth._equal_keyed(pg_catalog.convert_to(auth.hotp(p_factor.secret, v_step), 'UTF8'),
                             pg_catalog.convert_to(pg_catalog.btrim(p_code), 'UTF8')) then
      return v_step;
    end if;
  end loop;
  return null;
end
$$;

ALTER FUNCTION auth._totp_step_accepted(p_factor auth.mfa_factors, p_code text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _totp_step_accepted(p_factor auth.mfa_factors, p_code text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._totp_step_accepted(p_factor auth.mfa_factors, p_code text) IS 'The time step whose TOTP code p_code is, within one step of now and after the last used one; else NULL.';

--
-- Name: _totp_step_spent(auth.mfa_factors, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._totp_step_spent(p_factor auth.mfa_factors, p_code text) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_now bigint := pg_catalog.floor(extract(epoch from pg_catalog.now()) / 30)::bigint;
begin
  if p_factor.last_used_step is null then
    return false;
  end if;
  for v_step in v_now - 1 .. least(v_now + 1, p_factor.last_used_step) loop
    if auth._equal_keyed(pg_catalog.convert_to(auth.hotp(p_factor.secret, v_step), 'UTF8'),
                         pg_catalog.convert_to(pg_catalog.btrim(p_code), 'UTF8')) then
      return true;
    end if;
  end loop;
  return false;
end
$$;

ALTER FUNCTION auth._totp_step_spent(p_factor auth.mfa_factors, p_code text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _totp_step_spent(p_factor auth.mfa_factors, p_code text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._totp_step_spent(p_factor auth.mfa_factors, p_code text) IS 'Whether p_code is the TOTP code of a time step within the window that was already used.';

--
-- Name: _unenroll(auth.users, auth.sessions, auth.mfa_factors, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._unenroll(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_ip inet) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if p_factor.status = 'verified' and p_session.aal = 'aal1' then
    raise exception using errcode = 'AUM03', message = 'AAL2 required to unenroll verified factor';
  end if;
  perform auth._remove_factor(p_user, p_factor);
  perform auth._audit(p_user, 'factor_unenrolled', 'user', p_ip, pg_catalog.jsonb_build_object('factor_id', p_factor.id));
  return pg_catalog.jsonb_build_object('id', p_factor.id);
end
$$;

ALTER FUNCTION auth._unenroll(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _unenroll(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._unenroll(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_ip inet) IS 'A user removes one of their factors (a verified one only from an aal2 session).';

--
-- Name: _use_recovery_code(auth.users, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._use_recovery_code(p_user auth.users, p_code text, p_ip inet) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
declare
  v_code text := auth._canonical_recovery_code(p_code);
  v_digest bytea := auth._token_hash(v_code);
  -- Codes made before 0023 were stored as shown, in groups of four.
  v_grouped bytea := auth._token_hash(pg_catalog.regexp_replace(v_code, '^(.{4})(.{4})(.{4})(.{4})$', '\1-\2-\3-\4'));
  v_row auth.mfa_recovery_codes;
begin
  if v_code = '' then
    return false;
  end if;
  for v_row in
    select * from auth.mfa_recovery_codes where user_id = p_user.id and used_at is null for update
  loop
    if auth._equal_keyed(v_row.code_digest, v_digest) or auth._equal_keyed(v_row.code_digest, v_grouped) then
      update auth.mfa_recovery_codes set used_at = pg_catalog.now() where id = v_row.id;
      perform auth._audit(p_user, 'recovery_code_used', 'user', p_ip, pg_catalog.jsonb_build_object(
        'remaining', (select pg_catalog.count(*) from auth.mfa_recovery_codes
                       where user_id = p_user.id and used_at is null)));
      return true;
    end if;
  end loop;
  return false;
end
$_$;

ALTER FUNCTION auth._use_recovery_code(p_user auth.users, p_code text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _use_recovery_code(p_user auth.users, p_code text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._use_recovery_code(p_user auth.users, p_code text, p_ip inet) IS 'Spends one unused recovery code matching p_code (case, whitespace and - separators ignored).';

--
-- Name: _user_credential_ids(uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._user_credential_ids(p_user_id uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN COALESCE((SELECT jsonb_agg(auth.url_encode(c.credential_id) ORDER BY c.created_at) AS jsonb_agg FROM auth.webauthn_credentials c WHERE (c.user_id = _user_credential_ids.p_user_id)), '[]'::jsonb);

ALTER FUNCTION auth._user_credential_ids(p_user_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION _user_credential_ids(p_user_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._user_credential_ids(p_user_id uuid) IS 'The user''s credential ids (passkeys and WebAuthn factors), base64url: what a new registration excludes.';

--
-- Name: _user_event(uuid, text, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._user_event(p_user_id uuid, p_kind text, p_data jsonb DEFAULT '{}'::jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_event auth.user_events;
begin
  -- One writer of a user's events at a time, until it commits: the user's events then become visible
  -- in the order of their ids, and "every event after id N" is a cursor without gaps, which is what
  -- GET /sessions/events resumes from. (Without it, an id taken by a transaction that commits after
  -- a later id's would be behind a cursor that already passed it.) Taken after the event's cause, at
  -- the end of the statements that emit it, so that a writer holding it seldom waits for anything else.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('authgres_user_events'),
                                           pg_catalog.hashtext(p_user_id::text));
  insert into auth.user_events (user_id, kind, data) values (p_user_id, p_kind, p_data)
  returning * into v_event;
  perform pg_catalog.pg_notify('authgres_user_events', pg_catalog.to_jsonb(v_event)::text);
end
$$;

ALTER FUNCTION auth._user_event(p_user_id uuid, p_kind text, p_data jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _user_event(p_user_id uuid, p_kind text, p_data jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._user_event(p_user_id uuid, p_kind text, p_data jsonb) IS 'Records an event for the user''s clients and NOTIFYs it on authgres_user_events at commit; a user''s events commit in id order.';

--
-- Name: _user_from_pending_signup(uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._user_from_pending_signup(p_pending_signup uuid, p_ip inet) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_pending auth.pending_signups;
  v_user auth.users;
begin
  delete from auth.pending_signups where id = p_pending_signup returning * into v_pending;
  if not found or v_pending.expires_at <= pg_catalog.now() then
    return null;
  end if;
  -- Two pending sign-ups of one address verified at once: the unique address lets one insert win, and
  -- the other finds it taken.
  if v_pending.phone is not null then
    return auth._new_phone_user(v_pending.phone, v_pending.password_hash, v_pending.data, p_ip);
  end if;
  return auth._new_email_user(v_pending.email, v_pending.password_hash, v_pending.data, p_ip);
end
$$;

ALTER FUNCTION auth._user_from_pending_signup(p_pending_signup uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _user_from_pending_signup(p_pending_signup uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._user_from_pending_signup(p_pending_signup uuid, p_ip inet) IS 'The user a verified pending sign-up (of an address or a number) becomes, unconfirmed yet; NULL when it expired or its address or number is taken.';

--
-- Name: _user_json(auth.users); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._user_json(p_user auth.users) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_factors jsonb := (select pg_catalog.jsonb_agg(auth._factor_json(f) order by f.created_at)
                        from auth.mfa_factors f where f.user_id = p_user.id);
begin
  return pg_catalog.jsonb_build_object(
      'id', p_user.id,
      'aud', coalesce(p_user.aud, ''),
      'role', coalesce(p_user.role, ''),
      'email', coalesce(p_user.email, ''),
      'phone', coalesce(p_user.phone, ''),
      'app_metadata', p_user.raw_app_meta_data,
      'user_metadata', p_user.raw_user_meta_data,
      'identities', coalesce(
        (select pg_catalog.jsonb_agg(auth._identity_json(i) order by i.created_at, i.id)
           from auth.identities i
          where i.user_id = p_user.id),
        '[]'::jsonb),
      'created_at', p_user.created_at,
      'updated_at', p_user.updated_at,
      'is_anonymous', p_user.is_anonymous)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'factors', v_factors,
      'email_confirmed_at', p_user.email_confirmed_at,
      'invited_at', p_user.invited_at,
      'phone_confirmed_at', p_user.phone_confirmed_at,
      'confirmation_sent_at', p_user.confirmation_sent_at,
      'confirmed_at', p_user.confirmed_at,
      'recovery_sent_at', p_user.recovery_sent_at,
      'new_email', nullif(p_user.email_change, ''),
      'email_change_sent_at', p_user.email_change_sent_at,
      'new_phone', nullif(p_user.phone_change, ''),
      'phone_change_sent_at', p_user.phone_change_sent_at,
      'reauthentication_sent_at', p_user.reauthentication_sent_at,
      'last_sign_in_at', p_user.last_sign_in_at,
      'banned_until', p_user.banned_until,
      'deleted_at', p_user.deleted_at));
end
$$;

ALTER FUNCTION auth._user_json(p_user auth.users) OWNER TO authgres_owner;

--
-- Name: FUNCTION _user_json(p_user auth.users); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._user_json(p_user auth.users) IS 'A user as GoTrue serialises it: email and phone always present, no secrets, identities embedded.';

--
-- Name: _user_of_spent_token(auth.one_time_tokens, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._user_of_spent_token(p_token auth.one_time_tokens, p_ip inet) RETURNS auth.users
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
begin
  if p_token.pending_signup_id is not null then  -- a deferred sign-up's: its user is made now
    return auth._user_from_pending_signup(p_token.pending_signup_id, p_ip);
  end if;
  select * into strict v_user from auth.users where id = p_token.user_id;
  return v_user;
end
$$;

ALTER FUNCTION auth._user_of_spent_token(p_token auth.one_time_tokens, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION _user_of_spent_token(p_token auth.one_time_tokens, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._user_of_spent_token(p_token auth.one_time_tokens, p_ip inet) IS 'The user a verified code or link (emailed or texted) is for; a pending sign-up''s is made now (NULL when it expired or its address or number is taken).';

--
-- Name: _verified_jwt_claims(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._verified_jwt_claims(p_token text) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $_$
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
$_$;

ALTER FUNCTION auth._verified_jwt_claims(p_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _verified_jwt_claims(p_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._verified_jwt_claims(p_token text) IS 'Claims of an unexpired JWT minted under a current or previous key (chosen by kid; none means the kid-less HS* key of AUTHGRES_JWT_SECRET). HS* tokens by their signature, ES256 tokens by their mac. A user''s token (with a sub) must name settings.jwt_aud in aud (else AUJ06) and, if it has an iss, settings.jwt_issuer. Raises AUJ01 otherwise.';

--
-- Name: _verified_claims(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._verified_claims(p_token text) RETURNS jsonb
    LANGUAGE sql
    RETURN CASE WHEN (p_token ~~ 'ag\_%'::text) THEN auth._api_key_claims(p_token) ELSE auth._verified_jwt_claims(p_token) END;

ALTER FUNCTION auth._verified_claims(p_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _verified_claims(p_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._verified_claims(p_token text) IS 'Claims of a bearer credential that verified; raises AUJ01 otherwise.';

--
-- Name: _verify_challenge(auth.users, auth.mfa_factors, uuid, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._verify_challenge(p_user auth.users, p_factor auth.mfa_factors, p_challenge_id uuid, p_code text, p_ip inet, OUT ok boolean, OUT method text, OUT failure jsonb) RETURNS record
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_challenge auth.mfa_challenges;
  v_step bigint;
begin
  select * into v_settings from auth.settings;
  ok := false;
  if p_challenge_id is null then  -- an email factor may be answered without naming the challenge
    select * into v_challenge from auth.mfa_challenges
     where factor_id = p_factor.id and verified_at is null order by created_at desc limit 1 for update;
  else
    select * into v_challenge from auth.mfa_challenges
     where id = p_challenge_id and factor_id = p_factor.id for update;
  end if;
  if not found then
    raise exception using errcode = 'AUM01', message = 'MFA factor with the provided challenge ID not found';
  end if;
  if v_challenge.verified_at is not null or v_challenge.expires_at <= pg_catalog.now()
     or v_challenge.attempts >= v_settings.mfa_max_attempts then
    raise exception using errcode = 'AUM07',
      message = pg_catalog.format('MFA challenge %s has expired, verify against another challenge or create a new challenge.', v_challenge.id);
  end if;
  if v_challenge.ip_address is distinct from p_ip and v_challenge.ip_address is not null and p_ip is not null then
    raise exception using errcode = 'AUM08', message = 'Challenge and verify IP addresses mismatch.';
  end if;

  if p_factor.factor_type = 'totp' then
    v_step := auth._totp_step_accepted(p_factor, p_code);
    if v_step is not null then
      update auth.mfa_factors set last_used_step = v_step where id = p_factor.id;
      method := 'totp';
    end if;
  elsif p_factor.factor_type = 'email' and v_challenge.code_digest is not null and auth._equal_keyed(
          v_challenge.code_digest, auth._token_hash(auth._link_token(p_user.email, pg_catalog.btrim(p_code)))) then
    delete from auth.one_time_tokens where user_id = p_user.id and token_type = 'mfa_email';
    method := 'email';
  elsif p_factor.factor_type = 'phone' and v_challenge.code_digest is not null and auth._equal_keyed(
          v_challenge.code_digest, auth._token_hash(auth._link_token(p_factor.phone, pg_catalog.btrim(p_code)))) then
    delete from auth.one_time_tokens where user_id = p_user.id and token_type = 'mfa_phone';
    method := 'phone';
  end if;
  if method is null and v_settings.mfa_recovery_codes_verify_enabled and auth._use_recovery_code(p_user, p_code, p_ip) then
    method := 'mfa/recovery_code';
  end if;

  if method is null and p_factor.factor_type = 'totp' and auth._totp_step_spent(p_factor, p_code) then
    -- Right code, already used (enrolled on one device, signing in on another within 30 s): say so.
    -- Not counted as a wrong guess: a spent step never becomes acceptable again.
    failure := pg_catalog.jsonb_build_object('error', 'AUM10', 'message',
      'This code was already used. Wait for your authenticator app to show the next one.');
    return;
  end if;
  if method is null then
    update auth.mfa_challenges set attempts = attempts + 1 where id = v_challenge.id;
    failure := pg_catalog.jsonb_build_object('error', 'AUM06', 'message',
      case p_factor.factor_type when 'totp' then 'Invalid TOTP code entered'
                                when 'phone' then 'Invalid MFA Phone code entered' else 'Invalid MFA email code entered' end);
    return;
  end if;
  update auth.mfa_challenges set verified_at = pg_catalog.now() where id = v_challenge.id;
  ok := true;
end
$$;

ALTER FUNCTION auth._verify_challenge(p_user auth.users, p_factor auth.mfa_factors, p_challenge_id uuid, p_code text, p_ip inet, OUT ok boolean, OUT method text, OUT failure jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION _verify_challenge(p_user auth.users, p_factor auth.mfa_factors, p_challenge_id uuid, p_code text, p_ip inet, OUT ok boolean, OUT method text, OUT failure jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._verify_challenge(p_user auth.users, p_factor auth.mfa_factors, p_challenge_id uuid, p_code text, p_ip inet, OUT ok boolean, OUT method text, OUT failure jsonb) IS 'Checks a code (TOTP, emailed, or a recovery code) against a live challenge; wrong codes count against the challenge and come back as a failure to return, so the count commits.';

--
-- Name: _verify_error(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._verify_error(p_message text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN jsonb_build_object('error', 'AUO01', 'message', p_message);

ALTER FUNCTION auth._verify_error(p_message text) OWNER TO authgres_owner;

--
-- Name: FUNCTION _verify_error(p_message text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._verify_error(p_message text) IS 'A failed verification, returned rather than raised so that the attempt it counted commits.';

--
-- Name: _webauthn_user(auth.users); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth._webauthn_user(p_user auth.users) RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN jsonb_build_object('id', (p_user).id, 'name', COALESCE(NULLIF(((p_user).email)::text, ''::text), NULLIF((p_user).phone, ''::text), ((p_user).id)::text), 'display_name', COALESCE(NULLIF(((p_user).raw_user_meta_data ->> 'name'::text), ''::text), NULLIF(((p_user).email)::text, ''::text), NULLIF((p_user).phone, ''::text), ((p_user).id)::text));

ALTER FUNCTION auth._webauthn_user(p_user auth.users) OWNER TO authgres_owner;

--
-- Name: FUNCTION _webauthn_user(p_user auth.users); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth._webauthn_user(p_user auth.users) IS 'The user as a WebAuthn registration names it: id (the user handle, as text), name and display name.';

--
-- Name: access_token_claims(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.access_token_claims(p_token text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return (auth._authorize(p_token, false)).claims;
end
$$;

ALTER FUNCTION auth.access_token_claims(p_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION access_token_claims(p_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.access_token_claims(p_token text) IS 'Claims of a token this server issued (or an API-role key signed with its secret), after checking signature, expiry, and that its user and session still exist. Raises AUJ0x otherwise.';

--
-- Name: add_signing_key(text, text, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.add_signing_key(p_algorithm text, p_private_key text DEFAULT NULL::text, p_public_jwk jsonb DEFAULT NULL::jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION auth.add_signing_key(p_algorithm text, p_private_key text, p_public_jwk jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION add_signing_key(p_algorithm text, p_private_key text, p_public_jwk jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.add_signing_key(p_algorithm text, p_private_key text, p_public_jwk jsonb) IS 'Adds the next signing key: published in the JWKS at once, signing only after auth.rotate_signing_keys(). HMAC secrets are generated here; ES256 key pairs by the caller (SQL cannot make them).';

--
-- Name: admin_audit(text, integer, integer); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_audit(p_admin_token text, p_page integer DEFAULT 1, p_per_page integer DEFAULT 50) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform auth._require_admin(p_admin_token);
  if p_page < 1 or p_per_page < 1 or p_per_page > 1000 then
    raise exception using errcode = 'AUA04', message = 'Bad Pagination Parameters';
  end if;
  return coalesce((
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'id', e.id, 'payload', e.payload, 'created_at', e.created_at, 'ip_address', e.ip_address)
             order by e.created_at desc, e.id)
      from (select * from auth.audit_log_entries order by created_at desc, id
             limit p_per_page offset (p_page - 1) * p_per_page) e), '[]'::jsonb);
end
$$;

ALTER FUNCTION auth.admin_audit(p_admin_token text, p_page integer, p_per_page integer) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_audit(p_admin_token text, p_page integer, p_per_page integer); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_audit(p_admin_token text, p_page integer, p_per_page integer) IS 'GET /admin/audit: a page of audit entries, newest first.';

--
-- Name: admin_create_user(text, jsonb, text, bigint, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_create_user(p_admin_token text, p_attributes jsonb, p_password_hash text DEFAULT NULL::text, p_ban_seconds bigint DEFAULT NULL::bigint, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_email text;
  v_id uuid := coalesce((p_attributes ->> 'id')::uuid, pg_catalog.gen_random_uuid());
  v_confirmed boolean := coalesce((p_attributes ->> 'email_confirm')::boolean, false);
  v_phone text;
  v_phone_confirmed boolean := coalesce((p_attributes ->> 'phone_confirm')::boolean, false);
  v_identity_data jsonb;
  v_providers jsonb := '[]';
  v_user auth.users;
begin
  perform auth._require_admin(p_admin_token);
  select * into v_settings from auth.settings;
  if nullif(p_attributes ->> 'email', '') is null and nullif(p_attributes ->> 'phone', '') is null then
    raise exception using errcode = 'AUA04', message = 'Cannot create a user without either an email or phone';
  end if;
  if v_id = '00000000-0000-0000-0000-000000000000' then
    raise exception using errcode = 'AUA04', message = 'ID cannot be a nil uuid';
  end if;
  if nullif(p_attributes ->> 'email', '') is not null then
    v_email := auth._normalize_email(p_attributes ->> 'email');
    if exists (select from auth.users where email = v_email) then
      raise exception using errcode = 'AUA03', message = 'A user with this email address has already been registered';
    end if;
    v_providers := v_providers || '["email"]';
  end if;
  if nullif(p_attributes ->> 'phone', '') is not null then
    v_phone := auth._normalize_phone(p_attributes ->> 'phone');
    if exists (select from auth.users where phone = v_phone) then
      raise exception using errcode = 'AUA05', message = 'A user with this phone number has already been registered';
    end if;
    v_providers := v_providers || '["phone"]';
  end if;
  v_identity_data := pg_catalog.jsonb_build_object('sub', v_id, 'email_verified', v_confirmed and v_email is not null,
                                                   'phone_verified', v_phone_confirmed and v_phone is not null)
                     || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('email', v_email, 'phone', v_phone));
  insert into auth.users (
    id, aud, role, email, phone, encrypted_password, email_confirmed_at, phone_confirmed_at, raw_app_meta_data,
    raw_user_meta_data, banned_until
  ) values (
    v_id, coalesce(p_attributes ->> 'aud', v_settings.jwt_aud), coalesce(p_attributes ->> 'role', v_settings.jwt_default_role),
    v_email, v_phone, p_password_hash, case when v_confirmed and v_email is not null then pg_catalog.now() end,
    case when v_phone_confirmed and v_phone is not null then pg_catalog.now() end,
    coalesce(p_attributes -> 'app_metadata', '{}')
      || pg_catalog.jsonb_build_object('provider', v_providers -> 0, 'providers', v_providers),
    coalesce(p_attributes -> 'user_metadata', '{}') || v_identity_data,
    case when p_ban_seconds > 0 then pg_catalog.now() + pg_catalog.make_interval(secs => p_ban_seconds) end
  )
  returning * into v_user;
  if v_email is not null then
    insert into auth.identities (provider_id, user_id, identity_data, provider)
    values (v_id::text, v_id, v_identity_data - 'phone', 'email');
  end if;
  if v_phone is not null then
    insert into auth.identities (provider_id, user_id, identity_data, provider)
    values (v_id::text, v_id, v_identity_data - 'email', 'phone');
  end if;
  perform auth._audit_admin('user_signedup', v_user, p_ip);
  return auth._user_json(v_user);
end
$$;

ALTER FUNCTION auth.admin_create_user(p_admin_token text, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_create_user(p_admin_token text, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_create_user(p_admin_token text, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet) IS 'POST /admin/users: email, email_confirm, phone, phone_confirm, user_metadata, app_metadata, role, aud, id; password hashed by the service or imported (bcrypt/argon2); ban for p_ban_seconds.';

--
-- Name: admin_delete_factor(text, uuid, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_delete_factor(p_admin_token text, p_user_id uuid, p_factor_id uuid, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
  v_factor auth.mfa_factors;
begin
  perform auth._require_admin(p_admin_token);
  v_user := auth._admin_user(p_user_id);
  v_factor := auth._factor_of(p_user_id, p_factor_id);
  perform auth._remove_factor(v_user, v_factor);
  perform auth._audit(v_user, 'factor_deleted_by_admin', 'admin', p_ip,
                      pg_catalog.jsonb_build_object('factor_id', v_factor.id));
  return auth._factor_json(v_factor);
end
$$;

ALTER FUNCTION auth.admin_delete_factor(p_admin_token text, p_user_id uuid, p_factor_id uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_delete_factor(p_admin_token text, p_user_id uuid, p_factor_id uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_delete_factor(p_admin_token text, p_user_id uuid, p_factor_id uuid, p_ip inet) IS 'DELETE /admin/users/{id}/factors/{factor_id}: answers the deleted factor.';

--
-- Name: admin_delete_passkey(text, uuid, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_delete_passkey(p_admin_token text, p_user_id uuid, p_passkey_id uuid, p_ip inet DEFAULT NULL::inet) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
  v_credential auth.webauthn_credentials;
begin
  perform auth._require_admin(p_admin_token);
  v_user := auth._admin_user(p_user_id);
  v_credential := auth._passkey_of(p_user_id, p_passkey_id);
  delete from auth.webauthn_credentials where id = v_credential.id;
  perform auth._audit_admin('passkey_deleted', v_user, p_ip, pg_catalog.jsonb_build_object('passkey_id', v_credential.id));
end
$$;

ALTER FUNCTION auth.admin_delete_passkey(p_admin_token text, p_user_id uuid, p_passkey_id uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_delete_passkey(p_admin_token text, p_user_id uuid, p_passkey_id uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_delete_passkey(p_admin_token text, p_user_id uuid, p_passkey_id uuid, p_ip inet) IS 'DELETE /admin/users/{id}/passkeys/{passkey_id} (audited passkey_deleted, the admin as actor).';

--
-- Name: admin_delete_user(text, uuid, boolean, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_delete_user(p_admin_token text, p_user_id uuid, p_soft boolean DEFAULT false, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
begin
  perform auth._require_admin(p_admin_token);
  v_user := auth._admin_user(p_user_id);
  perform auth._audit_admin('user_deleted', v_user, p_ip, pg_catalog.jsonb_build_object('soft', p_soft));
  perform auth._delete_user(v_user, p_soft);
  return '{}';
end
$$;

ALTER FUNCTION auth.admin_delete_user(p_admin_token text, p_user_id uuid, p_soft boolean, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_delete_user(p_admin_token text, p_user_id uuid, p_soft boolean, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_delete_user(p_admin_token text, p_user_id uuid, p_soft boolean, p_ip inet) IS 'DELETE /admin/users/{id}: removes the user, or with p_soft keeps the row, freed of address, secrets and sessions.';

--
-- Name: admin_generate_link(text, text, text, text, text, jsonb, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_generate_link(p_admin_token text, p_type text, p_email text, p_new_email text DEFAULT NULL::text, p_password_hash text DEFAULT NULL::text, p_data jsonb DEFAULT '{}'::jsonb, p_redirect_to text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_email text := auth._normalize_email(p_email);
  v_type text := p_type;
  v_user auth.users;
  v_token_type text;
  v_address text := v_email;
  v_token record;
begin
  perform auth._require_admin(p_admin_token);
  if v_type not in ('signup', 'invite', 'magiclink', 'recovery', 'email_change_current', 'email_change_new') then
    raise exception using errcode = 'AUA04', message = pg_catalog.format('Invalid email action link type requested: %s', p_type);
  end if;
  select * into v_user from auth.users where email = v_email;
  if not found then
    if v_type in ('recovery', 'email_change_current', 'email_change_new') then
      raise exception using errcode = 'AUA02', message = 'User with this email not found';
    end if;
    if v_type = 'magiclink' then
      v_type := 'signup';  -- as GoTrue: a magic link for a new address signs it up
    end if;
    if v_type = 'signup' and p_password_hash is null then
      raise exception using errcode = 'AUA04', message = 'Password is required for signup links';
    end if;
    v_user := auth._new_email_user(v_email, p_password_hash, p_data, p_ip);
  elsif v_type in ('signup', 'invite') and v_user.email_confirmed_at is not null then
    raise exception using errcode = 'AUA03', message = 'A user with this email address has already been registered';
  end if;

  v_token_type := case v_type when 'signup' then 'confirmation' else v_type end;
  if v_type like 'email_change%' then
    if p_new_email is null then
      raise exception using errcode = 'AUA04', message = 'The new email address is required';
    end if;
    update auth.users set email_change = auth._normalize_email(p_new_email), email_change_confirm_status = 0
     where id = v_user.id returning * into v_user;
    v_address := case v_type when 'email_change_new' then v_user.email_change else v_user.email end;
  elsif v_type = 'invite' then
    update auth.users set invited_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  end if;
  select * into v_token from auth._issue_token(v_user, v_token_type, v_address, p_redirect_to);
  perform auth._audit_admin('generate_link', v_user, p_ip, pg_catalog.jsonb_build_object('type', v_type));
  return auth._user_json(v_user) || pg_catalog.jsonb_build_object(
    'email_otp', v_token.code, 'hashed_token', v_token.link_token,
    'verification_type', v_type, 'redirect_to', p_redirect_to);
end
$$;

ALTER FUNCTION auth.admin_generate_link(p_admin_token text, p_type text, p_email text, p_new_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_generate_link(p_admin_token text, p_type text, p_email text, p_new_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_generate_link(p_admin_token text, p_type text, p_email text, p_new_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_ip inet) IS 'POST /admin/generate_link: issues the token a flow would email, and returns it with the user instead of sending it.';

--
-- Name: admin_get_user(text, uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_get_user(p_admin_token text, p_user_id uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform auth._require_admin(p_admin_token);
  return auth._user_json(auth._admin_user(p_user_id));
end
$$;

ALTER FUNCTION auth.admin_get_user(p_admin_token text, p_user_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_get_user(p_admin_token text, p_user_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_get_user(p_admin_token text, p_user_id uuid) IS 'GET /admin/users/{id}.';

--
-- Name: admin_invite_user(text, text, jsonb, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_invite_user(p_admin_token text, p_email text, p_data jsonb DEFAULT '{}'::jsonb, p_redirect_to text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
begin
  perform auth._require_admin(p_admin_token);
  select * into v_user from auth.users where email = v_email;
  if found and v_user.email_confirmed_at is not null then
    raise exception using errcode = 'AUA03', message = 'A user with this email address has already been registered';
  end if;
  if not found then
    v_user := auth._new_email_user(v_email, null, p_data, p_ip);
  end if;
  update auth.users set invited_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._queue_email(v_user, 'invite', v_email, p_redirect_to);
  perform auth._audit_admin('user_invited', v_user, p_ip);
  return auth._user_json(auth._admin_user(v_user.id));
end
$$;

ALTER FUNCTION auth.admin_invite_user(p_admin_token text, p_email text, p_data jsonb, p_redirect_to text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_invite_user(p_admin_token text, p_email text, p_data jsonb, p_redirect_to text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_invite_user(p_admin_token text, p_email text, p_data jsonb, p_redirect_to text, p_ip inet) IS 'POST /invite: creates (or re-invites) an unconfirmed user and emails the invitation.';

--
-- Name: admin_list_factors(text, uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_list_factors(p_admin_token text, p_user_id uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform auth._require_admin(p_admin_token);
  perform auth._admin_user(p_user_id);
  return coalesce((select pg_catalog.jsonb_agg(auth._factor_json(f) order by f.created_at)
                     from auth.mfa_factors f where f.user_id = p_user_id), '[]'::jsonb);
end
$$;

ALTER FUNCTION auth.admin_list_factors(p_admin_token text, p_user_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_list_factors(p_admin_token text, p_user_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_list_factors(p_admin_token text, p_user_id uuid) IS 'GET /admin/users/{id}/factors.';

--
-- Name: admin_list_passkeys(text, uuid); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_list_passkeys(p_admin_token text, p_user_id uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform auth._require_admin(p_admin_token);
  perform auth._admin_user(p_user_id);
  return coalesce((select pg_catalog.jsonb_agg(auth._passkey_json(c) order by c.created_at)
                     from auth.webauthn_credentials c where c.user_id = p_user_id and c.factor_id is null),
                  '[]'::jsonb);
end
$$;

ALTER FUNCTION auth.admin_list_passkeys(p_admin_token text, p_user_id uuid) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_list_passkeys(p_admin_token text, p_user_id uuid); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_list_passkeys(p_admin_token text, p_user_id uuid) IS 'GET /admin/users/{id}/passkeys.';

--
-- Name: admin_list_users(text, integer, integer, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_list_users(p_admin_token text, p_page integer DEFAULT 1, p_per_page integer DEFAULT 50, p_filter text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_filter text := '%' || coalesce(p_filter, '') || '%';
begin
  perform auth._require_admin(p_admin_token);
  if p_page < 1 or p_per_page < 1 or p_per_page > 1000 then
    raise exception using errcode = 'AUA04', message = 'Bad Pagination Parameters';
  end if;
  return pg_catalog.jsonb_build_object(
    'aud', (select s.jwt_aud from auth.settings s),
    'total', (select pg_catalog.count(*) from auth.users u
               where p_filter is null or u.email ilike v_filter or u.raw_user_meta_data ->> 'full_name' ilike v_filter),
    'users', coalesce((
      select pg_catalog.jsonb_agg(auth._user_json(u) order by u.created_at desc, u.id)
        from (select * from auth.users u
               where p_filter is null or u.email ilike v_filter or u.raw_user_meta_data ->> 'full_name' ilike v_filter
               order by u.created_at desc, u.id
               limit p_per_page offset (p_page - 1) * p_per_page) u), '[]'::jsonb));
end
$$;

ALTER FUNCTION auth.admin_list_users(p_admin_token text, p_page integer, p_per_page integer, p_filter text) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_list_users(p_admin_token text, p_page integer, p_per_page integer, p_filter text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_list_users(p_admin_token text, p_page integer, p_per_page integer, p_filter text) IS 'GET /admin/users: a page of users, newest first ({users, aud, total}); filter matches email or full_name.';

--
-- Name: admin_update_user(text, uuid, jsonb, text, bigint, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.admin_update_user(p_admin_token text, p_user_id uuid, p_attributes jsonb, p_password_hash text DEFAULT NULL::text, p_ban_seconds bigint DEFAULT NULL::bigint, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
  v_email text;
  v_phone text;
begin
  perform auth._require_admin(p_admin_token);
  v_user := auth._admin_user(p_user_id);
  if nullif(p_attributes ->> 'phone', '') is not null then
    v_phone := auth._normalize_phone(p_attributes ->> 'phone');
    if v_phone is distinct from v_user.phone then
      if exists (select from auth.users where phone = v_phone and id <> v_user.id) then
        raise exception using errcode = 'AUA05', message = 'A user with this phone number has already been registered';
      end if;
      update auth.users set phone = v_phone, phone_change = '', phone_confirmed_at = null, updated_at = pg_catalog.now(),
             raw_user_meta_data = raw_user_meta_data || pg_catalog.jsonb_build_object('phone', v_phone, 'phone_verified', false)
       where id = v_user.id returning * into v_user;
      insert into auth.identities (provider_id, user_id, identity_data, provider)
      values (v_user.id::text, v_user.id, pg_catalog.jsonb_build_object(
                'sub', v_user.id, 'phone', v_phone, 'email_verified', false, 'phone_verified', false), 'phone')
      on conflict (provider_id, provider) do update
         set identity_data = auth.identities.identity_data
                             || pg_catalog.jsonb_build_object('phone', v_phone, 'phone_verified', false),
             updated_at = pg_catalog.now();
      if not coalesce(v_user.raw_app_meta_data -> 'providers', '[]') ? 'phone' then
        update auth.users
           set raw_app_meta_data = raw_app_meta_data || pg_catalog.jsonb_build_object(
                 'provider', coalesce(raw_app_meta_data -> 'provider', '"phone"'),
                 'providers', coalesce(raw_app_meta_data -> 'providers', '[]') || '["phone"]')
         where id = v_user.id returning * into v_user;
      end if;
    end if;
  end if;
  if coalesce((p_attributes ->> 'phone_confirm')::boolean, false) and v_user.phone is not null then
    v_user := auth._confirm_phone(v_user);
  end if;
  if p_attributes ->> 'email' is not null then
    v_email := auth._normalize_email(p_attributes ->> 'email');
    if v_email is distinct from v_user.email then
      if exists (select from auth.users where email = v_email and id <> v_user.id) then
        raise exception using errcode = 'AUA03', message = 'A user with this email address has already been registered';
      end if;
      update auth.users set email = v_email, email_change = '', updated_at = pg_catalog.now(),
             raw_user_meta_data = raw_user_meta_data || pg_catalog.jsonb_build_object('email', v_email)
       where id = v_user.id returning * into v_user;
      update auth.identities set identity_data = identity_data || pg_catalog.jsonb_build_object('email', v_email)
       where user_id = v_user.id and provider = 'email';
    end if;
  end if;
  if coalesce((p_attributes ->> 'email_confirm')::boolean, false) then
    v_user := auth._confirm_email(v_user);
  end if;
  update auth.users
     set raw_user_meta_data = auth._merge_metadata(raw_user_meta_data, p_attributes -> 'user_metadata'),
         raw_app_meta_data = auth._merge_metadata(raw_app_meta_data, p_attributes -> 'app_metadata'),
         role = coalesce(p_attributes ->> 'role', role),
         banned_until = case when p_ban_seconds is null then banned_until
                             when p_ban_seconds = 0 then null
                             else pg_catalog.now() + pg_catalog.make_interval(secs => p_ban_seconds) end,
         updated_at = pg_catalog.now()
   where id = v_user.id
  returning * into v_user;
  if p_ban_seconds > 0 then
    delete from auth.sessions where user_id = v_user.id;
    perform auth._audit_admin('user_banned', v_user, p_ip,
                              pg_catalog.jsonb_build_object('banned_until', v_user.banned_until));
  elsif p_ban_seconds = 0 then
    perform auth._audit_admin('user_unbanned', v_user, p_ip);
  end if;
  if p_password_hash is not null then
    update auth.users set encrypted_password = p_password_hash where id = v_user.id returning * into v_user;
    delete from auth.sessions where user_id = v_user.id;
    perform auth._audit_admin('user_updated_password', v_user, p_ip);
    perform auth._user_event(v_user.id, 'password_changed');
  end if;
  if p_attributes <> '{}' then
    perform auth._audit_admin('user_modified', v_user, p_ip,
                              pg_catalog.jsonb_build_object('fields', (select pg_catalog.jsonb_agg(k) from pg_catalog.jsonb_object_keys(p_attributes) k)));
  end if;
  return auth._user_json(v_user);
end
$$;

ALTER FUNCTION auth.admin_update_user(p_admin_token text, p_user_id uuid, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION admin_update_user(p_admin_token text, p_user_id uuid, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.admin_update_user(p_admin_token text, p_user_id uuid, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet) IS 'PUT /admin/users/{id}: email (and email_confirm), phone (and phone_confirm), metadata (merged), role, password (ends the user''s sessions), ban for p_ban_seconds (0 lifts a ban; a ban ends the sessions).';

--
-- Name: algorithm_sign(text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.algorithm_sign(signables text, secret text, algorithm text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN auth.url_encode(auth._hmac(convert_to(signables, 'UTF8'::name), convert_to(secret, 'UTF8'::name), CASE algorithm WHEN 'HS256'::text THEN 'sha256'::text WHEN 'HS384'::text THEN 'sha384'::text WHEN 'HS512'::text THEN 'sha512'::text ELSE NULL::text END));

ALTER FUNCTION auth.algorithm_sign(signables text, secret text, algorithm text) OWNER TO authgres_owner;

--
-- Name: FUNCTION algorithm_sign(signables text, secret text, algorithm text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.algorithm_sign(signables text, secret text, algorithm text) IS 'base64url HMAC signature of signables: HS256, HS384 or HS512; NULL for any other algorithm.';

--
-- Name: authenticate(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.authenticate(p_token text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_claims jsonb := auth.access_token_claims(p_token);
begin
  perform pg_catalog.set_config('request.jwt.claims', v_claims::text, true);
  perform pg_catalog.set_config('role', coalesce(v_claims ->> 'role', 'anon'), true);
  return v_claims;
end
$$;

ALTER FUNCTION auth.authenticate(p_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION authenticate(p_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.authenticate(p_token text) IS 'For applications that connect without PostgREST: verifies an access token, then sets request.jwt.claims and the token''s role for the rest of the transaction, so RLS policies using auth.uid() apply. The connecting role must be a member of authgres_authenticator and of the token''s role (grant authgres_authenticator, authenticated, anon to app_login).';

--
-- Name: authenticate_api_key(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.authenticate_api_key(p_key text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if p_key not like 'ag\_%' then
    raise exception using errcode = 'AUJ01', message = 'invalid API key: unknown, revoked or expired';
  end if;
  return auth.authenticate(p_key);
end
$$;

ALTER FUNCTION auth.authenticate_api_key(p_key text) OWNER TO authgres_owner;

--
-- Name: FUNCTION authenticate_api_key(p_key text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.authenticate_api_key(p_key text) IS 'auth.authenticate() for an API key: sets request.jwt.claims and the role for the transaction, so RLS applies to scripts.';

--
-- Name: challenge_factor(text, uuid, inet, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.challenge_factor(p_access_token text, p_factor_id uuid, p_ip inet DEFAULT NULL::inet, p_channel text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_ctx record;
  v_factor auth.mfa_factors;
  v_challenge auth.mfa_challenges;
  v_sent jsonb := '{}';
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_factor := auth._factor_of((v_ctx.usr).id, p_factor_id);
  if v_factor.factor_type = 'recovery_code' then
    raise exception using errcode = 'AUV01', message = 'Recovery codes are verified at POST /factors/recovery-codes/verify';
  end if;
  if v_factor.factor_type = 'email' then
    v_challenge := auth._issue_mfa_email(v_ctx.usr, v_factor, (v_ctx.sess).id, p_ip);
  elsif v_factor.factor_type = 'phone' then
    if not v_settings.mfa_phone_verify_enabled then
      raise exception using errcode = 'AUM12', message = 'MFA verification is disabled for Phone';
    end if;
    perform auth._throttle_sms(v_factor.phone, 'mfa_phone');
    v_sent := auth._queue_sms(v_ctx.usr, 'mfa_phone', v_factor.phone, p_channel, true) - 'message_id';
    insert into auth.mfa_challenges (factor_id, session_id, expires_at, ip_address, code_digest)
    values (v_factor.id, (v_ctx.sess).id,
            pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry), p_ip,
            (select t.token_digest from auth.one_time_tokens t where t.user_id = (v_ctx.usr).id and t.token_type = 'mfa_phone'))
    returning * into v_challenge;
    update auth.mfa_factors set last_challenged_at = pg_catalog.now() where id = v_factor.id;
  elsif v_factor.factor_type = 'webauthn' then
    return auth._challenge_webauthn_factor(v_ctx.usr, (v_ctx.sess).id, v_factor, p_ip);
  else
    insert into auth.mfa_challenges (factor_id, session_id, expires_at, ip_address)
    values (v_factor.id, (v_ctx.sess).id,
            pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry), p_ip)
    returning * into v_challenge;
    update auth.mfa_factors set last_challenged_at = pg_catalog.now() where id = v_factor.id;
  end if;
  return pg_catalog.jsonb_build_object('id', v_challenge.id, 'type', v_factor.factor_type,
                                       'expires_at', auth._epoch(v_challenge.expires_at)) || v_sent;
end
$$;

ALTER FUNCTION auth.challenge_factor(p_access_token text, p_factor_id uuid, p_ip inet, p_channel text) OWNER TO authgres_owner;

--
-- Name: FUNCTION challenge_factor(p_access_token text, p_factor_id uuid, p_ip inet, p_channel text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.challenge_factor(p_access_token text, p_factor_id uuid, p_ip inet, p_channel text) IS 'POST /factors/{id}/challenge: {id, type, expires_at}; an email factor also gets its code emailed, a phone factor its code texted by p_channel (sms or whatsapp; the text leased to the caller in {sms}); a WebAuthn factor''s answer carries what the service builds its credential options from.';

--
-- Name: email_outbox; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.email_outbox (
    id bigint NOT NULL,
    kind text NOT NULL,
    to_address text NOT NULL,
    user_id uuid,
    payload jsonb NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    leased_until timestamp with time zone,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    sent_at timestamp with time zone,
    CONSTRAINT email_outbox_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'sending'::text, 'sent'::text, 'dead'::text])))
);

ALTER TABLE auth.email_outbox OWNER TO authgres_owner;

--
-- Name: TABLE email_outbox; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.email_outbox IS 'Emails to deliver, written in the transaction that needs them. pending -> sending (leased to one mailer) -> sent, or back to pending with a later next_attempt_at, or dead after the last attempt.';

--
-- Name: COLUMN email_outbox.payload; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.email_outbox.payload IS 'Template variables. The code and link token are removed once the email is sent or given up.';

--
-- Name: claim_outbox(integer, integer); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.claim_outbox(p_limit integer DEFAULT 10, p_lease_seconds integer DEFAULT 60) RETURNS SETOF auth.email_outbox
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  -- SKIP LOCKED lets several mailers drain one outbox; the lease hands an email whose mailer died
  -- mid-send to another one later.
  return query
  update auth.email_outbox o
     set status = 'sending', attempts = o.attempts + 1,
         leased_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_seconds)
   where o.id in (
     select d.id from auth.email_outbox d
      where (d.status = 'pending' and d.next_attempt_at <= pg_catalog.now())
         or (d.status = 'sending' and d.leased_until <= pg_catalog.now())
      order by d.id
      limit p_limit
      for update skip locked)
  returning o.*;
end
$$;

ALTER FUNCTION auth.claim_outbox(p_limit integer, p_lease_seconds integer) OWNER TO authgres_owner;

--
-- Name: FUNCTION claim_outbox(p_limit integer, p_lease_seconds integer); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.claim_outbox(p_limit integer, p_lease_seconds integer) IS 'Leases up to p_limit due emails to the calling mailer.';

--
-- Name: sms_outbox; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.sms_outbox (
    id bigint NOT NULL,
    message_id uuid DEFAULT gen_random_uuid() NOT NULL,
    kind text NOT NULL,
    channel text DEFAULT 'sms'::text NOT NULL,
    to_phone text NOT NULL,
    user_id uuid,
    payload jsonb NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    leased_until timestamp with time zone,
    last_error text,
    provider_message_id text,
    created_user boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    sent_at timestamp with time zone,
    pending_signup_id uuid,
    CONSTRAINT sms_outbox_channel_check CHECK ((channel = ANY (ARRAY['sms'::text, 'whatsapp'::text]))),
    CONSTRAINT sms_outbox_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'sending'::text, 'sent'::text, 'dead'::text]))),
    CONSTRAINT sms_outbox_to_phone_check CHECK ((to_phone ~ '^[1-9][0-9]{1,14}$'::text))
);

ALTER TABLE auth.sms_outbox OWNER TO authgres_owner;

--
-- Name: TABLE sms_outbox; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.sms_outbox IS 'Texts (SMS or WhatsApp) to deliver, written in the transaction that issued their code. pending -> sending (leased to one sender) -> sent, or back to pending with a later next_attempt_at, or dead after the last attempt or when the provider refuses the number.';

--
-- Name: COLUMN sms_outbox.message_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.sms_outbox.message_id IS 'The id POST /otp and /resend answer (message_id); not the provider''s.';

--
-- Name: COLUMN sms_outbox.payload; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.sms_outbox.payload IS 'The code ({"code": ...}); removed once the text is sent or given up.';

--
-- Name: COLUMN sms_outbox.provider_message_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.sms_outbox.provider_message_id IS 'The provider''s id of the delivered message (Twilio''s SID ...).';

--
-- Name: COLUMN sms_outbox.created_user; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.sms_outbox.created_user IS 'The request that queued this text also created its user: when the provider refuses the number, that user (never confirmed, never signed in) is removed with it.';

--
-- Name: COLUMN sms_outbox.pending_signup_id; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.sms_outbox.pending_signup_id IS 'The pending sign-up whose code this text carries: when the provider refuses the number, it is removed.';

--
-- Name: claim_sms_outbox(integer, integer); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.claim_sms_outbox(p_limit integer DEFAULT 10, p_lease_seconds integer DEFAULT 60) RETURNS SETOF auth.sms_outbox
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return query
  update auth.sms_outbox o
     set status = 'sending', attempts = o.attempts + 1,
         leased_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_seconds)
   where o.id in (
     select d.id from auth.sms_outbox d
      where (d.status = 'pending' and d.next_attempt_at <= pg_catalog.now())
         or (d.status = 'sending' and d.leased_until <= pg_catalog.now())
      order by d.id
      limit p_limit
      for update skip locked)
  returning o.*;
end
$$;

ALTER FUNCTION auth.claim_sms_outbox(p_limit integer, p_lease_seconds integer) OWNER TO authgres_owner;

--
-- Name: FUNCTION claim_sms_outbox(p_limit integer, p_lease_seconds integer); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.claim_sms_outbox(p_limit integer, p_lease_seconds integer) IS 'Leases up to p_limit due texts to the calling sender.';

--
-- Name: complete_outbox(bigint); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.complete_outbox(p_id bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update auth.email_outbox
     set status = 'sent', sent_at = pg_catalog.now(), leased_until = null, last_error = null,
         payload = payload - 'token' - 'token_hash'
   where id = p_id and status = 'sending';
end
$$;

ALTER FUNCTION auth.complete_outbox(p_id bigint) OWNER TO authgres_owner;

--
-- Name: FUNCTION complete_outbox(p_id bigint); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.complete_outbox(p_id bigint) IS 'Marks an email sent and removes its secrets from the outbox.';

--
-- Name: complete_sms_outbox(bigint, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.complete_sms_outbox(p_id bigint, p_provider_message_id text DEFAULT NULL::text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update auth.sms_outbox
     set status = 'sent', sent_at = pg_catalog.now(), leased_until = null, last_error = null,
         provider_message_id = pg_catalog.left(p_provider_message_id, 200), payload = payload - 'code'
   where id = p_id and status = 'sending';
end
$$;

ALTER FUNCTION auth.complete_sms_outbox(p_id bigint, p_provider_message_id text) OWNER TO authgres_owner;

--
-- Name: FUNCTION complete_sms_outbox(p_id bigint, p_provider_message_id text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.complete_sms_outbox(p_id bigint, p_provider_message_id text) IS 'Marks a text sent, keeps the provider''s message id and removes the code from the outbox.';

--
-- Name: complete_twofa(text, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.complete_twofa(p_challenge_token text, p_code text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_challenge auth.mfa_challenges;
  v_factor auth.mfa_factors;
  v_user auth.users;
  v_check record;
  v_session jsonb;
begin
  select * into v_challenge from auth.mfa_challenges
   where login_token_digest = auth._token_hash(coalesce(p_challenge_token, ''));
  if not found then
    raise exception using errcode = 'AUM01', message = 'MFA factor with the provided challenge ID not found';
  end if;
  select * into strict v_factor from auth.mfa_factors where id = v_challenge.factor_id;
  select * into strict v_user from auth.users where id = v_factor.user_id;
  select * into v_check from auth._verify_challenge(v_user, v_factor, v_challenge.id, p_code, p_ip);
  if not v_check.ok then
    return v_check.failure;
  end if;
  delete from auth.mfa_challenges where id = v_challenge.id;  -- the challenge token is single-use too
  v_session := auth._start_session(v_user, 'password', p_user_agent, p_ip);
  return auth._raise_session_aal(
    v_user, (select s from auth.sessions s where s.id = auth._session_of(v_session)), v_factor, v_check.method);
end
$$;

ALTER FUNCTION auth.complete_twofa(p_challenge_token text, p_code text, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION complete_twofa(p_challenge_token text, p_code text, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.complete_twofa(p_challenge_token text, p_code text, p_user_agent text, p_ip inet) IS 'POST /token?grant_type=twofa (strict email 2-step): the challenge_token and the emailed code give an aal2 session.';

--
-- Name: configure(jsonb, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.configure(p_settings jsonb, p_jwt_secret text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_hook text;
begin
  select * into strict v_settings from auth.settings;
  v_settings := pg_catalog.jsonb_populate_record(v_settings, p_settings - 'singleton');
  v_settings.updated_at := pg_catalog.now();
  for v_hook in select unnest(array[v_settings.hook_custom_access_token, v_settings.hook_before_user_created,
                                    v_settings.hook_password_verification_attempt, v_settings.hook_send_email,
                                    v_settings.hook_before_user_deleted, v_settings.hook_send_sms]) loop
    if v_hook is not null and pg_catalog.to_regprocedure(v_hook || '(jsonb)') is null then
      raise exception using errcode = 'AUV01',
        message = pg_catalog.format('Hook function %s(jsonb) does not exist', v_hook);
    end if;
    if v_hook is not null and not exists (
         select from pg_catalog.pg_proc p
          where p.oid = pg_catalog.to_regprocedure(v_hook || '(jsonb)')
            and pg_catalog.has_function_privilege('authgres_hook', p.oid, 'EXECUTE')
            and pg_catalog.has_schema_privilege('authgres_hook', p.pronamespace, 'USAGE')) then
      raise exception using errcode = 'AUV01',
        message = pg_catalog.format('Hook function %s(jsonb) is not executable by authgres_hook, which hooks run as', v_hook);
    end if;
  end loop;
  delete from auth.settings;
  insert into auth.settings select v_settings.*;

  if p_jwt_secret is not null then
    if pg_catalog.length(p_jwt_secret) < 32 then
      raise exception using errcode = 'AUV01', message = 'The JWT secret must be at least 32 characters';
    end if;
    update auth.signing_keys set secret = p_jwt_secret
     where status = 'current' and kid is null and algorithm = 'HS256' and secret <> p_jwt_secret;
    if not exists (select from auth.signing_keys where status = 'current') then
      insert into auth.signing_keys (algorithm, secret, status, mac_key)
      values ('HS256', p_jwt_secret, 'current', auth._random_bytes(32));
    end if;
  end if;
end
$$;

ALTER FUNCTION auth.configure(p_settings jsonb, p_jwt_secret text) OWNER TO authgres_owner;

--
-- Name: FUNCTION configure(p_settings jsonb, p_jwt_secret text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.configure(p_settings jsonb, p_jwt_secret text) IS 'Writes the settings row (members of p_settings override) and the HS256 signing secret. The service calls it at start-up with its environment.';

--
-- Name: create_api_key(text, text, integer, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.create_api_key(p_access_token text, p_name text, p_expires_in integer DEFAULT NULL::integer, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
  v_raw text := 'ag_' || auth.url_encode(auth._random_bytes(32));
  v_key auth.api_keys;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  if p_name is null or pg_catalog.length(pg_catalog.btrim(p_name)) not between 1 and 100 then
    raise exception using errcode = 'AUV01', message = 'An API key needs a name of 1 to 100 characters';
  end if;
  if p_expires_in is not null and p_expires_in <= 0 then
    raise exception using errcode = 'AUV01', message = 'expires_in must be a positive number of seconds';
  end if;
  insert into auth.api_keys (user_id, name, key_prefix, key_digest, expires_at)
  values ((v_ctx.usr).id, pg_catalog.btrim(p_name), pg_catalog.left(v_raw, 9), auth._token_hash(v_raw),
          pg_catalog.now() + pg_catalog.make_interval(secs => p_expires_in))
  returning * into v_key;
  perform auth._audit(v_ctx.usr, 'api_key_created', 'user', p_ip,
                      pg_catalog.jsonb_build_object('api_key_id', v_key.id, 'name', v_key.name));
  return pg_catalog.jsonb_build_object('id', v_key.id, 'name', v_key.name, 'key', v_raw, 'prefix', v_key.key_prefix,
                                       'created_at', v_key.created_at, 'expires_at', v_key.expires_at);
end
$$;

ALTER FUNCTION auth.create_api_key(p_access_token text, p_name text, p_expires_in integer, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION create_api_key(p_access_token text, p_name text, p_expires_in integer, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.create_api_key(p_access_token text, p_name text, p_expires_in integer, p_ip inet) IS 'POST /api_keys: a new key for the signed-in user; the key is in this response and nowhere else.';

--
-- Name: current_password_hash(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.current_password_hash(p_access_token text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return ((auth._authorize(p_access_token, true)).usr).encrypted_password;
end
$$;

ALTER FUNCTION auth.current_password_hash(p_access_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION current_password_hash(p_access_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.current_password_hash(p_access_token text) IS 'The token user''s password hash, for the service to compare a new password with the old one.';

--
-- Name: delete_own_account(text, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.delete_own_account(p_access_token text, p_verified_hash text DEFAULT NULL::text, p_nonce text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_auth record;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  select * into v_auth from auth._signed_in(p_access_token);
  v_user := v_auth.usr;
  -- The hash must still be the one the service verified: a password changed meanwhile wins.
  if p_verified_hash is not null and p_verified_hash is distinct from v_user.encrypted_password then
    raise exception using errcode = 'AUS05', message = 'Invalid login credentials';
  end if;
  if exists (select from auth.mfa_factors where user_id = v_user.id and status = 'verified') then
    -- With MFA, the second factor proven in this session is the proof (as for GoTrue's password change).
    if (v_auth.sess).aal is distinct from 'aal2' then
      raise exception using errcode = 'AUM02', message = 'AAL2 session is required to delete an account with MFA';
    end if;
  elsif v_user.encrypted_password is not null then
    if p_verified_hash is null then
      raise exception using errcode = 'AUE02', message = 'Deleting the account requires the password';
    end if;
  elsif not v_user.is_anonymous then
    perform auth._spend_reauthentication_nonce(v_user, p_nonce, 'Deleting the account requires reauthentication');
  end if;
  if v_settings.hook_before_user_deleted is not null then
    perform auth._call_hook(v_settings.hook_before_user_deleted, pg_catalog.jsonb_build_object(
      'user', auth._user_json(v_user),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip), 'actor', 'self')));
  end if;
  perform auth._audit(v_user, 'user_deleted', 'user', p_ip,
                      pg_catalog.jsonb_build_object('soft', v_settings.account_deletion = 'soft'));
  perform auth._delete_user(v_user, v_settings.account_deletion = 'soft');
end
$$;

ALTER FUNCTION auth.delete_own_account(p_access_token text, p_verified_hash text, p_nonce text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION delete_own_account(p_access_token text, p_verified_hash text, p_nonce text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.delete_own_account(p_access_token text, p_verified_hash text, p_nonce text, p_ip inet) IS 'DELETE /user: the signed-in user deletes their account (hard or soft per account_deletion). A user with verified factors proves it with an aal2 session; otherwise a user with a password by it (p_verified_hash: the hash the service verified it against), one without by a nonce from GET /reauthenticate; an anonymous user needs neither. A password given must be right. The before_user_deleted hook may veto.';

--
-- Name: delete_passkey(text, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.delete_passkey(p_access_token text, p_passkey_id uuid, p_ip inet DEFAULT NULL::inet) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
  v_credential auth.webauthn_credentials;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  perform auth._require_passkey_aal(v_ctx.usr, v_ctx.sess);
  -- Removals of one user queue here, so two cannot each leave the other as the last way in.
  perform from auth.users where id = (v_ctx.usr).id for no key update;
  v_credential := auth._passkey_of((v_ctx.usr).id, p_passkey_id);
  if coalesce((v_ctx.usr).encrypted_password, '') = ''
     and not exists (select from auth.identities where user_id = (v_ctx.usr).id)
     and not exists (select from auth.webauthn_credentials
                      where user_id = (v_ctx.usr).id and factor_id is null and id <> v_credential.id) then
    raise exception using errcode = 'AUW07',
      message = 'This passkey is the only way to sign in to this account: add a password or another passkey first';
  end if;
  delete from auth.webauthn_credentials where id = v_credential.id;
  perform auth._audit(v_ctx.usr, 'passkey_deleted', 'user', p_ip, pg_catalog.jsonb_build_object('passkey_id', v_credential.id));
end
$$;

ALTER FUNCTION auth.delete_passkey(p_access_token text, p_passkey_id uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION delete_passkey(p_access_token text, p_passkey_id uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.delete_passkey(p_access_token text, p_passkey_id uuid, p_ip inet) IS 'DELETE /passkeys/{id}: removes one of the user''s passkeys. AUW06 when it is not theirs; AUW07 when it is the last way in (no password, no identity, no other passkey).';

--
-- Name: email(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.email() RETURNS text
    LANGUAGE sql STABLE
    RETURN COALESCE(NULLIF(current_setting('request.jwt.claim.email'::text, true), ''::text), ((NULLIF(current_setting('request.jwt.claims'::text, true), ''::text))::jsonb ->> 'email'::text));

ALTER FUNCTION auth.email() OWNER TO authgres_owner;

--
-- Name: FUNCTION email(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.email() IS 'The email claim of the request''s JWT.';

--
-- Name: end_session(text, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.end_session(p_access_token text, p_session_id uuid, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  delete from auth.sessions where id = p_session_id and user_id = (v_ctx.usr).id;
  if not found then
    raise exception using errcode = 'AUJ04', message = 'Session not found';
  end if;
  perform auth._audit(v_ctx.usr, 'logout', 'account', p_ip,
                      pg_catalog.jsonb_build_object('scope', 'session', 'session_id', p_session_id));
  return pg_catalog.jsonb_build_object('id', p_session_id);
end
$$;

ALTER FUNCTION auth.end_session(p_access_token text, p_session_id uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION end_session(p_access_token text, p_session_id uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.end_session(p_access_token text, p_session_id uuid, p_ip inet) IS 'DELETE /sessions/{id}: ends one of the caller''s sessions.';

--
-- Name: enroll_factor(text, text, text, inet, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.enroll_factor(p_access_token text, p_factor_type text, p_friendly_name text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_phone text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_ctx record;
  v_factor auth.mfa_factors;
  v_abandoned uuid;
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  if p_factor_type = 'phone' and not v_settings.mfa_phone_enroll_enabled then
    raise exception using errcode = 'AUM11', message = 'MFA enroll is disabled for Phone';
  end if;
  if p_factor_type = 'webauthn' and not v_settings.mfa_web_authn_enabled then
    raise exception using errcode = 'AUM13', message = 'MFA enroll is disabled for WebAuthn';
  end if;
  if p_factor_type not in ('totp', 'email', 'phone', 'webauthn') or (p_factor_type = 'email' and v_settings.mfa_email = 'off') then
    raise exception using errcode = 'AUV01', message = 'factor_type needs to be totp'
      || case when v_settings.mfa_phone_enroll_enabled then ', phone' else '' end
      || case when v_settings.mfa_web_authn_enabled then ', webauthn' else '' end
      || case when v_settings.mfa_email = 'off' then '' else ' or email' end;
  end if;
  if exists (select from auth.mfa_factors where user_id = (v_ctx.usr).id and status = 'verified')
     and (v_ctx.sess).aal = 'aal1' then
    raise exception using errcode = 'AUM02', message = 'AAL2 required to enroll a new factor';
  end if;
  -- Unverified factors older than a challenge's lifetime were abandoned half-way.
  for v_abandoned in
    delete from auth.mfa_factors
     where user_id = (v_ctx.usr).id and status = 'unverified'
       and created_at < pg_catalog.now() - pg_catalog.make_interval(secs => v_settings.mfa_challenge_expiry)
    returning id
  loop
    perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                             pg_catalog.jsonb_build_object('factor_id', v_abandoned, 'action', 'removed'));
  end loop;
  if (select pg_catalog.count(*) from auth.mfa_factors where user_id = (v_ctx.usr).id)
     >= v_settings.mfa_max_enrolled_factors then
    raise exception using errcode = 'AUM05', message = 'Maximum number of verified factors reached, unenroll to continue';
  end if;
  if p_factor_type = 'email' then
    if (v_ctx.usr).email_confirmed_at is null then
      raise exception using errcode = 'AUE04', message = 'Please verify your email first.';
    end if;
    v_factor := auth._email_factor(v_ctx.usr);
    return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'email', 'friendly_name', v_factor.friendly_name);
  end if;
  begin
    if p_factor_type = 'phone' then
      insert into auth.mfa_factors (user_id, friendly_name, factor_type, phone)
      values ((v_ctx.usr).id, coalesce(p_friendly_name, ''), 'phone', auth._normalize_phone(p_phone))
      returning * into v_factor;
    else
      insert into auth.mfa_factors (user_id, friendly_name, factor_type, secret)
      values ((v_ctx.usr).id, coalesce(p_friendly_name, ''), p_factor_type,
              case p_factor_type when 'totp' then auth._random_bytes(20) end)
      returning * into v_factor;
    end if;
  exception when unique_violation then
    raise exception using errcode = 'AUM04',
      message = pg_catalog.format('A factor with the friendly name "%s" for this user already exists', p_friendly_name);
  end;
  perform auth._audit(v_ctx.usr, 'factor_enrolled', 'user', p_ip, pg_catalog.jsonb_build_object('factor_id', v_factor.id));
  perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                           pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'enrolled'));
  if p_factor_type = 'phone' then
    return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'phone', 'friendly_name', v_factor.friendly_name,
                                         'phone', v_factor.phone);
  end if;
  if p_factor_type = 'webauthn' then  -- its credential is registered by the first challenge's answer
    return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'webauthn', 'friendly_name', v_factor.friendly_name);
  end if;
  -- The secret leaves the database this once, for the QR code; the service formats it.
  return pg_catalog.jsonb_build_object('id', v_factor.id, 'type', 'totp', 'friendly_name', v_factor.friendly_name,
                                       'secret', pg_catalog.encode(v_factor.secret, 'hex'), 'account', (v_ctx.usr).email);
end
$$;

ALTER FUNCTION auth.enroll_factor(p_access_token text, p_factor_type text, p_friendly_name text, p_ip inet, p_phone text) OWNER TO authgres_owner;

--
-- Name: FUNCTION enroll_factor(p_access_token text, p_factor_type text, p_friendly_name text, p_ip inet, p_phone text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.enroll_factor(p_access_token text, p_factor_type text, p_friendly_name text, p_ip inet, p_phone text) IS 'POST /factors: a new unverified TOTP factor (its secret returned once, hex), a phone factor for p_phone (AUM11 when mfa_phone_enroll_enabled is off), a WebAuthn factor (AUM13 when not enabled), or the email factor.';

--
-- Name: exchange_auth_code(text, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.exchange_auth_code(p_auth_code text, p_code_verifier text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_flow auth.flow_state;
  v_user auth.users;
begin
  if coalesce(p_auth_code, '') = '' or coalesce(p_code_verifier, '') = '' then
    raise exception using errcode = 'AUV01',
      message = 'invalid request: both auth code and code verifier should be non-empty';
  end if;
  -- Deleted first: a concurrent exchange of the same code waits on this row and then finds it gone, so a
  -- code gives one session. A check that fails below rolls the delete back with everything else.
  delete from auth.flow_state where auth_code_digest = auth._token_hash(p_auth_code) returning * into v_flow;
  if not found then
    raise exception using errcode = 'AUF01', message = 'invalid flow state, no valid flow state found';
  end if;
  if v_flow.auth_code_issued_at + pg_catalog.make_interval(secs => (select s.flow_state_expiry from auth.settings s))
     <= pg_catalog.now() then
    raise exception using errcode = 'AUF02', message = 'invalid flow state, flow state has expired';
  end if;
  if not auth._pkce_verifier_matches(v_flow, p_code_verifier) then
    raise exception using errcode = 'AUF03', message = 'code challenge does not match previously saved code verifier';
  end if;
  select * into v_user from auth.users where id = v_flow.user_id and deleted_at is null;
  if not found then  -- the account was (soft) deleted since the link was followed
    raise exception using errcode = 'AUF01', message = 'invalid flow state, no valid flow state found';
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;
  if v_flow.pending_link is not null then  -- a provider link, made only now, by the verifier's holder
    v_user := auth._identity_user(v_flow.pending_link ->> 'provider', v_flow.pending_link ->> 'subject',
                                  v_flow.pending_link -> 'claims', v_user.id, p_ip);
  end if;
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip, pg_catalog.jsonb_build_object(
    'provider', v_flow.provider_type, 'via', 'pkce', 'authentication_method', v_flow.authentication_method));
  -- A provider flow's session is an oauth sign-in, and hands back the provider's tokens, still sealed
  -- (the service opens them: the key is not the database's).
  return auth._start_session(v_user, case v_flow.authentication_method when 'oauth' then 'oauth' else 'otp' end,
                             p_user_agent, p_ip)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
         'sealed_provider_token', pg_catalog.encode(v_flow.provider_access_token, 'base64'),
         'sealed_provider_refresh_token', pg_catalog.encode(v_flow.provider_refresh_token, 'base64')));
end
$$;

ALTER FUNCTION auth.exchange_auth_code(p_auth_code text, p_code_verifier text, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION exchange_auth_code(p_auth_code text, p_code_verifier text, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.exchange_auth_code(p_auth_code text, p_code_verifier text, p_user_agent text, p_ip inet) IS 'POST /token?grant_type=pkce: the session for a flow''s auth code and its code verifier; the flow ends (single use, concurrently too). AUF01 unknown or spent code, AUF02 expired (flow_state_expiry seconds after the code was issued), AUF03 a verifier that does not match; those leave the flow as it was. A provider flow''s answer also holds the provider''s tokens as sealed (sealed_provider_token, sealed_provider_refresh_token, base64), for the service to open; a provider link''s identity is added to the user here (AUI01 when it is another user''s).';

--
-- Name: fail_outbox(bigint, text, integer, double precision); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.fail_outbox(p_id bigint, p_error text, p_max_attempts integer DEFAULT 8, p_retry_base_seconds double precision DEFAULT 5) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update auth.email_outbox
     set status = case when attempts >= p_max_attempts then 'dead' else 'pending' end,
         payload = case when attempts >= p_max_attempts then payload - 'token' - 'token_hash' else payload end,
         last_error = pg_catalog.left(p_error, 1000), leased_until = null,
         next_attempt_at = pg_catalog.now()
           + pg_catalog.make_interval(secs => least(p_retry_base_seconds * 2 ^ (attempts - 1), 3600))
   where id = p_id and status = 'sending';
end
$$;

ALTER FUNCTION auth.fail_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision) OWNER TO authgres_owner;

--
-- Name: FUNCTION fail_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.fail_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision) IS 'Records a failed delivery: retried with exponential backoff, dead (with last_error kept) after p_max_attempts.';

--
-- Name: fail_sms_outbox(bigint, text, integer, double precision); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.fail_sms_outbox(p_id bigint, p_error text, p_max_attempts integer DEFAULT 8, p_retry_base_seconds double precision DEFAULT 5) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update auth.sms_outbox
     set status = case when attempts >= p_max_attempts then 'dead' else 'pending' end,
         payload = case when attempts >= p_max_attempts then payload - 'code' else payload end,
         last_error = pg_catalog.left(p_error, 1000), leased_until = null,
         next_attempt_at = pg_catalog.now()
           + pg_catalog.make_interval(secs => least(p_retry_base_seconds * 2 ^ (attempts - 1), 3600))
   where id = p_id and status = 'sending';
end
$$;

ALTER FUNCTION auth.fail_sms_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision) OWNER TO authgres_owner;

--
-- Name: FUNCTION fail_sms_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.fail_sms_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision) IS 'Records a failed delivery the provider may accept later (it was down): retried with exponential backoff, dead (with last_error kept) after p_max_attempts.';

--
-- Name: get_users(text[]); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.get_users(p_access_tokens text[]) RETURNS jsonb[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_users jsonb[] := '{}';
begin
  for i in 1 .. coalesce(pg_catalog.array_length(p_access_tokens, 1), 0) loop
    begin
      v_users[i] := auth._get_user(p_access_tokens[i]);
    exception when others then
      v_users[i] := pg_catalog.jsonb_build_object('error', sqlstate, 'message', sqlerrm);
    end;
  end loop;
  return v_users;
end
$$;

ALTER FUNCTION auth.get_users(p_access_tokens text[]) OWNER TO authgres_owner;

--
-- Name: FUNCTION get_users(p_access_tokens text[]); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.get_users(p_access_tokens text[]) IS 'auth._get_user() for each token, in order; a token that fails gets {"error": SQLSTATE, "message": ...}.';

--
-- Name: hotp(bytea, bigint, integer, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.hotp(p_secret bytea, p_counter bigint, p_digits integer DEFAULT 6, p_algorithm text DEFAULT 'sha1'::text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path TO ''
    AS $$
declare
  v_hash bytea := auth._hmac(pg_catalog.int8send(p_counter), p_secret, p_algorithm);
  v_offset integer := pg_catalog.get_byte(v_hash, pg_catalog.length(v_hash) - 1) & 15;
  v_binary bigint;
begin
  v_binary := ((pg_catalog.get_byte(v_hash, v_offset) & 127)::bigint << 24)
            | (pg_catalog.get_byte(v_hash, v_offset + 1)::bigint << 16)
            | (pg_catalog.get_byte(v_hash, v_offset + 2)::bigint << 8)
            | pg_catalog.get_byte(v_hash, v_offset + 3)::bigint;
  return pg_catalog.lpad((v_binary % (10::bigint ^ p_digits)::bigint)::text, p_digits, '0');
end
$$;

ALTER FUNCTION auth.hotp(p_secret bytea, p_counter bigint, p_digits integer, p_algorithm text) OWNER TO authgres_owner;

--
-- Name: FUNCTION hotp(p_secret bytea, p_counter bigint, p_digits integer, p_algorithm text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.hotp(p_secret bytea, p_counter bigint, p_digits integer, p_algorithm text) IS 'RFC 4226 HOTP code for a counter (sha1, sha256 or sha512).';

--
-- Name: issue_recovery_codes(text, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.issue_recovery_codes(p_access_token text, p_mode text, p_friendly_name text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  if p_mode not in ('generate', 'regenerate', 'replace') then
    raise exception using errcode = 'AUV01', message = 'Unknown recovery codes mode';
  end if;
  if not (select s.mfa_recovery_codes_enroll_enabled from auth.settings s) then
    raise exception using errcode = 'AUM15', message = 'MFA enroll is disabled for recovery codes';
  end if;
  if p_mode = 'regenerate' then  -- nothing to regenerate says more than the reasons it could not be
    perform auth._recovery_factor((v_ctx.usr).id);
  end if;
  -- Before the aal check: without another factor no session can be aal2, and the user should hear why.
  if not exists (select from auth.mfa_factors
                  where user_id = (v_ctx.usr).id and status = 'verified' and factor_type <> 'recovery_code') then
    raise exception using errcode = 'AUM17',
      message = 'Recovery codes cannot be the only factor: verify another factor first';
  end if;
  if (v_ctx.sess).aal <> 'aal2' then
    raise exception using errcode = 'AUM02', message = 'AAL2 required to generate recovery codes';
  end if;
  return auth._issue_recovery_codes(v_ctx.usr, p_mode, p_friendly_name);
end
$$;

ALTER FUNCTION auth.issue_recovery_codes(p_access_token text, p_mode text, p_friendly_name text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION issue_recovery_codes(p_access_token text, p_mode text, p_friendly_name text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.issue_recovery_codes(p_access_token text, p_mode text, p_friendly_name text, p_ip inet) IS 'POST /factors/recovery-codes (p_mode generate), /regenerate (regenerate) and the first POST /factors/recovery_codes (replace): a new set of recovery codes (aal2, another verified factor needed), {id, type, friendly_name, total, codes}; see auth._issue_recovery_codes().';

--
-- Name: jwks(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.jwks() RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    RETURN jsonb_build_object('keys', (SELECT COALESCE(jsonb_agg(k.public_jwk ORDER BY (k.status = 'current'::text) DESC, k.created_at DESC), '[]'::jsonb) AS "coalesce" FROM auth.signing_keys k WHERE ((k.public_jwk IS NOT NULL) AND (k.status = ANY (ARRAY['next'::text, 'current'::text, 'previous'::text])))));

ALTER FUNCTION auth.jwks() OWNER TO authgres_owner;

--
-- Name: FUNCTION jwks(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.jwks() IS 'The JWK Set served at /.well-known/jwks.json: public halves of the next, current and previous asymmetric keys.';

--
-- Name: jwt(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN (COALESCE(NULLIF(current_setting('request.jwt.claim'::text, true), ''::text), NULLIF(current_setting('request.jwt.claims'::text, true), ''::text)))::jsonb;

ALTER FUNCTION auth.jwt() OWNER TO authgres_owner;

--
-- Name: FUNCTION jwt(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.jwt() IS 'All claims of the request''s JWT, e.g. auth.jwt() ->> ''aal''.';

--
-- Name: list_api_keys(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.list_api_keys(p_access_token text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  return coalesce((
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'id', k.id, 'name', k.name, 'prefix', k.key_prefix, 'created_at', k.created_at,
             'expires_at', k.expires_at, 'last_used_at', k.last_used_at) order by k.created_at desc)
      from auth.api_keys k where k.user_id = (v_ctx.usr).id and k.revoked_at is null), '[]'::jsonb);
end
$$;

ALTER FUNCTION auth.list_api_keys(p_access_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION list_api_keys(p_access_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.list_api_keys(p_access_token text) IS 'GET /api_keys: the caller''s live keys, never the keys themselves.';

--
-- Name: list_passkeys(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.list_passkeys(p_access_token text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users := (auth._signed_in(p_access_token)).usr;
begin
  return coalesce((select pg_catalog.jsonb_agg(auth._passkey_json(c) order by c.created_at)
                     from auth.webauthn_credentials c where c.user_id = v_user.id and c.factor_id is null),
                  '[]'::jsonb);
end
$$;

ALTER FUNCTION auth.list_passkeys(p_access_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION list_passkeys(p_access_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.list_passkeys(p_access_token text) IS 'GET /passkeys: the signed-in user''s passkeys, oldest first.';

--
-- Name: list_sessions(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.list_sessions(p_access_token text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  return coalesce((
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'id', s.id, 'created_at', s.created_at, 'updated_at', s.updated_at, 'refreshed_at', s.refreshed_at,
             'user_agent', s.user_agent, 'ip', pg_catalog.host(s.ip), 'aal', s.aal, 'not_after', s.not_after,
             'current', s.id = (v_ctx.sess).id)
             order by s.created_at desc)
      from auth.sessions s where s.user_id = (v_ctx.usr).id), '[]'::jsonb);
end
$$;

ALTER FUNCTION auth.list_sessions(p_access_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION list_sessions(p_access_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.list_sessions(p_access_token text) IS 'GET /sessions: the caller''s sessions, newest first, the current one flagged.';

--
-- Name: list_signing_keys(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.list_signing_keys() RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    RETURN (SELECT COALESCE(jsonb_agg(auth._signing_key_json(k.*) ORDER BY k.created_at), '[]'::jsonb) AS "coalesce" FROM auth.signing_keys k);

ALTER FUNCTION auth.list_signing_keys() OWNER TO authgres_owner;

--
-- Name: FUNCTION list_signing_keys(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.list_signing_keys() IS 'Every signing key with its status, without secrets.';

--
-- Name: logout(text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.logout(p_access_token text, p_scope text DEFAULT 'global'::text, p_ip inet DEFAULT NULL::inet) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_auth record;
  v_ended integer;
begin
  if p_scope not in ('global', 'local', 'others') then
    raise exception using errcode = 'AUV01', message = pg_catalog.format('Unsupported logout scope %L', p_scope);
  end if;
  select * into v_auth from auth._authorize(p_access_token, true);
  if (v_auth.sess).id is null then
    raise exception using errcode = 'AUJ04', message = 'Session from session_id claim in JWT does not exist';
  end if;
  delete from auth.sessions
   where user_id = (v_auth.usr).id
     and case p_scope
           when 'local' then id = (v_auth.sess).id
           when 'others' then id <> (v_auth.sess).id
           else true
         end;
  get diagnostics v_ended = row_count;
  perform auth._audit(v_auth.usr, 'logout', 'account', p_ip, pg_catalog.jsonb_build_object('scope', p_scope));
  return v_ended;
end
$$;

ALTER FUNCTION auth.logout(p_access_token text, p_scope text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION logout(p_access_token text, p_scope text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.logout(p_access_token text, p_scope text, p_ip inet) IS 'Ends the token''s session (local), the user''s other sessions (others) or all of them (global); returns how many ended.';

--
-- Name: outbox_stats(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) RETURNS record
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  -- Both counts read partial indexes (email_outbox_due_idx, email_outbox_dead_idx): what a scrape
  -- costs follows the emails waiting and dead, not the sent ones kept for a week.
  select pg_catalog.count(*) filter (where o.status = 'pending'),
         pg_catalog.count(*) filter (where o.status = 'sending'),
         (select pg_catalog.count(*) from auth.email_outbox d where d.status = 'dead'),
         coalesce(extract(epoch from pg_catalog.now() - pg_catalog.min(o.created_at))::double precision, 0)
    from auth.email_outbox o
   where o.status in ('pending', 'sending');
$$;

ALTER FUNCTION auth.outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) OWNER TO authgres_owner;

--
-- Name: FUNCTION outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) IS 'For the metrics: emails pending, being sent and dead, and the age in seconds of the oldest not yet sent (0 when none).';

--
-- Name: passkey_authentication_options(inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.passkey_authentication_options(p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_challenge auth.webauthn_challenges;
begin
  -- Anyone may ask, and each answer is a stored row: a client IP gets so many per window.
  if p_ip is not null then
    perform auth._throttle('passkey-options-ip:' || pg_catalog.host(p_ip),
                           (select s.rate_limit_passkey from auth.settings s), interval '5 minutes', 'AUL02');
  end if;
  insert into auth.webauthn_challenges (challenge_type, challenge, expires_at)
  values ('authentication', auth._random_bytes(32),
          pg_catalog.now() + pg_catalog.make_interval(secs => (select s.webauthn_challenge_expiry from auth.settings s)))
  returning * into v_challenge;
  return pg_catalog.jsonb_build_object(
    'challenge_id', v_challenge.id, 'challenge', auth.url_encode(v_challenge.challenge),
    'expires_at', auth._epoch(v_challenge.expires_at));
end
$$;

ALTER FUNCTION auth.passkey_authentication_options(p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION passkey_authentication_options(p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.passkey_authentication_options(p_ip inet) IS 'POST /passkeys/authentication/options: a challenge for a discoverable sign-in (no user named); AUL02 past rate_limit_passkey per 5 minutes from p_ip.';

--
-- Name: passkey_registration_options(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.passkey_registration_options(p_access_token text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_ctx record;
  v_challenge auth.webauthn_challenges;
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  perform auth._require_passkey_aal(v_ctx.usr, v_ctx.sess);
  if (select pg_catalog.count(*) from auth.webauthn_credentials
       where user_id = (v_ctx.usr).id and factor_id is null) >= v_settings.passkey_max_per_user then
    raise exception using errcode = 'AUW04', message = 'Maximum number of passkeys reached';
  end if;
  delete from auth.webauthn_challenges where user_id = (v_ctx.usr).id and expires_at <= pg_catalog.now();
  insert into auth.webauthn_challenges (user_id, challenge_type, challenge, expires_at)
  values ((v_ctx.usr).id, 'registration', auth._random_bytes(32),
          pg_catalog.now() + pg_catalog.make_interval(secs => v_settings.webauthn_challenge_expiry))
  returning * into v_challenge;
  return pg_catalog.jsonb_build_object(
    'challenge_id', v_challenge.id, 'challenge', auth.url_encode(v_challenge.challenge),
    'expires_at', auth._epoch(v_challenge.expires_at), 'user', auth._webauthn_user(v_ctx.usr),
    'exclude_credentials', auth._user_credential_ids((v_ctx.usr).id));
end
$$;

ALTER FUNCTION auth.passkey_registration_options(p_access_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION passkey_registration_options(p_access_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.passkey_registration_options(p_access_token text) IS 'POST /passkeys/registration/options: a registration challenge for the signed-in, non-anonymous user, with what the service builds the options from (user, credentials to exclude). AUW04 at the limit.';

--
-- Name: password_hash_by_email(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.password_hash_by_email(p_email text, OUT user_id uuid, OUT password_hash text) RETURNS record
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  select u.id, u.encrypted_password into user_id, password_hash
    from auth.users u
   where u.email = pg_catalog.lower(pg_catalog.btrim(p_email))
     and not u.is_sso_user and u.deleted_at is null;
end
$$;

ALTER FUNCTION auth.password_hash_by_email(p_email text, OUT user_id uuid, OUT password_hash text) OWNER TO authgres_owner;

--
-- Name: FUNCTION password_hash_by_email(p_email text, OUT user_id uuid, OUT password_hash text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.password_hash_by_email(p_email text, OUT user_id uuid, OUT password_hash text) IS 'The password hash the service verifies before auth.sign_in_with_password(); NULLs when there is none.';

--
-- Name: password_hash_by_phone(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.password_hash_by_phone(p_phone text, OUT user_id uuid, OUT password_hash text) RETURNS record
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  select u.id, u.encrypted_password into user_id, password_hash
    from auth.users u
   where u.phone = pg_catalog.regexp_replace(coalesce(p_phone, ''), '[+[:space:]-]', '', 'g')
     and u.deleted_at is null;
end
$$;

ALTER FUNCTION auth.password_hash_by_phone(p_phone text, OUT user_id uuid, OUT password_hash text) OWNER TO authgres_owner;

--
-- Name: FUNCTION password_hash_by_phone(p_phone text, OUT user_id uuid, OUT password_hash text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.password_hash_by_phone(p_phone text, OUT user_id uuid, OUT password_hash text) IS 'The password hash the service verifies before a phone sign-in; NULLs when there is none.';

--
-- Name: provider_flow(text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.provider_flow(p_state text, p_browser_binding text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_flow auth.flow_state := auth._live_provider_flow(p_state);
begin
  -- Digests are compared: how long a comparison takes tells at most how much of a digest matched, which
  -- says nothing about the cookie's value.
  if v_flow.browser_binding_digest is not null
     and v_flow.browser_binding_digest is distinct from
         pg_catalog.sha256(pg_catalog.convert_to(coalesce(p_browser_binding, ''), 'UTF8')) then
    raise exception using errcode = 'AUI06', message = 'OAuth state was issued to another browser';
  end if;
  return pg_catalog.jsonb_build_object('provider', v_flow.provider_type, 'referrer', v_flow.referrer,
                                       'pkce', v_flow.code_challenge is not null,
                                       'linking', v_flow.linking_target_id is not null);
end
$$;

ALTER FUNCTION auth.provider_flow(p_state text, p_browser_binding text) OWNER TO authgres_owner;

--
-- Name: FUNCTION provider_flow(p_state text, p_browser_binding text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.provider_flow(p_state text, p_browser_binding text) IS 'The callback''s first look at its state: provider, referrer, whether PKCE and whether a link; AUI05 for a state that is unknown, used or expired, AUI06 when the flow belongs to another browser (p_browser_binding, the value of the browser''s cookie, is not the one it started with). Nothing is consumed: auth.sign_in_with_identity does that.';

--
-- Name: prune(integer); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.prune(p_batch integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_days integer := (select s.audit_retention_days from auth.settings s);
  v_deleted integer := 0;
  v_count integer;
begin
  if v_days > 0 then
    delete from auth.audit_log_entries where id in (
      select id from auth.audit_log_entries
       where created_at < pg_catalog.now() - pg_catalog.make_interval(days => v_days) limit p_batch);
    get diagnostics v_count = row_count;
    v_deleted := v_deleted + v_count;
  end if;
  delete from auth.email_outbox where id in (
    select id from auth.email_outbox
     where status in ('sent', 'dead') and created_at < pg_catalog.now() - interval '7 days' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.sms_outbox where id in (
    select id from auth.sms_outbox
     where status in ('sent', 'dead') and created_at < pg_catalog.now() - interval '7 days' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.one_time_tokens where id in (
    select id from auth.one_time_tokens where expires_at < pg_catalog.now() limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  -- PKCE flows: an auth code past its lifetime, or a flow whose emailed token is gone (used without the
  -- link, replaced, expired and pruned) before any code was issued.
  delete from auth.flow_state where id in (
    select f.id from auth.flow_state f
     where f.auth_code_issued_at < pg_catalog.now() - pg_catalog.make_interval(secs => (
             select s.flow_state_expiry from auth.settings s))
        or (f.auth_code_issued_at is null and f.authentication_method <> 'oauth'
            and not exists (select from auth.one_time_tokens t where t.flow_state_id = f.id))
        or (f.auth_code_issued_at is null and f.authentication_method = 'oauth'
            and f.created_at < pg_catalog.now() - auth._provider_state_lifetime())
     limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.pending_signups where id in (
    select id from auth.pending_signups where expires_at < pg_catalog.now() limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.user_events where id in (
    select id from auth.user_events where created_at < pg_catalog.now() - interval '1 day' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.mfa_challenges where id in (
    select id from auth.mfa_challenges where expires_at < pg_catalog.now() - interval '1 day' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.webauthn_challenges where id in (
    select id from auth.webauthn_challenges where expires_at < pg_catalog.now() limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  -- A used wallet message is kept an hour past its validity: the service's clock, which judged the
  -- validity, and the database's may differ a little.
  delete from auth.web3_used_messages where message_digest in (
    select message_digest from auth.web3_used_messages
     where valid_until < pg_catalog.now() - interval '1 hour' limit p_batch);
  get diagnostics v_count = row_count;
  v_deleted := v_deleted + v_count;
  delete from auth.rate_limits where key in (
    select key from auth.rate_limits where window_started_at < pg_catalog.now() - interval '1 day' limit p_batch);
  get diagnostics v_count = row_count;
  return v_deleted + v_count;
end
$$;

ALTER FUNCTION auth.prune(p_batch integer) OWNER TO authgres_owner;

--
-- Name: FUNCTION prune(p_batch integer); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.prune(p_batch integer) IS 'Deletes at most p_batch rows of each kind that has outlived its use; returns how many. Call until it returns 0.';

--
-- Name: reauthenticate(text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.reauthenticate(p_access_token text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users := (auth._authorize(p_access_token, true)).usr;
begin
  if v_user.email is null then
    raise exception using errcode = 'AUV01', message = 'Reauthentication requires an email address';
  end if;
  if v_user.email_confirmed_at is null then
    raise exception using errcode = 'AUE04', message = 'Please verify your email first.';
  end if;
  perform auth._throttle_email(v_user.email, 'reauthentication', p_ip);
  perform auth._queue_email(v_user, 'reauthentication', v_user.email, null);
  return '{}';
end
$$;

ALTER FUNCTION auth.reauthenticate(p_access_token text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION reauthenticate(p_access_token text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.reauthenticate(p_access_token text, p_ip inet) IS 'GET /reauthenticate: emails the signed-in user a nonce that PUT /user accepts for a password change.';

--
-- Name: record_failed_login(text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.record_failed_login(p_email text, p_ip inet DEFAULT NULL::inet) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
begin
  select * into v_user from auth.users where email = pg_catalog.lower(pg_catalog.btrim(p_email)) and deleted_at is null;
  perform auth._record_failed_login(v_user, coalesce(v_user.email, p_email), 'email', p_ip);
end
$$;

ALTER FUNCTION auth.record_failed_login(p_email text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION record_failed_login(p_email text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.record_failed_login(p_email text, p_ip inet) IS 'Audits a password sign-in that failed verification, and tells the password_verification_attempt hook.';

--
-- Name: record_failed_phone_login(text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.record_failed_phone_login(p_phone text, p_ip inet DEFAULT NULL::inet) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_phone text := pg_catalog.regexp_replace(coalesce(p_phone, ''), '[+[:space:]-]', '', 'g');
  v_user auth.users;
begin
  select * into v_user from auth.users where phone = v_phone and deleted_at is null;
  perform auth._record_failed_login(v_user, v_phone, 'phone', p_ip);
end
$$;

ALTER FUNCTION auth.record_failed_phone_login(p_phone text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION record_failed_phone_login(p_phone text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.record_failed_phone_login(p_phone text, p_ip inet) IS 'Audits a phone + password sign-in that failed verification, and tells the password_verification_attempt hook.';

--
-- Name: record_failed_reauthentication(text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.record_failed_reauthentication(p_access_token text, p_ip inet DEFAULT NULL::inet) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users := (auth._authorize(p_access_token, true)).usr;
begin
  perform auth._audit(v_user, 'login_failed', 'account', p_ip, '{"provider": "email", "via": "reauthentication"}');
  perform auth._password_attempt_hook(v_user, false);
end
$$;

ALTER FUNCTION auth.record_failed_reauthentication(p_access_token text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION record_failed_reauthentication(p_access_token text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.record_failed_reauthentication(p_access_token text, p_ip inet) IS 'Audits a wrong password given to confirm an action by a signed-in user, and tells the password_verification_attempt hook (which may end the user''s sessions), as a failed sign-in is.';

--
-- Name: recovery_codes_status(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.recovery_codes_status(p_access_token text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
  v_factor auth.mfa_factors;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_factor := auth._recovery_factor((v_ctx.usr).id);
  return (select pg_catalog.jsonb_build_object(
                   'id', v_factor.id, 'type', 'recovery_code', 'total', pg_catalog.count(*),
                   'remaining', pg_catalog.count(*) filter (where c.used_at is null))
            from auth.mfa_recovery_codes c where c.user_id = (v_ctx.usr).id);
end
$$;

ALTER FUNCTION auth.recovery_codes_status(p_access_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION recovery_codes_status(p_access_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.recovery_codes_status(p_access_token text) IS 'GET /factors/recovery-codes: {id, type, total, remaining} of the caller''s recovery codes (any aal), or AUM01.';

--
-- Name: refresh_sessions(text[], text[], text[]); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[]) RETURNS jsonb[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_sessions jsonb[] := '{}';
begin
  for i in 1 .. coalesce(pg_catalog.array_length(p_refresh_tokens, 1), 0) loop
    begin
      v_sessions[i] := auth._refresh_session(p_refresh_tokens[i], p_user_agents[i], p_ips[i]::inet);
    exception when others then
      v_sessions[i] := pg_catalog.jsonb_build_object('error', sqlstate, 'message', sqlerrm);
    end;
  end loop;
  return v_sessions;
end
$$;

ALTER FUNCTION auth.refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[]) OWNER TO authgres_owner;

--
-- Name: FUNCTION refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[]); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[]) IS 'auth._refresh_session() for each token (with its user agent and IP), in order, all committed together; one that fails gets {"error": SQLSTATE, "message": ...}.';

--
-- Name: register_passkey(text, uuid, bytea, bytea, bytea, uuid, bigint, jsonb, boolean, boolean, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.register_passkey(p_access_token text, p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_public_key bytea, p_aaguid uuid, p_sign_count bigint, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_ctx record;
  v_credential auth.webauthn_credentials;
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  perform auth._require_passkey_aal(v_ctx.usr, v_ctx.sess);
  perform auth._consume_webauthn_challenge(p_challenge_id, 'registration', (v_ctx.usr).id, p_challenge);
  -- Registrations of one user queue here, so the limit holds under concurrent ones.
  perform from auth.users where id = (v_ctx.usr).id for no key update;
  if (select pg_catalog.count(*) from auth.webauthn_credentials
       where user_id = (v_ctx.usr).id and factor_id is null) >= v_settings.passkey_max_per_user then
    raise exception using errcode = 'AUW04', message = 'Maximum number of passkeys reached';
  end if;
  begin
    insert into auth.webauthn_credentials (user_id, credential_id, public_key, attestation_type, aaguid, sign_count,
                                           transports, backup_eligible, backed_up, friendly_name)
    values ((v_ctx.usr).id, p_credential_id, p_public_key, coalesce(p_attestation_type, ''), p_aaguid,
            coalesce(p_sign_count, 0), coalesce(p_transports, '[]'), coalesce(p_backup_eligible, false),
            coalesce(p_backed_up, false), 'Passkey')
    returning * into v_credential;
  exception when unique_violation then
    raise exception using errcode = 'AUW05', message = 'This credential is already registered';
  end;
  perform auth._audit(v_ctx.usr, 'passkey_created', 'user', p_ip,
                      pg_catalog.jsonb_build_object('passkey_id', v_credential.id));
  return pg_catalog.jsonb_build_object('id', v_credential.id, 'friendly_name', v_credential.friendly_name,
                                       'created_at', v_credential.created_at);
end
$$;

ALTER FUNCTION auth.register_passkey(p_access_token text, p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_public_key bytea, p_aaguid uuid, p_sign_count bigint, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION register_passkey(p_access_token text, p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_public_key bytea, p_aaguid uuid, p_sign_count bigint, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.register_passkey(p_access_token text, p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_public_key bytea, p_aaguid uuid, p_sign_count bigint, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_ip inet) IS 'POST /passkeys/registration/verify, once the service verified the attestation: spends the challenge (p_challenge: the one the authenticator signed) and stores the passkey. AUW01/02/03 as the challenge says, AUW04 at the limit, AUW05 a credential already registered (to anyone).';

--
-- Name: reject_sms_outbox(bigint, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.reject_sms_outbox(p_id bigint, p_error text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_message auth.sms_outbox;
  v_user auth.users;
begin
  update auth.sms_outbox
     set status = 'dead', payload = payload - 'code', last_error = pg_catalog.left(p_error, 1000), leased_until = null
   where id = p_id and status = 'sending'
  returning * into v_message;
  if not found then
    return;
  end if;
  -- The code can never arrive: it dies, and what was made only for it goes with it.
  delete from auth.one_time_tokens where user_id = v_message.user_id and token_type = v_message.kind
                                     and relates_to = v_message.to_phone;
  if v_message.kind = 'phone_change' then
    update auth.users set phone_change = '', phone_change_sent_at = null
     where id = v_message.user_id and phone_change = v_message.to_phone;
  elsif v_message.pending_signup_id is not null then
    -- A deferred sign-up's text: no user was made, the pending sign-up (and its code) goes. Its code first,
    -- in the order a verification locks them.
    delete from auth.one_time_tokens where pending_signup_id = v_message.pending_signup_id;
    delete from auth.pending_signups where id = v_message.pending_signup_id;
  elsif v_message.created_user then
    delete from auth.users
     where id = v_message.user_id and phone = v_message.to_phone and phone_confirmed_at is null
       and email is null and last_sign_in_at is null
    returning * into v_user;
    if found then
      perform auth._audit(v_user, 'user_deleted', 'user', null, '{"reason": "sms_refused"}');
    end if;
  end if;
end
$$;

ALTER FUNCTION auth.reject_sms_outbox(p_id bigint, p_error text) OWNER TO authgres_owner;

--
-- Name: FUNCTION reject_sms_outbox(p_id bigint, p_error text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.reject_sms_outbox(p_id bigint, p_error text) IS 'Records that the provider refused a text (a number it will not deliver to): dead at once with the provider''s error, its code void, a pending phone change dropped, and a user created for it (never confirmed, never signed in) or the deferred sign-up it was texted for removed, so that no half-made user is left.';

--
-- Name: resend(text, text, text, inet, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.resend(p_type text, p_email text, p_redirect_to text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  if p_type not in ('signup', 'email_change') then
    raise exception using errcode = 'AUV01', message = 'Missing one of these types: signup, email_change';
  end if;
  perform auth._throttle_email(v_email, 'resend-' || p_type, p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if not found then
    if p_type = 'signup' then
      perform auth._resend_pending_signup(v_email, p_redirect_to, p_code_challenge, v_method);
    end if;
    return '{}';
  end if;
  if p_type = 'signup' and v_user.email_confirmed_at is null then
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
  elsif p_type = 'email_change' and v_user.email_change <> '' then
    if exists (select from auth.one_time_tokens where user_id = v_user.id and token_type = 'email_change_current') then
      perform auth._queue_email(v_user, 'email_change_current', v_user.email, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_user.email_change), null,
                                p_code_challenge, v_method);
    end if;
    if exists (select from auth.one_time_tokens where user_id = v_user.id and token_type = 'email_change_new') then
      perform auth._queue_email(v_user, 'email_change_new', v_user.email_change, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_user.email_change), null,
                                p_code_challenge, v_method);
    end if;
  end if;
  return '{}';
end
$$;

ALTER FUNCTION auth.resend(p_type text, p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION resend(p_type text, p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.resend(p_type text, p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) IS 'POST /resend: re-sends a pending sign-up confirmation or email change (as PKCE flows with a code challenge); always {}.';

--
-- Name: resend_phone(text, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.resend_phone(p_type text, p_phone text, p_channel text DEFAULT 'sms'::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_phone text := auth._normalize_phone(p_phone);
  v_user auth.users;
  v_sent jsonb;
begin
  if p_type not in ('sms', 'phone_change') then
    raise exception using errcode = 'AUV01', message = 'Missing one of these types: signup, email_change, sms, phone_change';
  end if;
  if coalesce(nullif(p_channel, ''), 'sms') not in ('sms', 'whatsapp') then
    raise exception using errcode = 'AUV01', message = 'Invalid channel, should be one of sms, whatsapp';
  end if;
  perform auth._throttle_sms(v_phone, 'resend-' || p_type);
  if p_type = 'sms' then
    select * into v_user from auth.users where phone = v_phone and phone_confirmed_at is null and deleted_at is null;
    if found then
      return auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false);
    end if;
    v_sent := auth._queue_pending_phone_signup(v_phone, p_channel, false);
    if v_sent is not null then
      return v_sent;
    end if;
  else
    select * into v_user from auth.users where phone_change = v_phone and deleted_at is null
     order by phone_change_sent_at desc nulls last limit 1;
    if found then
      return auth._queue_sms(v_user, 'phone_change', v_phone, p_channel, false);
    end if;
  end if;
  return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
end
$$;

ALTER FUNCTION auth.resend_phone(p_type text, p_phone text, p_channel text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION resend_phone(p_type text, p_phone text, p_channel text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.resend_phone(p_type text, p_phone text, p_channel text, p_ip inet) IS 'POST /resend with type sms (an unconfirmed number''s code, or a pending sign-up''s, which lives on) or phone_change (the new number''s code): always {message_id}, whether or not anything was pending.';

--
-- Name: revoke_api_key(text, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.revoke_api_key(p_access_token text, p_key_id uuid, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._signed_in(p_access_token);
  update auth.api_keys set revoked_at = pg_catalog.now()
   where id = p_key_id and user_id = (v_ctx.usr).id and revoked_at is null;
  if not found then
    raise exception using errcode = 'AUK01', message = 'API key not found';
  end if;
  perform auth._audit(v_ctx.usr, 'api_key_revoked', 'user', p_ip, pg_catalog.jsonb_build_object('api_key_id', p_key_id));
  return pg_catalog.jsonb_build_object('id', p_key_id);
end
$$;

ALTER FUNCTION auth.revoke_api_key(p_access_token text, p_key_id uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION revoke_api_key(p_access_token text, p_key_id uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.revoke_api_key(p_access_token text, p_key_id uuid, p_ip inet) IS 'DELETE /api_keys/{id}: the key stops working at once.';

--
-- Name: revoke_signing_key(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.revoke_signing_key(p_key text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION auth.revoke_signing_key(p_key text) OWNER TO authgres_owner;

--
-- Name: FUNCTION revoke_signing_key(p_key text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.revoke_signing_key(p_key text) IS 'Revokes a next or previous key (by kid, or by id for the kid-less AUTHGRES_JWT_SECRET key): tokens it signed stop verifying at once. Revoking that key also ends the anon and service_role keys signed with it.';

--
-- Name: role(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.role() RETURNS text
    LANGUAGE sql STABLE
    RETURN COALESCE(NULLIF(current_setting('request.jwt.claim.role'::text, true), ''::text), ((NULLIF(current_setting('request.jwt.claims'::text, true), ''::text))::jsonb ->> 'role'::text));

ALTER FUNCTION auth.role() OWNER TO authgres_owner;

--
-- Name: FUNCTION role(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.role() IS 'The role claim of the request''s JWT.';

--
-- Name: rotate_signing_keys(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.rotate_signing_keys() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION auth.rotate_signing_keys() OWNER TO authgres_owner;

--
-- Name: FUNCTION rotate_signing_keys(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.rotate_signing_keys() IS 'The next key becomes current (signs new tokens); the current one becomes previous: tokens it signed still verify until they expire, or until it is revoked.';

--
-- Name: send_magic_link(text, boolean, jsonb, text, inet, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.send_magic_link(p_email text, p_create_user boolean DEFAULT true, p_data jsonb DEFAULT '{}'::jsonb, p_redirect_to text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  select * into v_settings from auth.settings;
  perform auth._throttle_email(v_email, 'magiclink', p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if not found then
    -- Unknown address without permission to create it: nothing to send, and the caller is not told.
    if not p_create_user or v_settings.disable_signup then
      return '{}';
    end if;
    if v_settings.signup_deferred then
      perform auth._defer_signup(v_email, null, p_data, p_redirect_to, p_code_challenge, v_method);
      return '{}';
    end if;
    v_user := auth._new_email_user(v_email, null, p_data, p_ip);
    if v_user.id is null then
      return '{}';
    end if;
  end if;
  if v_user.email_confirmed_at is null then
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
  else
    perform auth._queue_email(v_user, 'magiclink', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
  end if;
  return '{}';
end
$$;

ALTER FUNCTION auth.send_magic_link(p_email text, p_create_user boolean, p_data jsonb, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION send_magic_link(p_email text, p_create_user boolean, p_data jsonb, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.send_magic_link(p_email text, p_create_user boolean, p_data jsonb, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) IS 'POST /otp and /magiclink: emails a sign-in code and link (a confirmation for an unconfirmed or new user). Always {} so that the answer does not tell whether the address is registered.';

--
-- Name: send_phone_otp(text, boolean, jsonb, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.send_phone_otp(p_phone text, p_create_user boolean DEFAULT true, p_data jsonb DEFAULT '{}'::jsonb, p_channel text DEFAULT 'sms'::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_phone text := auth._normalize_phone(p_phone);
  v_user auth.users;
  v_created boolean := false;
begin
  select * into v_settings from auth.settings;
  if coalesce(nullif(p_channel, ''), 'sms') not in ('sms', 'whatsapp') then
    raise exception using errcode = 'AUV01', message = 'Invalid channel, should be one of sms, whatsapp';
  end if;
  perform auth._throttle_sms(v_phone, 'phone_confirmation');
  select * into v_user from auth.users where phone = v_phone and deleted_at is null;
  if not found then
    -- An unknown number without permission to create it: nothing is sent, and the answer is the same.
    if not p_create_user or v_settings.disable_signup then
      return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
    end if;
    if v_settings.signup_deferred then
      return auth._queue_pending_phone_signup(v_phone, p_channel, true, null, p_data);
    end if;
    v_user := auth._new_phone_user(v_phone, null, p_data, p_ip);
    if v_user.id is null then
      return pg_catalog.jsonb_build_object('message_id', pg_catalog.gen_random_uuid());
    end if;
    v_created := true;
  end if;
  return auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false, v_created);
end
$$;

ALTER FUNCTION auth.send_phone_otp(p_phone text, p_create_user boolean, p_data jsonb, p_channel text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION send_phone_otp(p_phone text, p_create_user boolean, p_data jsonb, p_channel text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.send_phone_otp(p_phone text, p_create_user boolean, p_data jsonb, p_channel text, p_ip inet) IS 'POST /otp with a phone: queues a texted sign-in code (creating the user when p_create_user, or with signup_deferred a pending sign-up). Always {message_id}, whether or not the number is registered.';

--
-- Name: send_recovery(text, text, inet, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.send_recovery(p_email text, p_redirect_to text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  perform auth._throttle_email(v_email, 'recovery', p_ip);
  select * into v_user from auth.users where email = v_email and not is_sso_user and deleted_at is null;
  if found then
    perform auth._queue_email(v_user, 'recovery', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
    perform auth._audit(v_user, 'user_recovery_requested', 'user', p_ip);
  end if;
  return '{}';
end
$$;

ALTER FUNCTION auth.send_recovery(p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION send_recovery(p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.send_recovery(p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) IS 'POST /recover: emails a recovery code and link (a PKCE flow''s with a code challenge); always {}.';

--
-- Name: session_password_hash(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.session_password_hash(p_access_token text) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return ((auth._signed_in(p_access_token)).usr).encrypted_password;
end
$$;

ALTER FUNCTION auth.session_password_hash(p_access_token text) OWNER TO authgres_owner;

--
-- Name: FUNCTION session_password_hash(p_access_token text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.session_password_hash(p_access_token text) IS 'The password hash of a signed-in session''s user (AUK02 for an API key), for the service to check a password given to confirm an action: what only a session may do is not a password oracle for a key.';

--
-- Name: sign(json, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.sign(payload json, secret text, algorithm text DEFAULT 'HS256'::text) RETURNS text
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path TO ''
    AS $$
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

ALTER FUNCTION auth.sign(payload json, secret text, algorithm text) OWNER TO authgres_owner;

--
-- Name: FUNCTION sign(payload json, secret text, algorithm text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.sign(payload json, secret text, algorithm text) IS 'Signs payload as a compact JWT with header {"alg": algorithm, "typ": "JWT"} (pgjwt-compatible).';

--
-- Name: sign_in_anonymously(jsonb, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.sign_in_anonymously(p_data jsonb DEFAULT '{}'::jsonb, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if not v_settings.anonymous_users_enabled then
    raise exception using errcode = 'AUS03', message = 'Anonymous sign-ins are disabled';
  end if;
  if v_settings.disable_signup then
    raise exception using errcode = 'AUS02', message = 'Signups not allowed for this instance';
  end if;
  if p_ip is not null then
    perform auth._throttle('anonymous-ip-hour:' || pg_catalog.host(p_ip), v_settings.rate_limit_anonymous_users,
                           interval '1 hour', 'AUL02');
  end if;
  if v_settings.hook_before_user_created is not null then
    perform auth._call_hook(v_settings.hook_before_user_created, pg_catalog.jsonb_build_object(
      'user', pg_catalog.jsonb_build_object('email', '', 'is_anonymous', true, 'user_metadata', coalesce(p_data, '{}')),
      'metadata', pg_catalog.jsonb_build_object('ip_address', pg_catalog.host(p_ip))));
  end if;
  insert into auth.users (aud, role, raw_user_meta_data, is_anonymous, last_sign_in_at)
  values (v_settings.jwt_aud, v_settings.jwt_default_role, coalesce(p_data, '{}'), true, pg_catalog.now())
  returning * into v_user;
  perform auth._audit(v_user, 'user_signedup', 'team', p_ip, '{"provider": "anonymous"}');
  return auth._start_session(v_user, 'anonymous', p_user_agent, p_ip);
end
$$;

ALTER FUNCTION auth.sign_in_anonymously(p_data jsonb, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION sign_in_anonymously(p_data jsonb, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.sign_in_anonymously(p_data jsonb, p_user_agent text, p_ip inet) IS 'Creates an anonymous user (no email, phone or identity) and signs it in; AUL02 past rate_limit_anonymous_users per hour from p_ip.';

--
-- Name: sign_in_with_identity(text, text, jsonb, text, text, text, bytea, bytea, text, inet, bytea, timestamp with time zone, jsonb); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.sign_in_with_identity(p_provider text, p_subject text, p_claims jsonb, p_method text, p_state text DEFAULT NULL::text, p_access_token text DEFAULT NULL::text, p_provider_token bytea DEFAULT NULL::bytea, p_provider_refresh_token bytea DEFAULT NULL::bytea, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_message_digest bytea DEFAULT NULL::bytea, p_valid_until timestamp with time zone DEFAULT NULL::timestamp with time zone, p_audit jsonb DEFAULT '{}'::jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_flow auth.flow_state;
  v_link_to uuid;
  v_deferred_link boolean;
  v_claims jsonb;
  v_user auth.users;
  v_code text;
begin
  if coalesce(p_subject, '') = '' or p_provider is null or p_method not in ('oauth', 'id_token', 'web3') then
    raise exception using errcode = 'AUV01', message = 'A provider identity needs a provider and a subject';
  end if;
  if p_method = 'web3' then  -- a signed wallet message: bounded per client IP, and good once
    if p_message_digest is null or p_valid_until is null or p_state is not null or p_access_token is not null then
      raise exception using errcode = 'AUV01', message = 'A wallet sign-in needs its message digest and validity';
    end if;
    if p_ip is not null then
      perform auth._throttle('web3-ip:' || pg_catalog.host(p_ip),
                             (select s.rate_limit_web3 from auth.settings s), interval '5 minutes', 'AUL02');
    end if;
    -- Two uses at once: the second waits for the first's row, then finds it.
    insert into auth.web3_used_messages (message_digest, valid_until)
    values (p_message_digest, p_valid_until)
    on conflict (message_digest) do nothing;
    if not found then
      raise exception using errcode = 'AUI07', message = 'Signed message was already used';
    end if;
  end if;
  if p_state is not null then  -- the callback of GET /authorize
    v_flow := auth._live_provider_flow(p_state);
    if v_flow.provider_type <> p_provider then
      raise exception using errcode = 'AUI05', message = 'OAuth state parameter is invalid, used or expired';
    end if;
    v_link_to := v_flow.linking_target_id;
  elsif p_access_token is not null then  -- the id_token grant with link_identity
    if not (select s.manual_linking_enabled from auth.settings s) then
      raise exception using errcode = 'AUI03', message = 'Manual linking is disabled';
    end if;
    v_link_to := ((auth._signed_in(p_access_token)).usr).id;
  end if;

  v_claims := p_claims || pg_catalog.jsonb_build_object('sub', p_subject, 'provider_id', p_subject);
  -- A PKCE link is made at the code exchange, by the browser holding the verifier: whoever sends another
  -- person through the provider with a link of his own gets a code that person's browser cannot exchange,
  -- and links nothing.
  v_deferred_link := v_flow.code_challenge is not null and v_link_to is not null;
  if not v_deferred_link then
    v_user := auth._identity_user(p_provider, p_subject, v_claims, v_link_to, p_ip);
    if v_user.banned_until > pg_catalog.now() then
      raise exception using errcode = 'AUS06', message = 'User is banned';
    end if;
    update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
    perform auth._audit(v_user, 'login', 'account', p_ip, pg_catalog.jsonb_build_object(
      'provider', p_provider, 'via', p_method) || coalesce(p_audit, '{}'));
  end if;

  if v_flow.code_challenge is not null then  -- PKCE: the code now, the session (and a link) at its exchange
    v_code := auth._issue_auth_code(v_flow.id, coalesce(v_user.id, v_link_to));
    update auth.flow_state
       set provider_access_token = p_provider_token, provider_refresh_token = p_provider_refresh_token,
           pending_link = case when v_deferred_link then pg_catalog.jsonb_build_object(
                            'provider', p_provider, 'subject', p_subject, 'claims', v_claims) end
     where id = v_flow.id;
    return pg_catalog.jsonb_build_object('auth_code', v_code, 'redirect_to', v_flow.referrer);
  end if;
  if v_flow.id is not null then
    delete from auth.flow_state where id = v_flow.id;  -- the state is spent
  end if;
  return auth._start_session(v_user, p_method, p_user_agent, p_ip)
    || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('redirect_to', v_flow.referrer));
end
$$;

ALTER FUNCTION auth.sign_in_with_identity(p_provider text, p_subject text, p_claims jsonb, p_method text, p_state text, p_access_token text, p_provider_token bytea, p_provider_refresh_token bytea, p_user_agent text, p_ip inet, p_message_digest bytea, p_valid_until timestamp with time zone, p_audit jsonb) OWNER TO authgres_owner;

--
-- Name: FUNCTION sign_in_with_identity(p_provider text, p_subject text, p_claims jsonb, p_method text, p_state text, p_access_token text, p_provider_token bytea, p_provider_refresh_token bytea, p_user_agent text, p_ip inet, p_message_digest bytea, p_valid_until timestamp with time zone, p_audit jsonb); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.sign_in_with_identity(p_provider text, p_subject text, p_claims jsonb, p_method text, p_state text, p_access_token text, p_provider_token bytea, p_provider_refresh_token bytea, p_user_agent text, p_ip inet, p_message_digest bytea, p_valid_until timestamp with time zone, p_audit jsonb) IS 'A sign-in the provider vouched for (p_method oauth: the callback, with the state of GET /authorize; id_token: POST /token?grant_type=id_token, with the access token of the user to link to, if any; web3: POST /token?grant_type=web3, a wallet''s signed message the service verified, used once: its digest is kept until p_valid_until, AUI07 when it was used before, AUL02 past rate_limit_web3 per 5 minutes from p_ip). p_audit: more details for the login''s audit entry. Finds, links or creates the user (auth._identity_user), then answers a session (and redirect_to), or for a PKCE flow {auth_code, redirect_to}, its row keeping the provider''s tokens as the service sealed them (and a link''s identity, which the code exchange adds). The state works once (AUI05 unknown, used, expired or another provider''s); AUI03 manual linking off; AUS02, AUS06.';

--
-- Name: sign_in_with_passkey(uuid, bytea, bytea, bytea, bigint, boolean, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.sign_in_with_passkey(p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_user_handle bytea, p_sign_count bigint, p_backed_up boolean, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_credential auth.webauthn_credentials;
  v_user auth.users;
begin
  perform auth._consume_webauthn_challenge(p_challenge_id, 'authentication', null, p_challenge);
  select * into v_credential from auth.webauthn_credentials
   where credential_id = p_credential_id and factor_id is null for no key update;
  -- The user handle the authenticator returned must name the passkey's own user.
  if not found or p_user_handle is distinct from pg_catalog.convert_to(v_credential.user_id::text, 'UTF8') then
    raise exception using errcode = 'AUW03', message = 'Credential verification failed';
  end if;
  select * into v_user from auth.users where id = v_credential.user_id and deleted_at is null;
  if not found then
    raise exception using errcode = 'AUW03', message = 'Credential verification failed';
  end if;
  if auth._sign_count_regressed(v_credential.sign_count, p_sign_count) then
    -- Committed, with the spent challenge: the refusal of a possibly cloned authenticator stays on record.
    perform auth._audit(v_user, 'passkey_sign_count_regression', 'account', p_ip, pg_catalog.jsonb_build_object(
      'passkey_id', v_credential.id, 'stored_sign_count', v_credential.sign_count, 'sign_count', p_sign_count));
    return pg_catalog.jsonb_build_object('error', 'AUW03', 'message', 'Credential verification failed');
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUS06', message = 'User is banned';
  end if;
  if v_user.email is not null and v_user.email <> '' and v_user.email_confirmed_at is null then
    raise exception using errcode = 'AUS04', message = 'Email not confirmed';
  end if;
  update auth.webauthn_credentials
     set sign_count = p_sign_count, backed_up = coalesce(p_backed_up, backed_up),
         last_used_at = pg_catalog.now(), updated_at = pg_catalog.now()
   where id = v_credential.id;
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', 'passkey', 'passkey_id', v_credential.id));
  return auth._start_session(v_user, 'passkey', p_user_agent, p_ip);
end
$$;

ALTER FUNCTION auth.sign_in_with_passkey(p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_user_handle bytea, p_sign_count bigint, p_backed_up boolean, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION sign_in_with_passkey(p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_user_handle bytea, p_sign_count bigint, p_backed_up boolean, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.sign_in_with_passkey(p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_user_handle bytea, p_sign_count bigint, p_backed_up boolean, p_user_agent text, p_ip inet) IS 'POST /passkeys/authentication/verify, once the service verified the assertion (signature, origin, RP id, user verification): spends the challenge and starts a session (amr passkey) for the passkey''s user. AUW03 for another user''s handle, an unknown credential, or a signature counter that went back (audited passkey_sign_count_regression, committed).';

--
-- Name: sign_in_with_password(uuid, text, text, text, inet, boolean); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.sign_in_with_password(p_user_id uuid, p_verified_hash text, p_rehash text DEFAULT NULL::text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_phone boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
  v_session jsonb;
  v_factor auth.mfa_factors;
  v_login_token text;
  v_challenge auth.mfa_challenges;
  v_hook jsonb;
begin
  select * into v_user from auth.users where id = p_user_id and deleted_at is null for no key update;
  -- The hash must still be the one the service verified: a password changed meanwhile wins.
  if not found or v_user.encrypted_password is distinct from p_verified_hash then
    raise exception using errcode = 'AUS05', message = 'Invalid login credentials';
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUS06', message = 'User is banned';
  end if;
  if p_phone and v_user.phone_confirmed_at is null then
    raise exception using errcode = 'AUP02', message = 'Phone not confirmed';
  end if;
  if not p_phone and v_user.email_confirmed_at is null and v_user.phone_confirmed_at is null then
    raise exception using errcode = 'AUS04', message = 'Email not confirmed';
  end if;
  v_hook := auth._password_attempt_hook(v_user, true);
  if v_hook ->> 'decision' = 'reject' then
    return pg_catalog.jsonb_build_object('error', 'AUH03',
      'message', coalesce(v_hook ->> 'message', 'Sign-in refused'));
  end if;
  update auth.users
     set last_sign_in_at = pg_catalog.now(),
         encrypted_password = coalesce(p_rehash, encrypted_password)
   where id = v_user.id
  returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', case when p_phone then 'phone' else 'email' end));
  if not auth._needs_email_step(v_user) then
    return auth._start_session(v_user, 'password', p_user_agent, p_ip);
  end if;

  v_factor := auth._email_factor(v_user);
  if (select s.mfa_email_strict from auth.settings s) then
    -- No session yet: the emailed code and this token, together, will create it.
    v_login_token := auth.url_encode(auth._random_bytes(32));
    v_challenge := auth._issue_mfa_email(v_user, v_factor, null, p_ip);
    update auth.mfa_challenges set login_token_digest = auth._token_hash(v_login_token) where id = v_challenge.id;
    return pg_catalog.jsonb_build_object('twofa_required', true, 'methods', '["email"]'::jsonb,
                                         'challenge_token', v_login_token,
                                         'expires_at', auth._epoch(v_challenge.expires_at));
  end if;
  v_session := auth._start_session(v_user, 'password', p_user_agent, p_ip);
  perform auth._issue_mfa_email(v_user, v_factor, auth._session_of(v_session), p_ip);
  return v_session;
end
$$;

ALTER FUNCTION auth.sign_in_with_password(p_user_id uuid, p_verified_hash text, p_rehash text, p_user_agent text, p_ip inet, p_phone boolean) OWNER TO authgres_owner;

--
-- Name: FUNCTION sign_in_with_password(p_user_id uuid, p_verified_hash text, p_rehash text, p_user_agent text, p_ip inet, p_phone boolean); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.sign_in_with_password(p_user_id uuid, p_verified_hash text, p_rehash text, p_user_agent text, p_ip inet, p_phone boolean) IS 'Signs a user in after the service verified p_verified_hash; p_rehash replaces an outdated hash. p_phone: the user was found by phone number, which must then be confirmed.';

--
-- Name: sign_up(text, text, jsonb, text, text, inet, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.sign_up(p_email text, p_password_hash text, p_data jsonb DEFAULT '{}'::jsonb, p_redirect_to text DEFAULT NULL::text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_email text := auth._normalize_email(p_email);
  v_user auth.users;
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  select * into v_settings from auth.settings;
  if v_settings.disable_signup then
    raise exception using errcode = 'AUS02', message = 'Signups not allowed for this instance';
  end if;
  if p_password_hash is null then
    raise exception using errcode = 'AUV01', message = 'Signup requires a valid password';
  end if;
  if not v_settings.mailer_autoconfirm then
    perform auth._throttle_email(v_email, 'confirmation', p_ip);
    if v_settings.signup_deferred then
      return auth._defer_signup(v_email, p_password_hash, p_data, p_redirect_to, p_code_challenge, v_method);
    end if;
  end if;

  v_user := auth._new_email_user(v_email, p_password_hash, p_data, p_ip);
  if v_user.id is null then
    if v_settings.mailer_autoconfirm then
      raise exception using errcode = 'AUS01', message = 'User already registered';
    end if;
    select * into strict v_user from auth.users where email = v_email and not is_sso_user;
    if v_user.email_confirmed_at is null then
      perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
      return auth._user_json(v_user);
    end if;
    -- A confirmed address: answer with a look-alike user that has no identity, as GoTrue does, so the
    -- response does not confirm that the address is registered.
    return pg_catalog.jsonb_build_object(
      'id', pg_catalog.gen_random_uuid(), 'aud', v_settings.jwt_aud, 'role', '', 'email', v_email, 'phone', '',
      'confirmation_sent_at', pg_catalog.now(),
      'app_metadata', '{"provider": "email", "providers": ["email"]}'::jsonb,
      'user_metadata', coalesce(p_data, '{}'), 'identities', '[]'::jsonb,
      'created_at', pg_catalog.now(), 'updated_at', pg_catalog.now(), 'is_anonymous', false);
  end if;

  if not v_settings.mailer_autoconfirm then
    perform auth._queue_email(v_user, 'confirmation', v_email, p_redirect_to, '{}', null, p_code_challenge, v_method);
    select * into strict v_user from auth.users where id = v_user.id;
    return auth._user_json(v_user);
  end if;
  v_user := auth._confirm_email(v_user);
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  update auth.identities set last_sign_in_at = pg_catalog.now() where user_id = v_user.id;
  perform auth._audit(v_user, 'login', 'account', p_ip, '{"provider": "email"}');
  return auth._start_session(v_user, 'password', p_user_agent, p_ip);
end
$$;

ALTER FUNCTION auth.sign_up(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_user_agent text, p_ip inet, p_code_challenge text, p_code_challenge_method text) OWNER TO authgres_owner;

--
-- Name: FUNCTION sign_up(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_user_agent text, p_ip inet, p_code_challenge text, p_code_challenge_method text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.sign_up(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_user_agent text, p_ip inet, p_code_challenge text, p_code_challenge_method text) IS 'Email + password sign-up. Autoconfirm: a new user and a session, or AUS01 for a taken address. Deferred: a pending sign-up (see _defer_signup). Otherwise the unconfirmed user with a confirmation email queued (a look-alike without identities when the address is already confirmed). With a code challenge the emailed link is a PKCE flow''s.';

--
-- Name: sign_up_phone(text, text, jsonb, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.sign_up_phone(p_phone text, p_password_hash text, p_data jsonb DEFAULT '{}'::jsonb, p_channel text DEFAULT 'sms'::text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_phone text := auth._normalize_phone(p_phone);
  v_user auth.users;
begin
  select * into v_settings from auth.settings;
  if v_settings.disable_signup then
    raise exception using errcode = 'AUS02', message = 'Signups not allowed for this instance';
  end if;
  if p_password_hash is null then
    raise exception using errcode = 'AUV01', message = 'Signup requires a valid password';
  end if;
  if not v_settings.sms_autoconfirm then
    perform auth._throttle_sms(v_phone, 'phone_confirmation');
    if v_settings.signup_deferred then
      select * into v_user from auth.users where phone = v_phone;
      if not found then
        perform auth._queue_pending_phone_signup(v_phone, p_channel, true, p_password_hash, p_data);
      elsif v_user.phone_confirmed_at is null then
        -- A user made before sign-ups were deferred, still unconfirmed: confirmed as before.
        perform auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false);
      end if;
      return auth._pending_signup_answer(null, v_phone, p_data);
    end if;
  end if;
  v_user := auth._new_phone_user(v_phone, p_password_hash, p_data, p_ip);
  if v_user.id is null then
    if v_settings.sms_autoconfirm then
      raise exception using errcode = 'AUS01', message = 'User already registered';
    end if;
    select * into strict v_user from auth.users where phone = v_phone;
    if v_user.phone_confirmed_at is null then
      perform auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false);
      select * into strict v_user from auth.users where id = v_user.id;
      return auth._user_json(v_user);
    end if;
    -- A confirmed number: a look-alike user without identities, as for email, so the answer does not
    -- confirm that the number is registered.
    return pg_catalog.jsonb_build_object(
      'id', pg_catalog.gen_random_uuid(), 'aud', v_settings.jwt_aud, 'role', '', 'email', '', 'phone', v_phone,
      'confirmation_sent_at', pg_catalog.now(),
      'app_metadata', '{"provider": "phone", "providers": ["phone"]}'::jsonb,
      'user_metadata', coalesce(p_data, '{}'), 'identities', '[]'::jsonb,
      'created_at', pg_catalog.now(), 'updated_at', pg_catalog.now(), 'is_anonymous', false);
  end if;
  if not v_settings.sms_autoconfirm then
    perform auth._queue_sms(v_user, 'phone_confirmation', v_phone, p_channel, false, true);
    select * into strict v_user from auth.users where id = v_user.id;
    return auth._user_json(v_user);
  end if;
  v_user := auth._confirm_phone(v_user);
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  update auth.identities set last_sign_in_at = pg_catalog.now() where user_id = v_user.id;
  perform auth._audit(v_user, 'login', 'account', p_ip, '{"provider": "phone"}');
  return auth._start_session(v_user, 'password', p_user_agent, p_ip);
end
$$;

ALTER FUNCTION auth.sign_up_phone(p_phone text, p_password_hash text, p_data jsonb, p_channel text, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION sign_up_phone(p_phone text, p_password_hash text, p_data jsonb, p_channel text, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.sign_up_phone(p_phone text, p_password_hash text, p_data jsonb, p_channel text, p_user_agent text, p_ip inet) IS 'Phone + password sign-up. Autoconfirm: a new user and a session, or AUS01 for a taken number. Deferred: a pending sign-up (_queue_pending_phone_signup) and a look-alike answer whatever the number. Otherwise the unconfirmed user (a look-alike without identities, and no text, when the number is already confirmed). The code''s text is queued for the sender, not sent while the request waits: how long the answer takes does not tell whether a text went, that is whether the number was registered.';

--
-- Name: signing_keys_for_service(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.signing_keys_for_service() RETURNS TABLE(kid text, algorithm text, private_key text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    BEGIN ATOMIC
 SELECT k.kid,
     k.algorithm,
     k.secret
    FROM auth.signing_keys k
   WHERE ((k.algorithm = 'ES256'::text) AND (k.status = ANY (ARRAY['next'::text, 'current'::text])));
END;

ALTER FUNCTION auth.signing_keys_for_service() OWNER TO authgres_owner;

--
-- Name: FUNCTION signing_keys_for_service(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.signing_keys_for_service() IS 'The private keys the service signs ES256 tokens with: the current key, and the next one ahead of rotation.';

--
-- Name: sms_outbox_stats(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.sms_outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) RETURNS record
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  -- As auth.outbox_stats(): both counts read partial indexes (sms_outbox_due_idx, sms_outbox_dead_idx).
  select pg_catalog.count(*) filter (where o.status = 'pending'),
         pg_catalog.count(*) filter (where o.status = 'sending'),
         (select pg_catalog.count(*) from auth.sms_outbox d where d.status = 'dead'),
         coalesce(extract(epoch from pg_catalog.now() - pg_catalog.min(o.created_at))::double precision, 0)
    from auth.sms_outbox o
   where o.status in ('pending', 'sending');
$$;

ALTER FUNCTION auth.sms_outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) OWNER TO authgres_owner;

--
-- Name: FUNCTION sms_outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.sms_outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) IS 'For the metrics: texts pending, being sent and dead, and the age in seconds of the oldest not yet sent (0 when none).';

--
-- Name: start_provider_flow(text, text, text, text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.start_provider_flow(p_provider text, p_referrer text, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text, p_access_token text DEFAULT NULL::text, p_browser_binding text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_target uuid;
  v_flow uuid;
begin
  if p_access_token is not null then  -- GET /user/identities/authorize: a link to the signed-in user
    if not (select s.manual_linking_enabled from auth.settings s) then
      raise exception using errcode = 'AUI03', message = 'Manual linking is disabled';
    end if;
    v_target := ((auth._signed_in(p_access_token)).usr).id;
  end if;
  insert into auth.flow_state (provider_type, authentication_method, code_challenge, code_challenge_method,
                               referrer, linking_target_id, browser_binding_digest)
  values (p_provider, 'oauth', nullif(p_code_challenge, ''), auth._pkce_method(p_code_challenge, p_code_challenge_method),
          p_referrer, v_target, pg_catalog.sha256(pg_catalog.convert_to(nullif(p_browser_binding, ''), 'UTF8')))
  returning id into v_flow;
  return v_flow;
end
$$;

ALTER FUNCTION auth.start_provider_flow(p_provider text, p_referrer text, p_code_challenge text, p_code_challenge_method text, p_access_token text, p_browser_binding text) OWNER TO authgres_owner;

--
-- Name: FUNCTION start_provider_flow(p_provider text, p_referrer text, p_code_challenge text, p_code_challenge_method text, p_access_token text, p_browser_binding text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.start_provider_flow(p_provider text, p_referrer text, p_code_challenge text, p_code_challenge_method text, p_access_token text, p_browser_binding text) IS 'GET /authorize and GET /user/identities/authorize: starts a provider sign-in (with a code challenge, a PKCE flow; with the access token of a signed-in user, a link to that user, AUI03 when manual linking is off; with p_browser_binding, the value of the starting browser''s cookie, a flow only that browser can finish); returns its id, the single-use state sent to the provider.';

--
-- Name: totp(bytea, timestamp with time zone, integer, integer, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.totp(p_secret bytea, p_at timestamp with time zone DEFAULT now(), p_digits integer DEFAULT 6, p_period integer DEFAULT 30, p_algorithm text DEFAULT 'sha1'::text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN auth.hotp(p_secret, (floor((EXTRACT(epoch FROM p_at) / (p_period)::numeric)))::bigint, p_digits, p_algorithm);

ALTER FUNCTION auth.totp(p_secret bytea, p_at timestamp with time zone, p_digits integer, p_period integer, p_algorithm text) OWNER TO authgres_owner;

--
-- Name: FUNCTION totp(p_secret bytea, p_at timestamp with time zone, p_digits integer, p_period integer, p_algorithm text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.totp(p_secret bytea, p_at timestamp with time zone, p_digits integer, p_period integer, p_algorithm text) IS 'RFC 6238 TOTP code at a time.';

--
-- Name: uid(); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE sql STABLE
    RETURN (COALESCE(NULLIF(current_setting('request.jwt.claim.sub'::text, true), ''::text), ((NULLIF(current_setting('request.jwt.claims'::text, true), ''::text))::jsonb ->> 'sub'::text)))::uuid;

ALTER FUNCTION auth.uid() OWNER TO authgres_owner;

--
-- Name: FUNCTION uid(); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.uid() IS 'The sub claim of the request''s JWT. In policies write (select auth.uid()) so it is evaluated once per statement.';

--
-- Name: unenroll_factor(text, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.unenroll_factor(p_access_token text, p_factor_id uuid, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  return auth._unenroll(v_ctx.usr, v_ctx.sess, auth._factor_of((v_ctx.usr).id, p_factor_id), p_ip);
end
$$;

ALTER FUNCTION auth.unenroll_factor(p_access_token text, p_factor_id uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION unenroll_factor(p_access_token text, p_factor_id uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.unenroll_factor(p_access_token text, p_factor_id uuid, p_ip inet) IS 'DELETE /factors/{id}.';

--
-- Name: unenroll_recovery_codes(text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.unenroll_recovery_codes(p_access_token text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  return auth._unenroll(v_ctx.usr, v_ctx.sess, auth._recovery_factor((v_ctx.usr).id), p_ip);
end
$$;

ALTER FUNCTION auth.unenroll_recovery_codes(p_access_token text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION unenroll_recovery_codes(p_access_token text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.unenroll_recovery_codes(p_access_token text, p_ip inet) IS 'DELETE /factors/recovery-codes: removes the caller''s recovery codes (aal2).';

--
-- Name: unlink_identity(text, uuid, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.unlink_identity(p_access_token text, p_identity_id uuid, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users;
  v_identity auth.identities;
begin
  if not (select s.manual_linking_enabled from auth.settings s) then
    raise exception using errcode = 'AUI03', message = 'Manual linking is disabled';
  end if;
  v_user := (auth._signed_in(p_access_token)).usr;
  perform from auth.users where id = v_user.id for update;  -- two unlinks at once cannot leave none
  select * into v_identity from auth.identities where id = p_identity_id and user_id = v_user.id;
  if not found then
    raise exception using errcode = 'AUI04', message = 'Identity doesn''t exist';
  end if;
  if (select count(*) from auth.identities where user_id = v_user.id) <= 1 then
    raise exception using errcode = 'AUI02', message = 'User must have at least 1 identity after unlinking';
  end if;
  delete from auth.identities where id = v_identity.id;
  update auth.users u
     set raw_app_meta_data = u.raw_app_meta_data || pg_catalog.jsonb_build_object(
           'provider', case when u.raw_app_meta_data ->> 'provider' = v_identity.provider
                            then (select i.provider from auth.identities i where i.user_id = u.id
                                   order by i.created_at, i.id limit 1)
                            else u.raw_app_meta_data ->> 'provider' end,
           'providers', (select pg_catalog.jsonb_agg(distinct i.provider) from auth.identities i where i.user_id = u.id)),
         updated_at = pg_catalog.now()
   where u.id = v_user.id
  returning * into v_user;
  perform auth._audit(v_user, 'identity_unlinked', 'user', p_ip,
                      pg_catalog.jsonb_build_object('provider', v_identity.provider));
  return auth._user_json(v_user);
end
$$;

ALTER FUNCTION auth.unlink_identity(p_access_token text, p_identity_id uuid, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION unlink_identity(p_access_token text, p_identity_id uuid, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.unlink_identity(p_access_token text, p_identity_id uuid, p_ip inet) IS 'DELETE /user/identities/{id}: removes one of the signed-in user''s identities. AUI03 manual linking off, AUI04 no such identity of this user, AUI02 it is the last one.';

--
-- Name: update_passkey(text, uuid, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.update_passkey(p_access_token text, p_passkey_id uuid, p_friendly_name text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_user auth.users := (auth._signed_in(p_access_token)).usr;
  v_credential auth.webauthn_credentials;
begin
  if coalesce(p_friendly_name, '') = '' then
    raise exception using errcode = 'AUV01', message = 'friendly_name is required';
  end if;
  if pg_catalog.length(p_friendly_name) > 120 then
    raise exception using errcode = 'AUV01', message = 'friendly_name must be 120 characters or less';
  end if;
  v_credential := auth._passkey_of(v_user.id, p_passkey_id);
  update auth.webauthn_credentials set friendly_name = p_friendly_name, updated_at = pg_catalog.now()
   where id = v_credential.id
  returning * into v_credential;
  perform auth._audit(v_user, 'passkey_updated', 'user', p_ip, pg_catalog.jsonb_build_object('passkey_id', v_credential.id));
  return auth._passkey_json(v_credential);
end
$$;

ALTER FUNCTION auth.update_passkey(p_access_token text, p_passkey_id uuid, p_friendly_name text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION update_passkey(p_access_token text, p_passkey_id uuid, p_friendly_name text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.update_passkey(p_access_token text, p_passkey_id uuid, p_friendly_name text, p_ip inet) IS 'PATCH /passkeys/{id}: renames one of the user''s passkeys (1 to 120 characters). AUW06 when it is not theirs.';

--
-- Name: update_user(text, jsonb, text, text, text, text, inet, text, text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.update_user(p_access_token text, p_data jsonb DEFAULT NULL::jsonb, p_password_hash text DEFAULT NULL::text, p_email text DEFAULT NULL::text, p_nonce text DEFAULT NULL::text, p_redirect_to text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_code_challenge text DEFAULT NULL::text, p_code_challenge_method text DEFAULT NULL::text, p_phone text DEFAULT NULL::text, p_channel text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_auth record;
  v_user auth.users;
  v_email text;
  v_sent jsonb := '{}';
  v_method text := auth._pkce_method(p_code_challenge, p_code_challenge_method);
begin
  select * into v_settings from auth.settings;
  select * into v_auth from auth._authorize(p_access_token, true);
  v_user := v_auth.usr;
  if p_data is not null then
    if pg_catalog.jsonb_typeof(p_data) <> 'object' then
      raise exception using errcode = 'AUV01', message = 'data must be a JSON object';
    end if;
    update auth.users
       set raw_user_meta_data = auth._merge_metadata(raw_user_meta_data, p_data),
           updated_at = pg_catalog.now()
     where id = v_user.id
    returning * into v_user;
    perform auth._audit(v_user, 'user_modified', 'user', p_ip);
  end if;

  if p_password_hash is not null then
    if v_user.is_anonymous and v_user.email is null and v_user.phone is null then
      raise exception using errcode = 'AUV02',
        message = 'Updating password of an anonymous user without an email or phone is not allowed';
    end if;
    if p_nonce is not null or (v_settings.secure_password_change
        and coalesce((v_auth.sess).created_at, '-infinity') < pg_catalog.now() - interval '24 hours') then
      perform auth._spend_reauthentication_nonce(v_user, p_nonce, 'Password update requires reauthentication');
    end if;
    update auth.users set encrypted_password = p_password_hash, updated_at = pg_catalog.now()
     where id = v_user.id
    returning * into v_user;
    -- A new password ends every other sign-in: whoever knew the old one is logged out.
    delete from auth.sessions where user_id = v_user.id and id is distinct from (v_auth.sess).id;
    perform auth._audit(v_user, 'user_updated_password', 'user', p_ip);
    perform auth._user_event(v_user.id, 'password_changed');
  end if;

  if p_email is not null then
    v_email := auth._normalize_email(p_email);
    if v_email is distinct from v_user.email then
      if exists (select from auth.users where email = v_email and id <> v_user.id) then
        raise exception using errcode = 'AUE01', message = 'A user with this email address has already been registered';
      end if;
      perform auth._throttle_email(v_email, 'email_change', p_ip);
      update auth.users set email_change = v_email, email_change_confirm_status = 0 where id = v_user.id
      returning * into v_user;
      delete from auth.one_time_tokens
       where user_id = v_user.id and token_type in ('email_change_current', 'email_change_new');
      if v_settings.mailer_secure_email_change and v_user.email is not null then
        perform auth._queue_email(v_user, 'email_change_current', v_user.email, p_redirect_to,
                                  pg_catalog.jsonb_build_object('new_email', v_email), null,
                                  p_code_challenge, v_method);
      end if;
      perform auth._queue_email(v_user, 'email_change_new', v_email, p_redirect_to,
                                pg_catalog.jsonb_build_object('new_email', v_email), null, p_code_challenge, v_method);
      select * into strict v_user from auth.users where id = v_user.id;
    end if;
  end if;
  if p_phone is not null then
    v_sent := auth._start_phone_change(v_user, p_phone, p_channel, p_ip);
    select * into strict v_user from auth.users where id = v_user.id;
  end if;
  return auth._user_json(v_user) || v_sent;
end
$$;

ALTER FUNCTION auth.update_user(p_access_token text, p_data jsonb, p_password_hash text, p_email text, p_nonce text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text, p_phone text, p_channel text) OWNER TO authgres_owner;

--
-- Name: FUNCTION update_user(p_access_token text, p_data jsonb, p_password_hash text, p_email text, p_nonce text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text, p_phone text, p_channel text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.update_user(p_access_token text, p_data jsonb, p_password_hash text, p_email text, p_nonce text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text, p_phone text, p_channel text) IS 'PUT /user: merges user metadata (null removes a key); sets a new password hash, ending the user''s other sessions (with a reauthentication nonce when required); starts an email change, confirmed from both addresses when mailer_secure_email_change (by PKCE flows'' links with a code challenge); starts a phone change, confirmed by a code texted to the new number (leased to the caller in {sms}).';

--
-- Name: url_decode(text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.url_decode(data text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN decode((replace(replace(data, '-'::text, '+'::text), '_'::text, '/'::text) || substr('==='::text, 1, ((4 - (octet_length(data) % 4)) % 4))), 'base64'::text);

ALTER FUNCTION auth.url_decode(data text) OWNER TO authgres_owner;

--
-- Name: FUNCTION url_decode(data text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.url_decode(data text) IS 'Inverse of auth.url_encode(); raises on malformed input.';

--
-- Name: user_events_since(text, bigint); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.user_events_since(p_access_token text, p_after bigint DEFAULT NULL::bigint) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_limit constant integer := 1000;
  v_auth record;
  v_claims jsonb;
  v_user_id uuid;
  v_session_id uuid;
  v_end bigint;
  v_events jsonb;
  v_count integer;
begin
  if p_after < 0 then
    raise exception using errcode = 'AUV01', message = 'Last-Event-ID must be an event id';
  end if;
  begin
    select * into v_auth from auth._authorize(p_access_token, true);
    v_claims := v_auth.claims;
    v_user_id := (v_auth.usr).id;
    v_session_id := (v_auth.sess).id;
  exception when sqlstate 'AUJ03' or sqlstate 'AUJ04' then
    -- The session, or the account, is gone. A stream that had not yet been told still reads up to the
    -- event that tells it (then it ends); a stream opened now is refused.
    if p_after is null then
      raise;
    end if;
    v_claims := auth._verified_claims(p_access_token);
    v_user_id := (v_claims ->> 'sub')::uuid;
    select e.id into v_end from auth.user_events e
     where e.user_id = v_user_id and e.id > p_after
       and (e.kind = 'account_deleted'
            or (e.kind = 'session_revoked' and e.data ->> 'session_id' = v_claims ->> 'session_id'))
     order by e.id limit 1;
    if v_end is null then
      raise;
    end if;
    v_session_id := (v_claims ->> 'session_id')::uuid;
  end;

  if p_after is null then
    return pg_catalog.jsonb_build_object(
      'user_id', v_user_id, 'session_id', v_session_id, 'expires_at', v_claims -> 'exp', 'events', '[]'::jsonb,
      'more', false, 'last_id', coalesce((select pg_catalog.max(e.id) from auth.user_events e
                                          where e.user_id = v_user_id), 0));
  end if;
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(e) order by e.id), '[]'::jsonb), pg_catalog.count(*),
         coalesce(pg_catalog.max(e.id), p_after)
    into v_events, v_count, p_after
    from (select * from auth.user_events e
           where e.user_id = v_user_id and e.id > p_after and e.id <= coalesce(v_end, e.id)
           order by e.id limit v_limit) e;
  return pg_catalog.jsonb_build_object(
    'user_id', v_user_id, 'session_id', v_session_id, 'expires_at', v_claims -> 'exp', 'events', v_events,
    'more', v_count = v_limit and v_end is distinct from p_after, 'last_id', p_after);
end
$$;

ALTER FUNCTION auth.user_events_since(p_access_token text, p_after bigint) OWNER TO authgres_owner;

--
-- Name: FUNCTION user_events_since(p_access_token text, p_after bigint); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.user_events_since(p_access_token text, p_after bigint) IS 'GET /sessions/events: who the token speaks for (user_id, session_id: null for an API key, expires_at), and the user''s events after p_after (at most 1000, oldest first; more: there are others), or with p_after null none and the newest id as last_id. A token whose session or account has ended since p_after still reads up to the event that says so.';

--
-- Name: verify(text, text, text); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.verify(token text, secret text, algorithm text DEFAULT 'HS256'::text) RETURNS TABLE(header json, payload json, valid boolean)
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
begin
  return query select c.header, c.payload, c.signed and c.unexpired
                 from auth._check_jwt(token, secret, algorithm) c;
end
$$;

ALTER FUNCTION auth.verify(token text, secret text, algorithm text) OWNER TO authgres_owner;

--
-- Name: FUNCTION verify(token text, secret text, algorithm text); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.verify(token text, secret text, algorithm text) IS 'Verifies a compact JWT (pgjwt-compatible): valid only with a matching signature under the given algorithm, a header naming that algorithm, a numeric exp in the future and no nbf in the future.';

--
-- Name: verify_email_token(text, text, text, text, text, inet, text, boolean); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.verify_email_token(p_type text, p_email text DEFAULT NULL::text, p_code text DEFAULT NULL::text, p_token_hash text DEFAULT NULL::text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_password_hash text DEFAULT NULL::text, p_link boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_settings auth.settings;
  v_types text[];
  v_token auth.one_time_tokens;
  v_user auth.users;
  v_email text;
  v_found boolean := false;
  v_auth_code text;
begin
  v_types := case p_type
    when 'signup' then array['confirmation']
    when 'invite' then array['invite']
    when 'magiclink' then array['magiclink']
    when 'recovery' then array['recovery']
    when 'email' then array['confirmation', 'invite', 'magiclink', 'recovery']
    when 'email_change' then array['email_change_current', 'email_change_new']
    when 'email_change_current' then array['email_change_current']
    when 'email_change_new' then array['email_change_new']
  end;
  if v_types is null then
    raise exception using errcode = 'AUV01', message = 'Unsupported verification type';
  end if;
  select * into v_settings from auth.settings;

  if p_token_hash is not null then
    -- A link token: 224 bits, found by its digest; guessing is hopeless, so attempts are not counted.
    select * into v_token from auth.one_time_tokens
     where token_digest = auth._token_hash(pg_catalog.regexp_replace(pg_catalog.lower(p_token_hash), '^pkce_', ''))
       and token_type = any (v_types)
     for update;
    v_found := found and v_token.expires_at > pg_catalog.now();
    if not v_found then
      return auth._verify_error('Email link is invalid or has expired');
    end if;
  else
    if p_code is null or p_email is null then
      raise exception using errcode = 'AUV01', message = 'Verify requires either a token or a token hash';
    end if;
    v_email := auth._normalize_email(p_email);
    v_token := auth._spend_code(v_email, v_types, p_code);
    if v_token.id is null then
      return auth._verify_error('Token has expired or is invalid');
    end if;
  end if;

  if p_password_hash is not null and v_token.token_type <> 'recovery' then
    raise exception using errcode = 'AUV01', message = 'A new password can only be set with a recovery code';
  end if;
  delete from auth.one_time_tokens where id = v_token.id;
  v_user := auth._user_of_spent_token(v_token, p_ip);
  if v_user.id is null then
    return auth._verify_error('Email link is invalid or has expired');
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;

  if v_token.token_type like 'email_change%' then
    -- This address is proven: its other links (of other PKCE flows) are spent with this one.
    delete from auth.one_time_tokens where user_id = v_user.id and token_type = v_token.token_type;
    if exists (select from auth.one_time_tokens
                where user_id = v_user.id and token_type in ('email_change_current', 'email_change_new')) then
      update auth.users set email_change_confirm_status = 1 where id = v_user.id;
      return pg_catalog.jsonb_build_object(
        'msg', 'Confirmation link accepted. Please proceed to confirm link sent to the other email',
        'code', '200');
    end if;
    if exists (select from auth.users where email = v_user.email_change and id <> v_user.id) then
      raise exception using errcode = 'AUE01', message = 'A user with this email address has already been registered';
    end if;
    update auth.users
       set email = email_change, email_change = '', email_change_confirm_status = 0,
           email_confirmed_at = pg_catalog.now(), is_anonymous = false, updated_at = pg_catalog.now(),
           raw_user_meta_data = raw_user_meta_data || pg_catalog.jsonb_build_object('email', email_change)
     where id = v_user.id
    returning * into v_user;
    insert into auth.identities (provider_id, user_id, identity_data, provider)
    values (v_user.id::text, v_user.id, pg_catalog.jsonb_build_object(
              'sub', v_user.id, 'email', v_user.email, 'email_verified', true, 'phone_verified', false), 'email')
    on conflict (provider_id, provider) do update
       set identity_data = auth.identities.identity_data || pg_catalog.jsonb_build_object('email', v_user.email),
           updated_at = pg_catalog.now();
    if v_user.raw_app_meta_data -> 'provider' is null then
      update auth.users set raw_app_meta_data = raw_app_meta_data || '{"provider": "email", "providers": ["email"]}'
       where id = v_user.id returning * into v_user;
    end if;
    perform auth._audit(v_user, 'user_modified', 'user', p_ip, '{"change": "email"}');
  else
    if v_token.token_type = 'invite' then
      update auth.users set invited_at = coalesce(invited_at, pg_catalog.now()) where id = v_user.id
      returning * into v_user;
    end if;
    -- Whoever reads the mailbox owns the address: every emailed token also confirms it.
    v_user := auth._confirm_email(v_user);
  end if;

  if p_password_hash is not null then
    -- The one-call reset: the new password, and every session that knew the old one ends.
    update auth.users set encrypted_password = p_password_hash, updated_at = pg_catalog.now()
     where id = v_user.id
    returning * into v_user;
    delete from auth.sessions where user_id = v_user.id;
    perform auth._audit(v_user, 'user_updated_password', 'user', p_ip, '{"via": "recovery"}');
    perform auth._user_event(v_user.id, 'password_changed');
  end if;
  delete from auth.one_time_tokens
   where user_id = v_user.id and token_type in ('confirmation', 'invite', 'magiclink', 'recovery');
  if p_link and v_token.flow_state_id is not null then
    -- A PKCE flow's link, followed: the session waits for whoever holds the code and the verifier.
    v_auth_code := auth._issue_auth_code(v_token.flow_state_id, v_user.id);
    if v_auth_code is null then
      raise exception using errcode = 'AUF01', message = 'No associated flow state found.';
    end if;
    return pg_catalog.jsonb_build_object('auth_code', v_auth_code, 'redirect_to', v_token.redirect_to,
                                         'verification_type', v_token.token_type);
  end if;
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', 'email', 'via', v_token.token_type));
  return auth._start_session(v_user, 'otp', p_user_agent, p_ip)
    || pg_catalog.jsonb_build_object('redirect_to', v_token.redirect_to, 'verification_type', v_token.token_type);
end
$$;

ALTER FUNCTION auth.verify_email_token(p_type text, p_email text, p_code text, p_token_hash text, p_user_agent text, p_ip inet, p_password_hash text, p_link boolean) OWNER TO authgres_owner;

--
-- Name: FUNCTION verify_email_token(p_type text, p_email text, p_code text, p_token_hash text, p_user_agent text, p_ip inet, p_password_hash text, p_link boolean); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.verify_email_token(p_type text, p_email text, p_code text, p_token_hash text, p_user_agent text, p_ip inet, p_password_hash text, p_link boolean) IS 'POST/GET /verify: consumes an emailed token (by address + code, or by link token) and signs the user in, in one transaction; with p_password_hash (recovery tokens only) it also sets the new password and ends the user''s other sessions. Wrong codes count against the token; the failure is returned as {"error": "AUO01"} so that the count commits. The response also names the token''s redirect_to. With p_link (the link was followed: GET /verify), a token of a PKCE flow answers {auth_code} instead of a session (see pkce.sql).';

--
-- Name: verify_factor(text, uuid, uuid, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.verify_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_code text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
  v_factor auth.mfa_factors;
  v_check record;
  v_first boolean;
  v_codes jsonb;
  v_newly_verified boolean;
  v_session auth.sessions;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_session := auth._lock_for_second_factor(v_ctx.usr, v_ctx.sess);
  v_factor := auth._factor_of((v_ctx.usr).id, p_factor_id);
  if v_factor.factor_type = 'phone' and not (select s.mfa_phone_verify_enabled from auth.settings s) then
    raise exception using errcode = 'AUM12', message = 'MFA verification is disabled for Phone';
  end if;
  if v_factor.factor_type = 'webauthn' then  -- answered by auth.verify_webauthn_factor, never by a code
    raise exception using errcode = 'AUV01', message = 'WebAuthn config required';
  end if;
  if pg_catalog.btrim(coalesce(p_code, '')) = '' then
    raise exception using errcode = 'AUV01', message = 'Code needs to be non-empty';
  end if;
  select * into v_check from auth._verify_challenge(v_ctx.usr, v_factor, p_challenge_id, p_code, p_ip);
  if not v_check.ok then
    return v_check.failure;
  end if;

  select v_factor.factor_type = 'totp' and s.mfa_recovery_codes_with_first_factor and s.mfa_recovery_codes_enroll_enabled
         and not exists (select from auth.mfa_factors f where f.user_id = (v_ctx.usr).id and f.status = 'verified'
                            and f.factor_type in ('totp', 'recovery_code'))
    into v_first from auth.settings s;
  v_newly_verified := v_factor.status = 'unverified';
  if v_newly_verified then
    update auth.mfa_factors set status = 'verified', updated_at = pg_catalog.now() where id = v_factor.id
    returning * into v_factor;
    perform auth._audit(v_ctx.usr, 'factor_verified', 'user', p_ip, pg_catalog.jsonb_build_object('factor_id', v_factor.id));
  end if;
  -- As GoTrue: once a factor protects the account, sign-ins that stopped at aal1 end.
  delete from auth.sessions where user_id = (v_ctx.usr).id and id <> v_session.id and aal = 'aal1';
  if v_newly_verified then
    perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                             pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'verified'));
  end if;
  if v_first then  -- before the answer is made, so that its user has them among its factors
    v_codes := auth._issue_recovery_codes(v_ctx.usr, 'generate') -> 'codes';
  end if;
  return auth._raise_session_aal(v_ctx.usr, v_session, v_factor, v_check.method)
         || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('recovery_codes', v_codes));
end
$$;

ALTER FUNCTION auth.verify_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_code text, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION verify_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_code text, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.verify_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_code text, p_user_agent text, p_ip inet) IS 'POST /factors/{id}/verify: proves a factor (or spends a recovery code) and raises the session to aal2. Verifying the first TOTP factor of a user without recovery codes also returns 10 of them, once (mfa_recovery_codes_with_first_factor).';

--
-- Name: verify_phone_token(text, text, text, text, inet, boolean); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.verify_phone_token(p_type text, p_phone text, p_code text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet, p_provider_approved boolean DEFAULT NULL::boolean) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_phone text := auth._normalize_phone(p_phone);
  v_types text[];
  v_token auth.one_time_tokens;
  v_user auth.users;
begin
  v_types := case p_type when 'sms' then array['phone_confirmation'] when 'phone_change' then array['phone_change'] end;
  if v_types is null then
    raise exception using errcode = 'AUV01', message = 'Unsupported verification type';
  end if;
  if p_provider_approved is null and pg_catalog.btrim(coalesce(p_code, '')) = '' then
    raise exception using errcode = 'AUV01', message = 'Verify requires either a token or a token hash';
  end if;
  v_token := auth._spend_code(v_phone, v_types, p_code, p_provider_approved);
  if v_token.id is null then
    return auth._verify_error('Token has expired or is invalid');
  end if;
  delete from auth.one_time_tokens where id = v_token.id;
  v_user := auth._user_of_spent_token(v_token, p_ip);  -- a pending sign-up's is made now, confirmed below
  if v_user.id is null then
    return auth._verify_error('Token has expired or is invalid');
  end if;
  if v_user.banned_until > pg_catalog.now() then
    raise exception using errcode = 'AUJ05', message = 'User is banned';
  end if;
  if v_token.token_type = 'phone_change' then
    if exists (select from auth.users where phone = v_phone and id <> v_user.id) then
      raise exception using errcode = 'AUP03', message = 'A user with this phone number has already been registered';
    end if;
    update auth.users
       set phone = phone_change, phone_change = '', phone_confirmed_at = pg_catalog.now(), is_anonymous = false,
           updated_at = pg_catalog.now(),
           raw_user_meta_data = raw_user_meta_data || pg_catalog.jsonb_build_object('phone', v_phone, 'phone_verified', true)
     where id = v_user.id
    returning * into v_user;
    insert into auth.identities (provider_id, user_id, identity_data, provider)
    values (v_user.id::text, v_user.id, pg_catalog.jsonb_build_object(
              'sub', v_user.id, 'phone', v_phone, 'email_verified', false, 'phone_verified', true), 'phone')
    on conflict (provider_id, provider) do update
       set identity_data = auth.identities.identity_data
                           || pg_catalog.jsonb_build_object('phone', v_phone, 'phone_verified', true),
           updated_at = pg_catalog.now();
    if v_user.raw_app_meta_data -> 'provider' is null then
      update auth.users set raw_app_meta_data = raw_app_meta_data || '{"provider": "phone", "providers": ["phone"]}'
       where id = v_user.id returning * into v_user;
    elsif not coalesce(v_user.raw_app_meta_data -> 'providers', '[]') ? 'phone' then
      update auth.users
         set raw_app_meta_data = pg_catalog.jsonb_set(raw_app_meta_data, '{providers}',
                                   coalesce(raw_app_meta_data -> 'providers', '[]') || '["phone"]')
       where id = v_user.id returning * into v_user;
    end if;
    perform auth._audit(v_user, 'user_modified', 'user', p_ip, '{"change": "phone"}');
  else
    v_user := auth._confirm_phone(v_user);
  end if;
  -- Whoever holds the phone has proven it: the other codes of this purpose die with this one.
  delete from auth.one_time_tokens where user_id = v_user.id and token_type = v_token.token_type;
  update auth.users set last_sign_in_at = pg_catalog.now() where id = v_user.id returning * into v_user;
  update auth.identities set last_sign_in_at = pg_catalog.now() where user_id = v_user.id and provider = 'phone';
  perform auth._audit(v_user, 'login', 'account', p_ip,
                      pg_catalog.jsonb_build_object('provider', 'phone', 'via', v_token.token_type));
  return auth._start_session(v_user, 'otp', p_user_agent, p_ip);
end
$$;

ALTER FUNCTION auth.verify_phone_token(p_type text, p_phone text, p_code text, p_user_agent text, p_ip inet, p_provider_approved boolean) OWNER TO authgres_owner;

--
-- Name: FUNCTION verify_phone_token(p_type text, p_phone text, p_code text, p_user_agent text, p_ip inet, p_provider_approved boolean); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.verify_phone_token(p_type text, p_phone text, p_code text, p_user_agent text, p_ip inet, p_provider_approved boolean) IS 'POST /verify with type sms or phone_change: spends the texted code (counted against it when wrong; the failure returned as {"error": "AUO01"} so that the count commits), confirms the number (making the user of a pending sign-up) or completes the change, and signs the user in, in one transaction. p_provider_approved: Twilio Verify checked the code.';

--
-- Name: verify_recovery_code(text, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.verify_recovery_code(p_access_token text, p_code text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_window constant interval := interval '15 minutes';
  v_settings auth.settings;
  v_ctx record;
  v_session auth.sessions;
  v_factor auth.mfa_factors;
  v_failures auth.rate_limits;
begin
  select * into v_settings from auth.settings;
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_session := auth._lock_for_second_factor(v_ctx.usr, v_ctx.sess);
  if not v_settings.mfa_recovery_codes_verify_enabled then
    raise exception using errcode = 'AUM16', message = 'MFA verification is disabled for recovery codes';
  end if;
  v_factor := auth._recovery_factor((v_ctx.usr).id);
  select * into v_failures from auth.rate_limits where key = auth._recovery_code_lock_key((v_ctx.usr).id);
  if found and v_failures.window_started_at + v_window > pg_catalog.now()
     and v_failures.hits >= v_settings.mfa_max_attempts then
    raise exception using errcode = 'AUM19',
      message = 'Too many wrong recovery codes. Try again in ' || auth._seconds_left(v_failures, v_window) || ' seconds.',
      detail = auth._seconds_left(v_failures, v_window)::text;
  end if;
  if auth._canonical_recovery_code(p_code) = '' then
    raise exception using errcode = 'AUM06', message = 'Recovery code is required';
  end if;
  if not auth._use_recovery_code(v_ctx.usr, p_code, p_ip) then
    -- Counted and answered, not raised, so that the count commits.
    perform auth._count_hit(auth._recovery_code_lock_key((v_ctx.usr).id), v_window);
    return pg_catalog.jsonb_build_object('error', 'AUM06', 'message', 'Invalid recovery code');
  end if;
  delete from auth.rate_limits where key = auth._recovery_code_lock_key((v_ctx.usr).id);
  -- As for any factor: once the session is aal2, the user's sign-ins that stopped at aal1 end.
  delete from auth.sessions where user_id = (v_ctx.usr).id and id <> v_session.id and aal = 'aal1';
  return auth._raise_session_aal(v_ctx.usr, v_session, v_factor, 'mfa/recovery_code');
end
$$;

ALTER FUNCTION auth.verify_recovery_code(p_access_token text, p_code text, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION verify_recovery_code(p_access_token text, p_code text, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.verify_recovery_code(p_access_token text, p_code text, p_user_agent text, p_ip inet) IS 'POST /factors/recovery-codes/verify: spends one recovery code and raises the session to aal2 (amr mfa/recovery_code). mfa_max_attempts wrong codes in 15 minutes lock verification (AUM19) until the window ends or the codes are regenerated.';

--
-- Name: verify_webauthn_factor(text, uuid, uuid, text, bytea, bytea, bigint, bytea, uuid, jsonb, boolean, boolean, text, text, inet); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.verify_webauthn_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_type text, p_challenge bytea, p_credential_id bytea, p_sign_count bigint, p_public_key bytea DEFAULT NULL::bytea, p_aaguid uuid DEFAULT NULL::uuid, p_transports jsonb DEFAULT NULL::jsonb, p_backup_eligible boolean DEFAULT NULL::boolean, p_backed_up boolean DEFAULT NULL::boolean, p_attestation_type text DEFAULT NULL::text, p_user_agent text DEFAULT NULL::text, p_ip inet DEFAULT NULL::inet) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_ctx record;
  v_session auth.sessions;
  v_factor auth.mfa_factors;
  v_challenge auth.mfa_challenges;
  v_credential auth.webauthn_credentials;
  v_newly_verified boolean;
  v_stale uuid;
  v_response jsonb;
begin
  select * into v_ctx from auth._mfa_user(p_access_token);
  v_session := auth._lock_for_second_factor(v_ctx.usr, v_ctx.sess);
  v_factor := auth._factor_of((v_ctx.usr).id, p_factor_id);
  if v_factor.factor_type <> 'webauthn' then
    raise exception using errcode = 'AUV01', message = 'Code needs to be non-empty';
  end if;
  if not (select s.mfa_web_authn_enabled from auth.settings s) then
    raise exception using errcode = 'AUM14', message = 'MFA verification is disabled for WebAuthn';
  end if;
  if p_type is distinct from (case v_factor.status when 'verified' then 'request' else 'create' end) then
    raise exception using errcode = 'AUV01', message = 'WebAuthn type must be create or request';
  end if;
  select * into v_challenge from auth.mfa_challenges
   where id = p_challenge_id and factor_id = v_factor.id for update;
  if not found then
    raise exception using errcode = 'AUM01', message = 'MFA factor with the provided challenge ID not found';
  end if;
  if v_challenge.verified_at is not null or v_challenge.expires_at <= pg_catalog.now() then
    raise exception using errcode = 'AUM07',
      message = pg_catalog.format('MFA challenge %s has expired, verify against another challenge or create a new challenge.', v_challenge.id);
  end if;
  if v_challenge.ip_address is distinct from p_ip and v_challenge.ip_address is not null and p_ip is not null then
    raise exception using errcode = 'AUM08', message = 'Challenge and verify IP addresses mismatch.';
  end if;
  if not auth._equal_keyed(v_challenge.web_authn_challenge, p_challenge) then
    raise exception using errcode = 'AUM06', message = 'Invalid WebAuthn response';
  end if;
  -- Spent by this answer, whatever follows: concurrent answers waited on the row and find it verified.
  update auth.mfa_challenges set verified_at = pg_catalog.now() where id = v_challenge.id;

  v_newly_verified := v_factor.status = 'unverified';
  if v_newly_verified then
    begin
      insert into auth.webauthn_credentials (user_id, factor_id, credential_id, public_key, attestation_type, aaguid,
                                             sign_count, transports, backup_eligible, backed_up, friendly_name,
                                             last_used_at)
      values ((v_ctx.usr).id, v_factor.id, p_credential_id, p_public_key, coalesce(p_attestation_type, ''), p_aaguid,
              coalesce(p_sign_count, 0), coalesce(p_transports, '[]'), coalesce(p_backup_eligible, false),
              coalesce(p_backed_up, false), v_factor.friendly_name, pg_catalog.now());
    exception when unique_violation then
      raise exception using errcode = 'AUW05', message = 'This credential is already registered';
    end;
    update auth.mfa_factors set status = 'verified', updated_at = pg_catalog.now() where id = v_factor.id
    returning * into v_factor;
    perform auth._audit(v_ctx.usr, 'factor_verified', 'user', p_ip, pg_catalog.jsonb_build_object('factor_id', v_factor.id));
    -- As GoTrue: the other half-enrolled WebAuthn factors go.
    for v_stale in
      delete from auth.mfa_factors
       where user_id = (v_ctx.usr).id and factor_type = 'webauthn' and status = 'unverified' returning id
    loop
      perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                               pg_catalog.jsonb_build_object('factor_id', v_stale, 'action', 'removed'));
    end loop;
  else
    select * into v_credential from auth.webauthn_credentials
     where factor_id = v_factor.id and credential_id = p_credential_id for no key update;
    if not found then  -- another factor's, another user's, or a passkey: not this factor's credential
      return pg_catalog.jsonb_build_object('error', 'AUM06', 'message', 'Invalid WebAuthn response');
    end if;
    if auth._sign_count_regressed(v_credential.sign_count, p_sign_count) then
      perform auth._audit(v_ctx.usr, 'passkey_sign_count_regression', 'user', p_ip, pg_catalog.jsonb_build_object(
        'factor_id', v_factor.id, 'stored_sign_count', v_credential.sign_count, 'sign_count', p_sign_count));
      return pg_catalog.jsonb_build_object('error', 'AUM06', 'message', 'Invalid WebAuthn response');
    end if;
    update auth.webauthn_credentials
       set sign_count = p_sign_count, backed_up = coalesce(p_backed_up, backed_up),
           last_used_at = pg_catalog.now(), updated_at = pg_catalog.now()
     where id = v_credential.id;
  end if;
  delete from auth.sessions where user_id = (v_ctx.usr).id and id <> v_session.id and aal = 'aal1';
  v_response := auth._raise_session_aal(v_ctx.usr, v_session, v_factor, 'mfa/webauthn');
  if v_newly_verified then
    perform auth._user_event((v_ctx.usr).id, 'factor_changed',
                             pg_catalog.jsonb_build_object('factor_id', v_factor.id, 'action', 'verified'));
  end if;
  return v_response;
end
$$;

ALTER FUNCTION auth.verify_webauthn_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_type text, p_challenge bytea, p_credential_id bytea, p_sign_count bigint, p_public_key bytea, p_aaguid uuid, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_user_agent text, p_ip inet) OWNER TO authgres_owner;

--
-- Name: FUNCTION verify_webauthn_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_type text, p_challenge bytea, p_credential_id bytea, p_sign_count bigint, p_public_key bytea, p_aaguid uuid, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_user_agent text, p_ip inet); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.verify_webauthn_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_type text, p_challenge bytea, p_credential_id bytea, p_sign_count bigint, p_public_key bytea, p_aaguid uuid, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_user_agent text, p_ip inet) IS 'POST /factors/{id}/verify with a WebAuthn answer the service verified: create registers the factor''s credential and verifies the factor, request checks it is the factor''s credential and its counter moved on; either raises the session to aal2 (amr mfa/webauthn). The challenge is spent once it was the one signed.';

--
-- Name: webauthn_public_key(bytea); Type: FUNCTION; Schema: auth; Owner: authgres_owner
--

CREATE FUNCTION auth.webauthn_public_key(p_credential_id bytea) RETURNS bytea
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    RETURN (SELECT c.public_key FROM auth.webauthn_credentials c WHERE (c.credential_id = webauthn_public_key.p_credential_id));

ALTER FUNCTION auth.webauthn_public_key(p_credential_id bytea) OWNER TO authgres_owner;

--
-- Name: FUNCTION webauthn_public_key(p_credential_id bytea); Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON FUNCTION auth.webauthn_public_key(p_credential_id bytea) IS 'The registered public key of a credential id (NULL when unknown), to check an assertion''s signature with; whose credential it is, and whether it may be used so, is decided when the result is recorded.';

--
-- Name: api_keys; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.api_keys (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    name text NOT NULL,
    key_prefix text NOT NULL,
    key_digest bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone,
    last_used_at timestamp with time zone,
    revoked_at timestamp with time zone,
    CONSTRAINT api_keys_name_check CHECK (((length(name) >= 1) AND (length(name) <= 100)))
);

ALTER TABLE auth.api_keys OWNER TO authgres_owner;

--
-- Name: TABLE api_keys; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.api_keys IS 'Per-user API keys. The key itself is shown once, at creation.';

--
-- Name: COLUMN api_keys.key_prefix; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.api_keys.key_prefix IS 'The first characters of the key, so that its owner can tell keys apart.';

--
-- Name: COLUMN api_keys.key_digest; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.api_keys.key_digest IS 'SHA-256 of the key.';

--
-- Name: COLUMN api_keys.last_used_at; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.api_keys.last_used_at IS 'When the key was last used, to the minute (not written on every request).';

--
-- Name: audit_log_entries; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.audit_log_entries (
    instance_id uuid DEFAULT '00000000-0000-0000-0000-000000000000'::uuid NOT NULL,
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    payload json NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    ip_address character varying(64) DEFAULT ''::character varying NOT NULL
);

ALTER TABLE auth.audit_log_entries OWNER TO authgres_owner;

--
-- Name: TABLE audit_log_entries; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.audit_log_entries IS 'Security events, written in the same transaction as the event. payload: actor_id, actor_username, action, log_type, traits.';

--
-- Name: email_outbox_id_seq; Type: SEQUENCE; Schema: auth; Owner: authgres_owner
--

CREATE SEQUENCE auth.email_outbox_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER TABLE auth.email_outbox_id_seq OWNER TO authgres_owner;

--
-- Name: email_outbox_id_seq; Type: SEQUENCE OWNED BY; Schema: auth; Owner: authgres_owner
--

ALTER SEQUENCE auth.email_outbox_id_seq OWNED BY auth.email_outbox.id;

--
-- Name: mfa_amr_claims; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.mfa_amr_claims (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    session_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    authentication_method text NOT NULL
);

ALTER TABLE auth.mfa_amr_claims OWNER TO authgres_owner;

--
-- Name: TABLE mfa_amr_claims; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.mfa_amr_claims IS 'Authentication methods used in each session: the amr claim of its access tokens.';

--
-- Name: mfa_recovery_codes; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.mfa_recovery_codes (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    code_digest bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    used_at timestamp with time zone
);

ALTER TABLE auth.mfa_recovery_codes OWNER TO authgres_owner;

--
-- Name: TABLE mfa_recovery_codes; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.mfa_recovery_codes IS 'The codes of a user''s recovery_code factor (80 random bits each), each usable once. SHA-256 only.';

--
-- Name: refresh_tokens_id_seq; Type: SEQUENCE; Schema: auth; Owner: authgres_owner
--

CREATE SEQUENCE auth.refresh_tokens_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER TABLE auth.refresh_tokens_id_seq OWNER TO authgres_owner;

--
-- Name: refresh_tokens_id_seq; Type: SEQUENCE OWNED BY; Schema: auth; Owner: authgres_owner
--

ALTER SEQUENCE auth.refresh_tokens_id_seq OWNED BY auth.refresh_tokens.id;

--
-- Name: schema_function_files; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.schema_function_files (
    file text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE auth.schema_function_files OWNER TO authgres_owner;

--
-- Name: TABLE schema_function_files; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.schema_function_files IS 'Each sql/functions file as last applied: sql/migrate.sh re-applies a file whose SHA-256 differs.';

--
-- Name: schema_migrations; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.schema_migrations (
    version text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    checksum text
);

ALTER TABLE auth.schema_migrations OWNER TO authgres_owner;

--
-- Name: TABLE schema_migrations; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.schema_migrations IS 'Versions of sql/migrations applied to this database, one row per file.';

--
-- Name: COLUMN schema_migrations.checksum; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.schema_migrations.checksum IS 'SHA-256 of the migration file: sql/migrate.sh refuses to run when an applied migration has changed.';

--
-- Name: sms_outbox_id_seq; Type: SEQUENCE; Schema: auth; Owner: authgres_owner
--

CREATE SEQUENCE auth.sms_outbox_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER TABLE auth.sms_outbox_id_seq OWNER TO authgres_owner;

--
-- Name: sms_outbox_id_seq; Type: SEQUENCE OWNED BY; Schema: auth; Owner: authgres_owner
--

ALTER SEQUENCE auth.sms_outbox_id_seq OWNED BY auth.sms_outbox.id;

--
-- Name: user_events; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.user_events (
    id bigint NOT NULL,
    user_id uuid NOT NULL,
    kind text NOT NULL,
    data jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT user_events_kind_check CHECK ((kind = ANY (ARRAY['session_revoked'::text, 'password_changed'::text, 'factor_changed'::text, 'account_deleted'::text])))
);

ALTER TABLE auth.user_events OWNER TO authgres_owner;

--
-- Name: TABLE user_events; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.user_events IS 'Events for a user''s clients (GET /sessions/events), kept a day for resumption; NOTIFYed on authgres_user_events.';

--
-- Name: user_events_id_seq; Type: SEQUENCE; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.user_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME auth.user_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: web3_used_messages; Type: TABLE; Schema: auth; Owner: authgres_owner
--

CREATE TABLE auth.web3_used_messages (
    message_digest bytea NOT NULL,
    used_at timestamp with time zone DEFAULT now() NOT NULL,
    valid_until timestamp with time zone NOT NULL,
    CONSTRAINT web3_used_messages_message_digest_check CHECK ((length(message_digest) = 32))
);

ALTER TABLE auth.web3_used_messages OWNER TO authgres_owner;

--
-- Name: TABLE web3_used_messages; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON TABLE auth.web3_used_messages IS 'Signed wallet sign-in messages already used: a second use is refused. Kept until the message''s validity ends (then auth.prune deletes it).';

--
-- Name: COLUMN web3_used_messages.message_digest; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.web3_used_messages.message_digest IS 'SHA-256 of the message text as signed (UTF-8).';

--
-- Name: COLUMN web3_used_messages.used_at; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.web3_used_messages.used_at IS 'When the message signed in.';

--
-- Name: COLUMN web3_used_messages.valid_until; Type: COMMENT; Schema: auth; Owner: authgres_owner
--

COMMENT ON COLUMN auth.web3_used_messages.valid_until IS 'When the message stops being accepted anyway: its Expiration Time or Issued At plus the maximum validity, the earlier.';

--
-- Name: email_outbox id; Type: DEFAULT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.email_outbox ALTER COLUMN id SET DEFAULT nextval('auth.email_outbox_id_seq'::regclass);

--
-- Name: refresh_tokens id; Type: DEFAULT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.refresh_tokens ALTER COLUMN id SET DEFAULT nextval('auth.refresh_tokens_id_seq'::regclass);

--
-- Name: sms_outbox id; Type: DEFAULT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.sms_outbox ALTER COLUMN id SET DEFAULT nextval('auth.sms_outbox_id_seq'::regclass);

--
-- Name: api_keys api_keys_key_digest_key; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.api_keys
    ADD CONSTRAINT api_keys_key_digest_key UNIQUE (key_digest);

--
-- Name: api_keys api_keys_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

--
-- Name: audit_log_entries audit_log_entries_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.audit_log_entries
    ADD CONSTRAINT audit_log_entries_pkey PRIMARY KEY (id);

--
-- Name: email_outbox email_outbox_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.email_outbox
    ADD CONSTRAINT email_outbox_pkey PRIMARY KEY (id);

--
-- Name: flow_state flow_state_auth_code_digest_key; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.flow_state
    ADD CONSTRAINT flow_state_auth_code_digest_key UNIQUE (auth_code_digest);

--
-- Name: flow_state flow_state_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.flow_state
    ADD CONSTRAINT flow_state_pkey PRIMARY KEY (id);

--
-- Name: identities identities_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.identities
    ADD CONSTRAINT identities_pkey PRIMARY KEY (id);

--
-- Name: identities identities_provider_id_provider_key; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.identities
    ADD CONSTRAINT identities_provider_id_provider_key UNIQUE (provider_id, provider);

--
-- Name: mfa_amr_claims mfa_amr_claims_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_amr_claims
    ADD CONSTRAINT mfa_amr_claims_pkey PRIMARY KEY (id);

--
-- Name: mfa_amr_claims mfa_amr_claims_session_id_authentication_method_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_amr_claims
    ADD CONSTRAINT mfa_amr_claims_session_id_authentication_method_pkey UNIQUE (session_id, authentication_method);

--
-- Name: mfa_challenges mfa_challenges_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_challenges
    ADD CONSTRAINT mfa_challenges_pkey PRIMARY KEY (id);

--
-- Name: mfa_factors mfa_factors_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_factors
    ADD CONSTRAINT mfa_factors_pkey PRIMARY KEY (id);

--
-- Name: mfa_recovery_codes mfa_recovery_codes_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_recovery_codes
    ADD CONSTRAINT mfa_recovery_codes_pkey PRIMARY KEY (id);

--
-- Name: one_time_tokens one_time_tokens_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.one_time_tokens
    ADD CONSTRAINT one_time_tokens_pkey PRIMARY KEY (id);

--
-- Name: pending_signups pending_signups_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.pending_signups
    ADD CONSTRAINT pending_signups_pkey PRIMARY KEY (id);

--
-- Name: rate_limits rate_limits_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.rate_limits
    ADD CONSTRAINT rate_limits_pkey PRIMARY KEY (key);

--
-- Name: refresh_tokens refresh_tokens_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.refresh_tokens
    ADD CONSTRAINT refresh_tokens_pkey PRIMARY KEY (id);

--
-- Name: refresh_tokens refresh_tokens_token_hash_key; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.refresh_tokens
    ADD CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash);

--
-- Name: schema_function_files schema_function_files_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.schema_function_files
    ADD CONSTRAINT schema_function_files_pkey PRIMARY KEY (file);

--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

--
-- Name: sessions sessions_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (id);

--
-- Name: settings settings_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (singleton);

--
-- Name: signing_keys signing_keys_kid_key; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.signing_keys
    ADD CONSTRAINT signing_keys_kid_key UNIQUE (kid);

--
-- Name: signing_keys signing_keys_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.signing_keys
    ADD CONSTRAINT signing_keys_pkey PRIMARY KEY (id);

--
-- Name: sms_outbox sms_outbox_message_id_key; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.sms_outbox
    ADD CONSTRAINT sms_outbox_message_id_key UNIQUE (message_id);

--
-- Name: sms_outbox sms_outbox_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.sms_outbox
    ADD CONSTRAINT sms_outbox_pkey PRIMARY KEY (id);

--
-- Name: user_events user_events_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.user_events
    ADD CONSTRAINT user_events_pkey PRIMARY KEY (id);

--
-- Name: users users_phone_key; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.users
    ADD CONSTRAINT users_phone_key UNIQUE (phone);

--
-- Name: users users_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);

--
-- Name: web3_used_messages web3_used_messages_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.web3_used_messages
    ADD CONSTRAINT web3_used_messages_pkey PRIMARY KEY (message_digest);

--
-- Name: webauthn_challenges webauthn_challenges_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.webauthn_challenges
    ADD CONSTRAINT webauthn_challenges_pkey PRIMARY KEY (id);

--
-- Name: webauthn_credentials webauthn_credentials_credential_id_key; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.webauthn_credentials
    ADD CONSTRAINT webauthn_credentials_credential_id_key UNIQUE (credential_id);

--
-- Name: webauthn_credentials webauthn_credentials_pkey; Type: CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.webauthn_credentials
    ADD CONSTRAINT webauthn_credentials_pkey PRIMARY KEY (id);

--
-- Name: api_keys_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX api_keys_user_id_idx ON auth.api_keys USING btree (user_id);

--
-- Name: audit_log_entries_created_at_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX audit_log_entries_created_at_idx ON auth.audit_log_entries USING btree (created_at);

--
-- Name: email_outbox_dead_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX email_outbox_dead_idx ON auth.email_outbox USING btree (id) WHERE (status = 'dead'::text);

--
-- Name: email_outbox_due_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX email_outbox_due_idx ON auth.email_outbox USING btree (next_attempt_at, id) WHERE (status = ANY (ARRAY['pending'::text, 'sending'::text]));

--
-- Name: flow_state_auth_code_issued_at_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX flow_state_auth_code_issued_at_idx ON auth.flow_state USING btree (auth_code_issued_at) WHERE (auth_code_issued_at IS NOT NULL);

--
-- Name: flow_state_created_at_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX flow_state_created_at_idx ON auth.flow_state USING btree (created_at) WHERE (auth_code_digest IS NULL);

--
-- Name: flow_state_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX flow_state_user_id_idx ON auth.flow_state USING btree (user_id) WHERE (user_id IS NOT NULL);

--
-- Name: identities_email_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX identities_email_idx ON auth.identities USING btree (email text_pattern_ops);

--
-- Name: identities_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX identities_user_id_idx ON auth.identities USING btree (user_id);

--
-- Name: mfa_challenges_factor_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX mfa_challenges_factor_id_idx ON auth.mfa_challenges USING btree (factor_id);

--
-- Name: mfa_challenges_login_token_key; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX mfa_challenges_login_token_key ON auth.mfa_challenges USING btree (login_token_digest);

--
-- Name: mfa_factors_one_recovery_code_set_key; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX mfa_factors_one_recovery_code_set_key ON auth.mfa_factors USING btree (user_id) WHERE (factor_type = 'recovery_code'::text);

--
-- Name: mfa_factors_user_friendly_name_key; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX mfa_factors_user_friendly_name_key ON auth.mfa_factors USING btree (user_id, friendly_name) WHERE (friendly_name <> ''::text);

--
-- Name: mfa_factors_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX mfa_factors_user_id_idx ON auth.mfa_factors USING btree (user_id);

--
-- Name: mfa_recovery_codes_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX mfa_recovery_codes_user_id_idx ON auth.mfa_recovery_codes USING btree (user_id);

--
-- Name: one_time_tokens_digest_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX one_time_tokens_digest_idx ON auth.one_time_tokens USING btree (token_digest);

--
-- Name: one_time_tokens_flow_state_id_key; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX one_time_tokens_flow_state_id_key ON auth.one_time_tokens USING btree (flow_state_id) WHERE (flow_state_id IS NOT NULL);

--
-- Name: one_time_tokens_pending_signup_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX one_time_tokens_pending_signup_id_idx ON auth.one_time_tokens USING btree (pending_signup_id) WHERE (pending_signup_id IS NOT NULL);

--
-- Name: one_time_tokens_relates_to_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX one_time_tokens_relates_to_idx ON auth.one_time_tokens USING btree (relates_to, token_type);

--
-- Name: one_time_tokens_user_id_token_type_key; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX one_time_tokens_user_id_token_type_key ON auth.one_time_tokens USING btree (user_id, token_type) WHERE (flow_state_id IS NULL);

--
-- Name: pending_signups_email_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX pending_signups_email_idx ON auth.pending_signups USING btree (email);

--
-- Name: pending_signups_expires_at_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX pending_signups_expires_at_idx ON auth.pending_signups USING btree (expires_at);

--
-- Name: pending_signups_phone_key; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX pending_signups_phone_key ON auth.pending_signups USING btree (phone) WHERE (phone IS NOT NULL);

--
-- Name: refresh_tokens_one_live_per_session; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX refresh_tokens_one_live_per_session ON auth.refresh_tokens USING btree (session_id) WHERE (NOT revoked);

--
-- Name: refresh_tokens_session_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX refresh_tokens_session_id_idx ON auth.refresh_tokens USING btree (session_id, generation);

--
-- Name: sessions_not_after_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX sessions_not_after_idx ON auth.sessions USING btree (not_after DESC);

--
-- Name: sessions_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX sessions_user_id_idx ON auth.sessions USING btree (user_id, created_at);

--
-- Name: signing_keys_one_current; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX signing_keys_one_current ON auth.signing_keys USING btree (status) WHERE (status = 'current'::text);

--
-- Name: signing_keys_one_next; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX signing_keys_one_next ON auth.signing_keys USING btree (status) WHERE (status = 'next'::text);

--
-- Name: sms_outbox_dead_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX sms_outbox_dead_idx ON auth.sms_outbox USING btree (id) WHERE (status = 'dead'::text);

--
-- Name: sms_outbox_due_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX sms_outbox_due_idx ON auth.sms_outbox USING btree (next_attempt_at, id) WHERE (status = ANY (ARRAY['pending'::text, 'sending'::text]));

--
-- Name: sms_outbox_pending_signup_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX sms_outbox_pending_signup_id_idx ON auth.sms_outbox USING btree (pending_signup_id) WHERE (pending_signup_id IS NOT NULL);

--
-- Name: user_events_created_at_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX user_events_created_at_idx ON auth.user_events USING btree (created_at);

--
-- Name: user_events_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX user_events_user_id_idx ON auth.user_events USING btree (user_id, id);

--
-- Name: users_email_partial_key; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX users_email_partial_key ON auth.users USING btree (email) WHERE (is_sso_user = false);

--
-- Name: users_instance_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX users_instance_id_idx ON auth.users USING btree (instance_id);

--
-- Name: web3_used_messages_valid_until_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX web3_used_messages_valid_until_idx ON auth.web3_used_messages USING btree (valid_until);

--
-- Name: webauthn_challenges_expires_at_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX webauthn_challenges_expires_at_idx ON auth.webauthn_challenges USING btree (expires_at);

--
-- Name: webauthn_challenges_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX webauthn_challenges_user_id_idx ON auth.webauthn_challenges USING btree (user_id) WHERE (user_id IS NOT NULL);

--
-- Name: webauthn_credentials_factor_id_key; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE UNIQUE INDEX webauthn_credentials_factor_id_key ON auth.webauthn_credentials USING btree (factor_id) WHERE (factor_id IS NOT NULL);

--
-- Name: webauthn_credentials_user_id_idx; Type: INDEX; Schema: auth; Owner: authgres_owner
--

CREATE INDEX webauthn_credentials_user_id_idx ON auth.webauthn_credentials USING btree (user_id);

--
-- Name: sessions sessions_ended; Type: TRIGGER; Schema: auth; Owner: authgres_owner
--

CREATE TRIGGER sessions_ended AFTER DELETE ON auth.sessions REFERENCING OLD TABLE AS ended FOR EACH STATEMENT EXECUTE FUNCTION auth._sessions_ended();

--
-- Name: api_keys api_keys_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.api_keys
    ADD CONSTRAINT api_keys_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: email_outbox email_outbox_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.email_outbox
    ADD CONSTRAINT email_outbox_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE SET NULL;

--
-- Name: flow_state flow_state_linking_target_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.flow_state
    ADD CONSTRAINT flow_state_linking_target_id_fkey FOREIGN KEY (linking_target_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: flow_state flow_state_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.flow_state
    ADD CONSTRAINT flow_state_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: identities identities_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.identities
    ADD CONSTRAINT identities_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: mfa_amr_claims mfa_amr_claims_session_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_amr_claims
    ADD CONSTRAINT mfa_amr_claims_session_id_fkey FOREIGN KEY (session_id) REFERENCES auth.sessions(id) ON DELETE CASCADE;

--
-- Name: mfa_challenges mfa_challenges_factor_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_challenges
    ADD CONSTRAINT mfa_challenges_factor_id_fkey FOREIGN KEY (factor_id) REFERENCES auth.mfa_factors(id) ON DELETE CASCADE;

--
-- Name: mfa_challenges mfa_challenges_session_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_challenges
    ADD CONSTRAINT mfa_challenges_session_id_fkey FOREIGN KEY (session_id) REFERENCES auth.sessions(id) ON DELETE CASCADE;

--
-- Name: mfa_factors mfa_factors_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_factors
    ADD CONSTRAINT mfa_factors_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: mfa_recovery_codes mfa_recovery_codes_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.mfa_recovery_codes
    ADD CONSTRAINT mfa_recovery_codes_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: one_time_tokens one_time_tokens_flow_state_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.one_time_tokens
    ADD CONSTRAINT one_time_tokens_flow_state_id_fkey FOREIGN KEY (flow_state_id) REFERENCES auth.flow_state(id) ON DELETE CASCADE;

--
-- Name: one_time_tokens one_time_tokens_pending_signup_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.one_time_tokens
    ADD CONSTRAINT one_time_tokens_pending_signup_id_fkey FOREIGN KEY (pending_signup_id) REFERENCES auth.pending_signups(id) ON DELETE CASCADE;

--
-- Name: one_time_tokens one_time_tokens_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.one_time_tokens
    ADD CONSTRAINT one_time_tokens_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: refresh_tokens refresh_tokens_session_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.refresh_tokens
    ADD CONSTRAINT refresh_tokens_session_id_fkey FOREIGN KEY (session_id) REFERENCES auth.sessions(id) ON DELETE CASCADE;

--
-- Name: sessions sessions_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.sessions
    ADD CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: sms_outbox sms_outbox_pending_signup_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.sms_outbox
    ADD CONSTRAINT sms_outbox_pending_signup_id_fkey FOREIGN KEY (pending_signup_id) REFERENCES auth.pending_signups(id) ON DELETE SET NULL;

--
-- Name: sms_outbox sms_outbox_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.sms_outbox
    ADD CONSTRAINT sms_outbox_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE SET NULL;

--
-- Name: webauthn_challenges webauthn_challenges_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.webauthn_challenges
    ADD CONSTRAINT webauthn_challenges_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: webauthn_credentials webauthn_credentials_factor_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.webauthn_credentials
    ADD CONSTRAINT webauthn_credentials_factor_id_fkey FOREIGN KEY (factor_id) REFERENCES auth.mfa_factors(id) ON DELETE CASCADE;

--
-- Name: webauthn_credentials webauthn_credentials_user_id_fkey; Type: FK CONSTRAINT; Schema: auth; Owner: authgres_owner
--

ALTER TABLE ONLY auth.webauthn_credentials
    ADD CONSTRAINT webauthn_credentials_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: api_keys; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.api_keys ENABLE ROW LEVEL SECURITY;

--
-- Name: audit_log_entries; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.audit_log_entries ENABLE ROW LEVEL SECURITY;

--
-- Name: email_outbox; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.email_outbox ENABLE ROW LEVEL SECURITY;

--
-- Name: flow_state; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.flow_state ENABLE ROW LEVEL SECURITY;

--
-- Name: identities; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.identities ENABLE ROW LEVEL SECURITY;

--
-- Name: mfa_amr_claims; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.mfa_amr_claims ENABLE ROW LEVEL SECURITY;

--
-- Name: mfa_challenges; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.mfa_challenges ENABLE ROW LEVEL SECURITY;

--
-- Name: mfa_factors; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.mfa_factors ENABLE ROW LEVEL SECURITY;

--
-- Name: mfa_recovery_codes; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.mfa_recovery_codes ENABLE ROW LEVEL SECURITY;

--
-- Name: one_time_tokens; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.one_time_tokens ENABLE ROW LEVEL SECURITY;

--
-- Name: pending_signups; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.pending_signups ENABLE ROW LEVEL SECURITY;

--
-- Name: rate_limits; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.rate_limits ENABLE ROW LEVEL SECURITY;

--
-- Name: refresh_tokens; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.refresh_tokens ENABLE ROW LEVEL SECURITY;

--
-- Name: schema_function_files; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.schema_function_files ENABLE ROW LEVEL SECURITY;

--
-- Name: schema_migrations; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.schema_migrations ENABLE ROW LEVEL SECURITY;

--
-- Name: sessions; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.sessions ENABLE ROW LEVEL SECURITY;

--
-- Name: settings; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.settings ENABLE ROW LEVEL SECURITY;

--
-- Name: signing_keys; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.signing_keys ENABLE ROW LEVEL SECURITY;

--
-- Name: sms_outbox; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.sms_outbox ENABLE ROW LEVEL SECURITY;

--
-- Name: user_events; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.user_events ENABLE ROW LEVEL SECURITY;

--
-- Name: users; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;

--
-- Name: web3_used_messages; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.web3_used_messages ENABLE ROW LEVEL SECURITY;

--
-- Name: webauthn_challenges; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.webauthn_challenges ENABLE ROW LEVEL SECURITY;

--
-- Name: webauthn_credentials; Type: ROW SECURITY; Schema: auth; Owner: authgres_owner
--

ALTER TABLE auth.webauthn_credentials ENABLE ROW LEVEL SECURITY;

--
-- Name: SCHEMA auth; Type: ACL; Schema: -; Owner: authgres_owner
--

GRANT USAGE ON SCHEMA auth TO authgres_service;
GRANT USAGE ON SCHEMA auth TO anon;
GRANT USAGE ON SCHEMA auth TO authenticated;
GRANT USAGE ON SCHEMA auth TO service_role;
GRANT USAGE ON SCHEMA auth TO authgres_authenticator;

--
-- Name: SCHEMA extensions; Type: ACL; Schema: -; Owner: postgres
--

GRANT USAGE ON SCHEMA extensions TO authgres_owner;

--
-- Name: FUNCTION _access_token(p_user auth.users, p_session auth.sessions, OUT token text, OUT expires_at bigint); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._access_token(p_user auth.users, p_session auth.sessions, OUT token text, OUT expires_at bigint) FROM PUBLIC;

--
-- Name: FUNCTION _add_provider(p_user auth.users, p_provider text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._add_provider(p_user auth.users, p_provider text) FROM PUBLIC;

--
-- Name: FUNCTION _admin_user(p_user_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._admin_user(p_user_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION _api_key_claims(p_key text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._api_key_claims(p_key text) FROM PUBLIC;

--
-- Name: FUNCTION _audit(p_user auth.users, p_action text, p_log_type text, p_ip inet, p_traits jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._audit(p_user auth.users, p_action text, p_log_type text, p_ip inet, p_traits jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _audit_admin(p_action text, p_user auth.users, p_ip inet, p_traits jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._audit_admin(p_action text, p_user auth.users, p_ip inet, p_traits jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _authorize(p_token text, p_require_user boolean, OUT claims jsonb, OUT usr auth.users, OUT sess auth.sessions); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._authorize(p_token text, p_require_user boolean, OUT claims jsonb, OUT usr auth.users, OUT sess auth.sessions) FROM PUBLIC;

--
-- Name: FUNCTION _call_hook(p_function text, p_event jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._call_hook(p_function text, p_event jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _canonical_recovery_code(p_code text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._canonical_recovery_code(p_code text) FROM PUBLIC;

--
-- Name: FUNCTION _challenge_webauthn_factor(p_user auth.users, p_session_id uuid, p_factor auth.mfa_factors, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._challenge_webauthn_factor(p_user auth.users, p_session_id uuid, p_factor auth.mfa_factors, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _check_jwt(p_token text, p_secret text, p_algorithm text, OUT header json, OUT payload json, OUT signed boolean, OUT unexpired boolean); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._check_jwt(p_token text, p_secret text, p_algorithm text, OUT header json, OUT payload json, OUT signed boolean, OUT unexpired boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION auth._check_jwt(p_token text, p_secret text, p_algorithm text, OUT header json, OUT payload json, OUT signed boolean, OUT unexpired boolean) TO authgres_service;

--
-- Name: FUNCTION _confirm_email(p_user auth.users); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._confirm_email(p_user auth.users) FROM PUBLIC;

--
-- Name: FUNCTION _confirm_phone(p_user auth.users); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._confirm_phone(p_user auth.users) FROM PUBLIC;

--
-- Name: FUNCTION _consume_webauthn_challenge(p_challenge_id uuid, p_challenge_type text, p_user_id uuid, p_challenge bytea); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._consume_webauthn_challenge(p_challenge_id uuid, p_challenge_type text, p_user_id uuid, p_challenge bytea) FROM PUBLIC;

--
-- Name: FUNCTION _count_hit(p_key text, p_window interval); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._count_hit(p_key text, p_window interval) FROM PUBLIC;

--
-- Name: FUNCTION _decode_json_segment(p_segment text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._decode_json_segment(p_segment text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth._decode_json_segment(p_segment text) TO authgres_service;

--
-- Name: FUNCTION _defer_signup(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._defer_signup(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;

--
-- Name: FUNCTION _delete_user(p_user auth.users, p_soft boolean); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._delete_user(p_user auth.users, p_soft boolean) FROM PUBLIC;

--
-- Name: FUNCTION _email_factor(p_user auth.users); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._email_factor(p_user auth.users) FROM PUBLIC;

--
-- Name: FUNCTION _epoch(p_at timestamp with time zone); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._epoch(p_at timestamp with time zone) FROM PUBLIC;

--
-- Name: FUNCTION _equal_keyed(p_left bytea, p_right bytea); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._equal_keyed(p_left bytea, p_right bytea) FROM PUBLIC;

--
-- Name: FUNCTION _equal_secure(p_left text, p_right text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._equal_secure(p_left text, p_right text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth._equal_secure(p_left text, p_right text) TO authgres_service;

--
-- Name: FUNCTION _factor_json(p_factor auth.mfa_factors); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._factor_json(p_factor auth.mfa_factors) FROM PUBLIC;

--
-- Name: FUNCTION _factor_of(p_user_id uuid, p_factor_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._factor_of(p_user_id uuid, p_factor_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION _fixed_code(p_address text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._fixed_code(p_address text) FROM PUBLIC;

--
-- Name: FUNCTION _verification_type(p_token_type text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._verification_type(p_token_type text) FROM PUBLIC;

--
-- Name: FUNCTION _flow_authentication_method(p_token_type text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._flow_authentication_method(p_token_type text) FROM PUBLIC;

--
-- Name: FUNCTION _get_user(p_access_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._get_user(p_access_token text) FROM PUBLIC;

--
-- Name: FUNCTION _hmac(p_data bytea, p_key bytea, p_algorithm text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._hmac(p_data bytea, p_key bytea, p_algorithm text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth._hmac(p_data bytea, p_key bytea, p_algorithm text) TO authgres_service;

--
-- Name: FUNCTION _identity_json(p_identity auth.identities); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._identity_json(p_identity auth.identities) FROM PUBLIC;

--
-- Name: FUNCTION _identity_user(p_provider text, p_subject text, p_claims jsonb, p_link_to uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._identity_user(p_provider text, p_subject text, p_claims jsonb, p_link_to uuid, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _issue_auth_code(p_flow_state uuid, p_user_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._issue_auth_code(p_flow_state uuid, p_user_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION _issue_mfa_email(p_user auth.users, p_factor auth.mfa_factors, p_session_id uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._issue_mfa_email(p_user auth.users, p_factor auth.mfa_factors, p_session_id uuid, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _issue_recovery_codes(p_user auth.users, p_mode text, p_friendly_name text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._issue_recovery_codes(p_user auth.users, p_mode text, p_friendly_name text) FROM PUBLIC;

--
-- Name: FUNCTION _issue_token(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_pending_signup uuid, p_flow_state uuid, OUT code text, OUT link_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._issue_token(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_pending_signup uuid, p_flow_state uuid, OUT code text, OUT link_token text) FROM PUBLIC;

--
-- Name: FUNCTION _link_identity(p_user auth.users, p_provider text, p_subject text, p_claims jsonb, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._link_identity(p_user auth.users, p_provider text, p_subject text, p_claims jsonb, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _link_token(p_address text, p_code text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._link_token(p_address text, p_code text) FROM PUBLIC;

--
-- Name: FUNCTION _live_provider_flow(p_state text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._live_provider_flow(p_state text) FROM PUBLIC;

--
-- Name: FUNCTION _lock_for_second_factor(p_user auth.users, p_session auth.sessions); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._lock_for_second_factor(p_user auth.users, p_session auth.sessions) FROM PUBLIC;

--
-- Name: FUNCTION _strip_nulls(p_object jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._strip_nulls(p_object jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _merge_metadata(p_current jsonb, p_changes jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._merge_metadata(p_current jsonb, p_changes jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _mfa_user(p_access_token text, OUT usr auth.users, OUT sess auth.sessions); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._mfa_user(p_access_token text, OUT usr auth.users, OUT sess auth.sessions) FROM PUBLIC;

--
-- Name: FUNCTION _needs_email_step(p_user auth.users); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._needs_email_step(p_user auth.users) FROM PUBLIC;

--
-- Name: FUNCTION _new_email_user(p_email text, p_password_hash text, p_data jsonb, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._new_email_user(p_email text, p_password_hash text, p_data jsonb, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _pkce_method(p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._pkce_method(p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;

--
-- Name: FUNCTION _new_flow_state(p_user_id uuid, p_token_type text, p_code_challenge text, p_code_challenge_method text, p_referrer text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._new_flow_state(p_user_id uuid, p_token_type text, p_code_challenge text, p_code_challenge_method text, p_referrer text) FROM PUBLIC;

--
-- Name: FUNCTION _new_phone_user(p_phone text, p_password_hash text, p_data jsonb, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._new_phone_user(p_phone text, p_password_hash text, p_data jsonb, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _new_provider_user(p_provider text, p_subject text, p_claims jsonb, p_email text, p_verified boolean, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._new_provider_user(p_provider text, p_subject text, p_claims jsonb, p_email text, p_verified boolean, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION url_encode(data bytea); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.url_encode(data bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.url_encode(data bytea) TO authgres_service;

--
-- Name: FUNCTION _next_refresh_token(p_token text, p_chain_key bytea); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._next_refresh_token(p_token text, p_chain_key bytea) FROM PUBLIC;

--
-- Name: FUNCTION _normalize_email(p_email text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._normalize_email(p_email text) FROM PUBLIC;

--
-- Name: FUNCTION _normalize_phone(p_phone text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._normalize_phone(p_phone text) FROM PUBLIC;

--
-- Name: FUNCTION _passkey_json(p_credential auth.webauthn_credentials); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._passkey_json(p_credential auth.webauthn_credentials) FROM PUBLIC;

--
-- Name: FUNCTION _passkey_of(p_user_id uuid, p_passkey_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._passkey_of(p_user_id uuid, p_passkey_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION _password_attempt_hook(p_user auth.users, p_valid boolean); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._password_attempt_hook(p_user auth.users, p_valid boolean) FROM PUBLIC;

--
-- Name: FUNCTION _payload_mac(p_payload_segment text, p_mac_key bytea); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._payload_mac(p_payload_segment text, p_mac_key bytea) FROM PUBLIC;

--
-- Name: FUNCTION _pending_signup_answer(p_email text, p_phone text, p_data jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._pending_signup_answer(p_email text, p_phone text, p_data jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _pkce_verifier_matches(p_flow auth.flow_state, p_code_verifier text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._pkce_verifier_matches(p_flow auth.flow_state, p_code_verifier text) FROM PUBLIC;

--
-- Name: FUNCTION _provider_email(p_claims jsonb, OUT email text, OUT verified boolean); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._provider_email(p_claims jsonb, OUT email text, OUT verified boolean) FROM PUBLIC;

--
-- Name: FUNCTION _provider_state_lifetime(); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._provider_state_lifetime() FROM PUBLIC;

--
-- Name: FUNCTION _queue_email(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_extra jsonb, p_pending_signup uuid, p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._queue_email(p_user auth.users, p_token_type text, p_address text, p_redirect_to text, p_extra jsonb, p_pending_signup uuid, p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;

--
-- Name: FUNCTION _queue_pending_phone_signup(p_phone text, p_channel text, p_signup boolean, p_password_hash text, p_data jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._queue_pending_phone_signup(p_phone text, p_channel text, p_signup boolean, p_password_hash text, p_data jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _queue_pending_signup_email(p_pending auth.pending_signups, p_redirect_to text, p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._queue_pending_signup_email(p_pending auth.pending_signups, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;

--
-- Name: FUNCTION _queue_sms(p_user auth.users, p_token_type text, p_phone text, p_channel text, p_now boolean, p_created_user boolean, p_pending_signup uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._queue_sms(p_user auth.users, p_token_type text, p_phone text, p_channel text, p_now boolean, p_created_user boolean, p_pending_signup uuid) FROM PUBLIC;

--
-- Name: FUNCTION _raise_session_aal(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._raise_session_aal(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_method text) FROM PUBLIC;

--
-- Name: FUNCTION _random_bytes(p_count integer); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._random_bytes(p_count integer) FROM PUBLIC;

--
-- Name: FUNCTION _record_failed_login(p_user auth.users, p_username text, p_provider text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._record_failed_login(p_user auth.users, p_username text, p_provider text, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _recovery_code_lock_key(p_user_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._recovery_code_lock_key(p_user_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION _recovery_factor(p_user_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._recovery_factor(p_user_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION _refresh_session(p_refresh_token text, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._refresh_session(p_refresh_token text, p_user_agent text, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _remove_factor(p_user auth.users, p_factor auth.mfa_factors); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._remove_factor(p_user auth.users, p_factor auth.mfa_factors) FROM PUBLIC;

--
-- Name: FUNCTION _require_admin(p_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._require_admin(p_token text) FROM PUBLIC;

--
-- Name: FUNCTION _require_passkey_aal(p_user auth.users, p_session auth.sessions); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._require_passkey_aal(p_user auth.users, p_session auth.sessions) FROM PUBLIC;

--
-- Name: FUNCTION _resend_pending_signup(p_email text, p_redirect_to text, p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._resend_pending_signup(p_email text, p_redirect_to text, p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;

--
-- Name: FUNCTION _run_hook(p_function regproc, p_event jsonb); Type: ACL; Schema: auth; Owner: authgres_hook
--

REVOKE ALL ON FUNCTION auth._run_hook(p_function regproc, p_event jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION auth._run_hook(p_function regproc, p_event jsonb) TO authgres_owner;

--
-- Name: FUNCTION _seconds_left(p_row auth.rate_limits, p_window interval); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._seconds_left(p_row auth.rate_limits, p_window interval) FROM PUBLIC;

--
-- Name: FUNCTION _token_hash(p_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._token_hash(p_token text) FROM PUBLIC;

--
-- Name: FUNCTION _session_of(p_response jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._session_of(p_response jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _session_response(p_user auth.users, p_session auth.sessions, p_refresh_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._session_response(p_user auth.users, p_session auth.sessions, p_refresh_token text) FROM PUBLIC;

--
-- Name: FUNCTION _sessions_ended(); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._sessions_ended() FROM PUBLIC;

--
-- Name: FUNCTION _sign_claims(p_claims jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._sign_claims(p_claims jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _sign_count_regressed(p_stored bigint, p_presented bigint); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._sign_count_regressed(p_stored bigint, p_presented bigint) FROM PUBLIC;

--
-- Name: FUNCTION _signed_in(p_access_token text, OUT usr auth.users, OUT sess auth.sessions); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._signed_in(p_access_token text, OUT usr auth.users, OUT sess auth.sessions) FROM PUBLIC;

--
-- Name: FUNCTION _signing_key_json(p_key auth.signing_keys); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._signing_key_json(p_key auth.signing_keys) FROM PUBLIC;

--
-- Name: FUNCTION _spend_code(p_address text, p_types text[], p_code text, p_provider_approved boolean); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._spend_code(p_address text, p_types text[], p_code text, p_provider_approved boolean) FROM PUBLIC;

--
-- Name: FUNCTION _spend_reauthentication_nonce(p_user auth.users, p_nonce text, p_missing text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._spend_reauthentication_nonce(p_user auth.users, p_nonce text, p_missing text) FROM PUBLIC;

--
-- Name: FUNCTION _start_phone_change(p_user auth.users, p_phone text, p_channel text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._start_phone_change(p_user auth.users, p_phone text, p_channel text, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _start_session(p_user auth.users, p_method text, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._start_session(p_user auth.users, p_method text, p_user_agent text, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _texted(p_token_type text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._texted(p_token_type text) FROM PUBLIC;

--
-- Name: FUNCTION _throttle(p_key text, p_limit integer, p_window interval, p_errcode text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._throttle(p_key text, p_limit integer, p_window interval, p_errcode text) FROM PUBLIC;

--
-- Name: FUNCTION _throttle_email(p_address text, p_kind text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._throttle_email(p_address text, p_kind text, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _throttle_sms(p_phone text, p_kind text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._throttle_sms(p_phone text, p_kind text) FROM PUBLIC;

--
-- Name: FUNCTION _totp_step_accepted(p_factor auth.mfa_factors, p_code text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._totp_step_accepted(p_factor auth.mfa_factors, p_code text) FROM PUBLIC;

--
-- Name: FUNCTION _totp_step_spent(p_factor auth.mfa_factors, p_code text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._totp_step_spent(p_factor auth.mfa_factors, p_code text) FROM PUBLIC;

--
-- Name: FUNCTION _unenroll(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._unenroll(p_user auth.users, p_session auth.sessions, p_factor auth.mfa_factors, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _use_recovery_code(p_user auth.users, p_code text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._use_recovery_code(p_user auth.users, p_code text, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _user_credential_ids(p_user_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._user_credential_ids(p_user_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION _user_event(p_user_id uuid, p_kind text, p_data jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._user_event(p_user_id uuid, p_kind text, p_data jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _user_from_pending_signup(p_pending_signup uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._user_from_pending_signup(p_pending_signup uuid, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _user_json(p_user auth.users); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._user_json(p_user auth.users) FROM PUBLIC;

--
-- Name: FUNCTION _user_of_spent_token(p_token auth.one_time_tokens, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._user_of_spent_token(p_token auth.one_time_tokens, p_ip inet) FROM PUBLIC;

--
-- Name: FUNCTION _verified_jwt_claims(p_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._verified_jwt_claims(p_token text) FROM PUBLIC;

--
-- Name: FUNCTION _verified_claims(p_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._verified_claims(p_token text) FROM PUBLIC;

--
-- Name: FUNCTION _verify_challenge(p_user auth.users, p_factor auth.mfa_factors, p_challenge_id uuid, p_code text, p_ip inet, OUT ok boolean, OUT method text, OUT failure jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._verify_challenge(p_user auth.users, p_factor auth.mfa_factors, p_challenge_id uuid, p_code text, p_ip inet, OUT ok boolean, OUT method text, OUT failure jsonb) FROM PUBLIC;

--
-- Name: FUNCTION _verify_error(p_message text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._verify_error(p_message text) FROM PUBLIC;

--
-- Name: FUNCTION _webauthn_user(p_user auth.users); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth._webauthn_user(p_user auth.users) FROM PUBLIC;

--
-- Name: FUNCTION access_token_claims(p_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.access_token_claims(p_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.access_token_claims(p_token text) TO authgres_authenticator;

--
-- Name: FUNCTION add_signing_key(p_algorithm text, p_private_key text, p_public_jwk jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.add_signing_key(p_algorithm text, p_private_key text, p_public_jwk jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.add_signing_key(p_algorithm text, p_private_key text, p_public_jwk jsonb) TO authgres_service;

--
-- Name: FUNCTION admin_audit(p_admin_token text, p_page integer, p_per_page integer); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_audit(p_admin_token text, p_page integer, p_per_page integer) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_audit(p_admin_token text, p_page integer, p_per_page integer) TO authgres_service;

--
-- Name: FUNCTION admin_create_user(p_admin_token text, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_create_user(p_admin_token text, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_create_user(p_admin_token text, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION admin_delete_factor(p_admin_token text, p_user_id uuid, p_factor_id uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_delete_factor(p_admin_token text, p_user_id uuid, p_factor_id uuid, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_delete_factor(p_admin_token text, p_user_id uuid, p_factor_id uuid, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION admin_delete_passkey(p_admin_token text, p_user_id uuid, p_passkey_id uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_delete_passkey(p_admin_token text, p_user_id uuid, p_passkey_id uuid, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_delete_passkey(p_admin_token text, p_user_id uuid, p_passkey_id uuid, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION admin_delete_user(p_admin_token text, p_user_id uuid, p_soft boolean, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_delete_user(p_admin_token text, p_user_id uuid, p_soft boolean, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_delete_user(p_admin_token text, p_user_id uuid, p_soft boolean, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION admin_generate_link(p_admin_token text, p_type text, p_email text, p_new_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_generate_link(p_admin_token text, p_type text, p_email text, p_new_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_generate_link(p_admin_token text, p_type text, p_email text, p_new_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION admin_get_user(p_admin_token text, p_user_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_get_user(p_admin_token text, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_get_user(p_admin_token text, p_user_id uuid) TO authgres_service;

--
-- Name: FUNCTION admin_invite_user(p_admin_token text, p_email text, p_data jsonb, p_redirect_to text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_invite_user(p_admin_token text, p_email text, p_data jsonb, p_redirect_to text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_invite_user(p_admin_token text, p_email text, p_data jsonb, p_redirect_to text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION admin_list_factors(p_admin_token text, p_user_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_list_factors(p_admin_token text, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_list_factors(p_admin_token text, p_user_id uuid) TO authgres_service;

--
-- Name: FUNCTION admin_list_passkeys(p_admin_token text, p_user_id uuid); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_list_passkeys(p_admin_token text, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_list_passkeys(p_admin_token text, p_user_id uuid) TO authgres_service;

--
-- Name: FUNCTION admin_list_users(p_admin_token text, p_page integer, p_per_page integer, p_filter text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_list_users(p_admin_token text, p_page integer, p_per_page integer, p_filter text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_list_users(p_admin_token text, p_page integer, p_per_page integer, p_filter text) TO authgres_service;

--
-- Name: FUNCTION admin_update_user(p_admin_token text, p_user_id uuid, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.admin_update_user(p_admin_token text, p_user_id uuid, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.admin_update_user(p_admin_token text, p_user_id uuid, p_attributes jsonb, p_password_hash text, p_ban_seconds bigint, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION algorithm_sign(signables text, secret text, algorithm text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.algorithm_sign(signables text, secret text, algorithm text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.algorithm_sign(signables text, secret text, algorithm text) TO authgres_service;

--
-- Name: FUNCTION authenticate(p_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.authenticate(p_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.authenticate(p_token text) TO authgres_authenticator;

--
-- Name: FUNCTION authenticate_api_key(p_key text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.authenticate_api_key(p_key text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.authenticate_api_key(p_key text) TO authgres_authenticator;

--
-- Name: FUNCTION challenge_factor(p_access_token text, p_factor_id uuid, p_ip inet, p_channel text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.challenge_factor(p_access_token text, p_factor_id uuid, p_ip inet, p_channel text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.challenge_factor(p_access_token text, p_factor_id uuid, p_ip inet, p_channel text) TO authgres_service;

--
-- Name: FUNCTION claim_outbox(p_limit integer, p_lease_seconds integer); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.claim_outbox(p_limit integer, p_lease_seconds integer) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.claim_outbox(p_limit integer, p_lease_seconds integer) TO authgres_service;

--
-- Name: FUNCTION claim_sms_outbox(p_limit integer, p_lease_seconds integer); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.claim_sms_outbox(p_limit integer, p_lease_seconds integer) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.claim_sms_outbox(p_limit integer, p_lease_seconds integer) TO authgres_service;

--
-- Name: FUNCTION complete_outbox(p_id bigint); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.complete_outbox(p_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.complete_outbox(p_id bigint) TO authgres_service;

--
-- Name: FUNCTION complete_sms_outbox(p_id bigint, p_provider_message_id text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.complete_sms_outbox(p_id bigint, p_provider_message_id text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.complete_sms_outbox(p_id bigint, p_provider_message_id text) TO authgres_service;

--
-- Name: FUNCTION complete_twofa(p_challenge_token text, p_code text, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.complete_twofa(p_challenge_token text, p_code text, p_user_agent text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.complete_twofa(p_challenge_token text, p_code text, p_user_agent text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION configure(p_settings jsonb, p_jwt_secret text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.configure(p_settings jsonb, p_jwt_secret text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.configure(p_settings jsonb, p_jwt_secret text) TO authgres_service;

--
-- Name: FUNCTION create_api_key(p_access_token text, p_name text, p_expires_in integer, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.create_api_key(p_access_token text, p_name text, p_expires_in integer, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.create_api_key(p_access_token text, p_name text, p_expires_in integer, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION current_password_hash(p_access_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.current_password_hash(p_access_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.current_password_hash(p_access_token text) TO authgres_service;

--
-- Name: FUNCTION delete_own_account(p_access_token text, p_verified_hash text, p_nonce text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.delete_own_account(p_access_token text, p_verified_hash text, p_nonce text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.delete_own_account(p_access_token text, p_verified_hash text, p_nonce text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION delete_passkey(p_access_token text, p_passkey_id uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.delete_passkey(p_access_token text, p_passkey_id uuid, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.delete_passkey(p_access_token text, p_passkey_id uuid, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION end_session(p_access_token text, p_session_id uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.end_session(p_access_token text, p_session_id uuid, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.end_session(p_access_token text, p_session_id uuid, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION enroll_factor(p_access_token text, p_factor_type text, p_friendly_name text, p_ip inet, p_phone text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.enroll_factor(p_access_token text, p_factor_type text, p_friendly_name text, p_ip inet, p_phone text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.enroll_factor(p_access_token text, p_factor_type text, p_friendly_name text, p_ip inet, p_phone text) TO authgres_service;

--
-- Name: FUNCTION exchange_auth_code(p_auth_code text, p_code_verifier text, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.exchange_auth_code(p_auth_code text, p_code_verifier text, p_user_agent text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.exchange_auth_code(p_auth_code text, p_code_verifier text, p_user_agent text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION fail_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.fail_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.fail_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision) TO authgres_service;

--
-- Name: FUNCTION fail_sms_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.fail_sms_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.fail_sms_outbox(p_id bigint, p_error text, p_max_attempts integer, p_retry_base_seconds double precision) TO authgres_service;

--
-- Name: FUNCTION get_users(p_access_tokens text[]); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.get_users(p_access_tokens text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.get_users(p_access_tokens text[]) TO authgres_service;

--
-- Name: FUNCTION hotp(p_secret bytea, p_counter bigint, p_digits integer, p_algorithm text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.hotp(p_secret bytea, p_counter bigint, p_digits integer, p_algorithm text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.hotp(p_secret bytea, p_counter bigint, p_digits integer, p_algorithm text) TO authgres_service;

--
-- Name: FUNCTION issue_recovery_codes(p_access_token text, p_mode text, p_friendly_name text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.issue_recovery_codes(p_access_token text, p_mode text, p_friendly_name text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.issue_recovery_codes(p_access_token text, p_mode text, p_friendly_name text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION jwks(); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.jwks() FROM PUBLIC;
GRANT ALL ON FUNCTION auth.jwks() TO authgres_service;

--
-- Name: FUNCTION list_api_keys(p_access_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.list_api_keys(p_access_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.list_api_keys(p_access_token text) TO authgres_service;

--
-- Name: FUNCTION list_passkeys(p_access_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.list_passkeys(p_access_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.list_passkeys(p_access_token text) TO authgres_service;

--
-- Name: FUNCTION list_sessions(p_access_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.list_sessions(p_access_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.list_sessions(p_access_token text) TO authgres_service;

--
-- Name: FUNCTION list_signing_keys(); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.list_signing_keys() FROM PUBLIC;
GRANT ALL ON FUNCTION auth.list_signing_keys() TO authgres_service;

--
-- Name: FUNCTION logout(p_access_token text, p_scope text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.logout(p_access_token text, p_scope text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.logout(p_access_token text, p_scope text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) TO authgres_service;

--
-- Name: FUNCTION passkey_authentication_options(p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.passkey_authentication_options(p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.passkey_authentication_options(p_ip inet) TO authgres_service;

--
-- Name: FUNCTION passkey_registration_options(p_access_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.passkey_registration_options(p_access_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.passkey_registration_options(p_access_token text) TO authgres_service;

--
-- Name: FUNCTION password_hash_by_email(p_email text, OUT user_id uuid, OUT password_hash text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.password_hash_by_email(p_email text, OUT user_id uuid, OUT password_hash text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.password_hash_by_email(p_email text, OUT user_id uuid, OUT password_hash text) TO authgres_service;

--
-- Name: FUNCTION password_hash_by_phone(p_phone text, OUT user_id uuid, OUT password_hash text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.password_hash_by_phone(p_phone text, OUT user_id uuid, OUT password_hash text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.password_hash_by_phone(p_phone text, OUT user_id uuid, OUT password_hash text) TO authgres_service;

--
-- Name: FUNCTION provider_flow(p_state text, p_browser_binding text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.provider_flow(p_state text, p_browser_binding text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.provider_flow(p_state text, p_browser_binding text) TO authgres_service;

--
-- Name: FUNCTION prune(p_batch integer); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.prune(p_batch integer) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.prune(p_batch integer) TO authgres_service;

--
-- Name: FUNCTION reauthenticate(p_access_token text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.reauthenticate(p_access_token text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.reauthenticate(p_access_token text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION record_failed_login(p_email text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.record_failed_login(p_email text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.record_failed_login(p_email text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION record_failed_phone_login(p_phone text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.record_failed_phone_login(p_phone text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.record_failed_phone_login(p_phone text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION record_failed_reauthentication(p_access_token text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.record_failed_reauthentication(p_access_token text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.record_failed_reauthentication(p_access_token text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION recovery_codes_status(p_access_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.recovery_codes_status(p_access_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.recovery_codes_status(p_access_token text) TO authgres_service;

--
-- Name: FUNCTION refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[]); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.refresh_sessions(p_refresh_tokens text[], p_user_agents text[], p_ips text[]) TO authgres_service;

--
-- Name: FUNCTION register_passkey(p_access_token text, p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_public_key bytea, p_aaguid uuid, p_sign_count bigint, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.register_passkey(p_access_token text, p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_public_key bytea, p_aaguid uuid, p_sign_count bigint, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.register_passkey(p_access_token text, p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_public_key bytea, p_aaguid uuid, p_sign_count bigint, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION reject_sms_outbox(p_id bigint, p_error text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.reject_sms_outbox(p_id bigint, p_error text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.reject_sms_outbox(p_id bigint, p_error text) TO authgres_service;

--
-- Name: FUNCTION resend(p_type text, p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.resend(p_type text, p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.resend(p_type text, p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) TO authgres_service;

--
-- Name: FUNCTION resend_phone(p_type text, p_phone text, p_channel text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.resend_phone(p_type text, p_phone text, p_channel text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.resend_phone(p_type text, p_phone text, p_channel text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION revoke_api_key(p_access_token text, p_key_id uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.revoke_api_key(p_access_token text, p_key_id uuid, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.revoke_api_key(p_access_token text, p_key_id uuid, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION revoke_signing_key(p_key text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.revoke_signing_key(p_key text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.revoke_signing_key(p_key text) TO authgres_service;

--
-- Name: FUNCTION rotate_signing_keys(); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.rotate_signing_keys() FROM PUBLIC;
GRANT ALL ON FUNCTION auth.rotate_signing_keys() TO authgres_service;

--
-- Name: FUNCTION send_magic_link(p_email text, p_create_user boolean, p_data jsonb, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.send_magic_link(p_email text, p_create_user boolean, p_data jsonb, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.send_magic_link(p_email text, p_create_user boolean, p_data jsonb, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) TO authgres_service;

--
-- Name: FUNCTION send_phone_otp(p_phone text, p_create_user boolean, p_data jsonb, p_channel text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.send_phone_otp(p_phone text, p_create_user boolean, p_data jsonb, p_channel text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.send_phone_otp(p_phone text, p_create_user boolean, p_data jsonb, p_channel text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION send_recovery(p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.send_recovery(p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.send_recovery(p_email text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text) TO authgres_service;

--
-- Name: FUNCTION session_password_hash(p_access_token text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.session_password_hash(p_access_token text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.session_password_hash(p_access_token text) TO authgres_service;

--
-- Name: FUNCTION sign(payload json, secret text, algorithm text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.sign(payload json, secret text, algorithm text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.sign(payload json, secret text, algorithm text) TO authgres_service;

--
-- Name: FUNCTION sign_in_anonymously(p_data jsonb, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.sign_in_anonymously(p_data jsonb, p_user_agent text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.sign_in_anonymously(p_data jsonb, p_user_agent text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION sign_in_with_identity(p_provider text, p_subject text, p_claims jsonb, p_method text, p_state text, p_access_token text, p_provider_token bytea, p_provider_refresh_token bytea, p_user_agent text, p_ip inet, p_message_digest bytea, p_valid_until timestamp with time zone, p_audit jsonb); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.sign_in_with_identity(p_provider text, p_subject text, p_claims jsonb, p_method text, p_state text, p_access_token text, p_provider_token bytea, p_provider_refresh_token bytea, p_user_agent text, p_ip inet, p_message_digest bytea, p_valid_until timestamp with time zone, p_audit jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.sign_in_with_identity(p_provider text, p_subject text, p_claims jsonb, p_method text, p_state text, p_access_token text, p_provider_token bytea, p_provider_refresh_token bytea, p_user_agent text, p_ip inet, p_message_digest bytea, p_valid_until timestamp with time zone, p_audit jsonb) TO authgres_service;

--
-- Name: FUNCTION sign_in_with_passkey(p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_user_handle bytea, p_sign_count bigint, p_backed_up boolean, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.sign_in_with_passkey(p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_user_handle bytea, p_sign_count bigint, p_backed_up boolean, p_user_agent text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.sign_in_with_passkey(p_challenge_id uuid, p_challenge bytea, p_credential_id bytea, p_user_handle bytea, p_sign_count bigint, p_backed_up boolean, p_user_agent text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION sign_in_with_password(p_user_id uuid, p_verified_hash text, p_rehash text, p_user_agent text, p_ip inet, p_phone boolean); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.sign_in_with_password(p_user_id uuid, p_verified_hash text, p_rehash text, p_user_agent text, p_ip inet, p_phone boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.sign_in_with_password(p_user_id uuid, p_verified_hash text, p_rehash text, p_user_agent text, p_ip inet, p_phone boolean) TO authgres_service;

--
-- Name: FUNCTION sign_up(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_user_agent text, p_ip inet, p_code_challenge text, p_code_challenge_method text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.sign_up(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_user_agent text, p_ip inet, p_code_challenge text, p_code_challenge_method text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.sign_up(p_email text, p_password_hash text, p_data jsonb, p_redirect_to text, p_user_agent text, p_ip inet, p_code_challenge text, p_code_challenge_method text) TO authgres_service;

--
-- Name: FUNCTION sign_up_phone(p_phone text, p_password_hash text, p_data jsonb, p_channel text, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.sign_up_phone(p_phone text, p_password_hash text, p_data jsonb, p_channel text, p_user_agent text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.sign_up_phone(p_phone text, p_password_hash text, p_data jsonb, p_channel text, p_user_agent text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION signing_keys_for_service(); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.signing_keys_for_service() FROM PUBLIC;
GRANT ALL ON FUNCTION auth.signing_keys_for_service() TO authgres_service;

--
-- Name: FUNCTION sms_outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.sms_outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.sms_outbox_stats(OUT pending bigint, OUT sending bigint, OUT dead bigint, OUT oldest_seconds double precision) TO authgres_service;

--
-- Name: FUNCTION start_provider_flow(p_provider text, p_referrer text, p_code_challenge text, p_code_challenge_method text, p_access_token text, p_browser_binding text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.start_provider_flow(p_provider text, p_referrer text, p_code_challenge text, p_code_challenge_method text, p_access_token text, p_browser_binding text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.start_provider_flow(p_provider text, p_referrer text, p_code_challenge text, p_code_challenge_method text, p_access_token text, p_browser_binding text) TO authgres_service;

--
-- Name: FUNCTION totp(p_secret bytea, p_at timestamp with time zone, p_digits integer, p_period integer, p_algorithm text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.totp(p_secret bytea, p_at timestamp with time zone, p_digits integer, p_period integer, p_algorithm text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.totp(p_secret bytea, p_at timestamp with time zone, p_digits integer, p_period integer, p_algorithm text) TO authgres_service;

--
-- Name: FUNCTION unenroll_factor(p_access_token text, p_factor_id uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.unenroll_factor(p_access_token text, p_factor_id uuid, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.unenroll_factor(p_access_token text, p_factor_id uuid, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION unenroll_recovery_codes(p_access_token text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.unenroll_recovery_codes(p_access_token text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.unenroll_recovery_codes(p_access_token text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION unlink_identity(p_access_token text, p_identity_id uuid, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.unlink_identity(p_access_token text, p_identity_id uuid, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.unlink_identity(p_access_token text, p_identity_id uuid, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION update_passkey(p_access_token text, p_passkey_id uuid, p_friendly_name text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.update_passkey(p_access_token text, p_passkey_id uuid, p_friendly_name text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.update_passkey(p_access_token text, p_passkey_id uuid, p_friendly_name text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION update_user(p_access_token text, p_data jsonb, p_password_hash text, p_email text, p_nonce text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text, p_phone text, p_channel text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.update_user(p_access_token text, p_data jsonb, p_password_hash text, p_email text, p_nonce text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text, p_phone text, p_channel text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.update_user(p_access_token text, p_data jsonb, p_password_hash text, p_email text, p_nonce text, p_redirect_to text, p_ip inet, p_code_challenge text, p_code_challenge_method text, p_phone text, p_channel text) TO authgres_service;

--
-- Name: FUNCTION url_decode(data text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.url_decode(data text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.url_decode(data text) TO authgres_service;

--
-- Name: FUNCTION user_events_since(p_access_token text, p_after bigint); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.user_events_since(p_access_token text, p_after bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.user_events_since(p_access_token text, p_after bigint) TO authgres_service;

--
-- Name: FUNCTION verify(token text, secret text, algorithm text); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.verify(token text, secret text, algorithm text) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.verify(token text, secret text, algorithm text) TO authgres_service;

--
-- Name: FUNCTION verify_email_token(p_type text, p_email text, p_code text, p_token_hash text, p_user_agent text, p_ip inet, p_password_hash text, p_link boolean); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.verify_email_token(p_type text, p_email text, p_code text, p_token_hash text, p_user_agent text, p_ip inet, p_password_hash text, p_link boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.verify_email_token(p_type text, p_email text, p_code text, p_token_hash text, p_user_agent text, p_ip inet, p_password_hash text, p_link boolean) TO authgres_service;

--
-- Name: FUNCTION verify_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_code text, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.verify_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_code text, p_user_agent text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.verify_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_code text, p_user_agent text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION verify_phone_token(p_type text, p_phone text, p_code text, p_user_agent text, p_ip inet, p_provider_approved boolean); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.verify_phone_token(p_type text, p_phone text, p_code text, p_user_agent text, p_ip inet, p_provider_approved boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.verify_phone_token(p_type text, p_phone text, p_code text, p_user_agent text, p_ip inet, p_provider_approved boolean) TO authgres_service;

--
-- Name: FUNCTION verify_recovery_code(p_access_token text, p_code text, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.verify_recovery_code(p_access_token text, p_code text, p_user_agent text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.verify_recovery_code(p_access_token text, p_code text, p_user_agent text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION verify_webauthn_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_type text, p_challenge bytea, p_credential_id bytea, p_sign_count bigint, p_public_key bytea, p_aaguid uuid, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_user_agent text, p_ip inet); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.verify_webauthn_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_type text, p_challenge bytea, p_credential_id bytea, p_sign_count bigint, p_public_key bytea, p_aaguid uuid, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_user_agent text, p_ip inet) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.verify_webauthn_factor(p_access_token text, p_factor_id uuid, p_challenge_id uuid, p_type text, p_challenge bytea, p_credential_id bytea, p_sign_count bigint, p_public_key bytea, p_aaguid uuid, p_transports jsonb, p_backup_eligible boolean, p_backed_up boolean, p_attestation_type text, p_user_agent text, p_ip inet) TO authgres_service;

--
-- Name: FUNCTION webauthn_public_key(p_credential_id bytea); Type: ACL; Schema: auth; Owner: authgres_owner
--

REVOKE ALL ON FUNCTION auth.webauthn_public_key(p_credential_id bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION auth.webauthn_public_key(p_credential_id bytea) TO authgres_service;

--
-- Name: DEFAULT PRIVILEGES FOR FUNCTIONS; Type: DEFAULT ACL; Schema: -; Owner: authgres_owner
--

ALTER DEFAULT PRIVILEGES FOR ROLE authgres_owner REVOKE ALL ON FUNCTIONS  FROM PUBLIC;

--
-- PostgreSQL database dump complete
--
