"""Third-party identity providers: where to send the browser, how to exchange the code it brings back,
and who the provider says the user is; and the verification of ID tokens (OpenID Connect).

Each provider of settings.EXTERNAL_PROVIDERS is a Preset: an OpenID Connect provider is found from its
issuer (the discovery document names its endpoints and its key set; the user is the verified ID token's
subject, completed from the userinfo endpoint when the token has no email), an OAuth 2.0 one (GitHub,
Discord) has fixed endpoints under its base URL and a REST API that names the user.
AUTHGRES_EXTERNAL_<PROVIDER>_URL replaces the issuer or base URL (self-hosted instances, and tests, which
point it at a server on the loopback).

Keys are cached per key set and fetched again when a token names a key id not seen yet (the provider
rotated its keys); a key id that the fresh set does not have either is remembered as unknown, so
tokens naming made-up key ids cannot make us fetch the set over and over. Discovery documents are
cached for an hour.

What SQL is told (Identity.claims) is what the provider vouches for: the subject, the email and whether
the provider verified it (`email_verified`, a boolean), names and picture, in GoTrue's identity_data
shape; never the tokens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt

from authgres.errors import AuthError, oauth_error
from authgres.settings import ExternalProvider, Settings

log = logging.getLogger("authgres")

MAX_ANSWER = 1 << 20  # a discovery document, key set, token or user answer is a few KiB
DISCOVERY_TTL = 3600.0
# The ID token's signature algorithms we accept: asymmetric only (never HS*, never none).
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# Claims about the token rather than the user: not kept in identity_data.
_PROTOCOL_CLAIMS = {"aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "auth_time", "azp", "jti", "sid"}
# Query parameters of /authorize that we set, never the client (GoTrue strips the same).
RESERVED_PARAMETERS = {
    "provider",
    "scopes",
    "redirect_to",
    "code_challenge",
    "code_challenge_method",
    "skip_http_redirect",
    "client_id",
    "client_secret",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "grant_type",
    "code",
    "code_verifier",
}


@dataclass(frozen=True)
class Preset:
    """What a provider is. oidc: url is the issuer; else the base URL of its OAuth 2.0 endpoints."""

    oidc: bool
    url: str
    scopes: tuple[str, ...]
    form_post: bool = False  # the callback is a form POST (Apple's response_mode=form_post)


PRESETS: dict[str, Preset] = {
    "apple": Preset(True, "https://appleid.apple.com", ("name", "email"), form_post=True),
    "azure": Preset(True, "https://login.microsoftonline.com/common/v2.0", ("openid", "email", "profile")),
    "discord": Preset(False, "https://discord.com", ("identify", "email")),
    "github": Preset(False, "https://github.com", ("user:email",)),
    "gitlab": Preset(True, "https://gitlab.com", ("openid", "email", "profile")),
    "google": Preset(True, "https://accounts.google.com", ("openid", "email", "profile")),
    "keycloak": Preset(True, "", ("openid", "email", "profile")),  # the realm's issuer: _URL
    "oidc": Preset(True, "", ("openid", "email", "profile")),  # any OpenID provider, by its issuer: _URL
}


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in, and the tokens it gave (for the client, never stored in the clear)."""

    subject: str
    claims: dict[str, Any]
    access_token: str | None = None
    refresh_token: str | None = None


class ProviderUnavailable(Exception):
    """The provider could not be asked, or did not answer as it should."""


def unavailable(name: str, error: Exception) -> AuthError:
    log.error("provider %s: %s", name, error)
    return AuthError(503, "unexpected_failure", f"Unable to reach the {name} provider; try again later")


def refused(message: str) -> AuthError:
    return AuthError(400, "bad_oauth_callback", message)


def bad_id_token(message: str, code: str = "bad_jwt") -> AuthError:
    return oauth_error("invalid_request", message, code)


@dataclass
class _KeySet:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Providers:
    """The providers' HTTP client and caches; one for the app's lifetime (app.py runs `running`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._discovery: dict[str, tuple[float, dict[str, Any]]] = {}
        self._keys: dict[str, _KeySet] = {}
        self._apple_secret: tuple[float, str] | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=self.settings.external_timeout)
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "authgres"}) as self._session:
            yield
        self._session = None

    # Configuration.

    def config(self, name: str) -> tuple[Preset, ExternalProvider]:
        """An enabled provider's preset and settings; 400 validation_failed otherwise (as GoTrue)."""
        preset = PRESETS.get(name)
        config = self.settings.provider(name)
        if preset is None or not config.enabled:
            raise AuthError(400, "validation_failed", f"Unsupported provider: provider {name} is not enabled")
        return preset, config

    def issuer_of(self, name: str) -> str:
        preset, config = self.config(name)
        return self.base(preset, config)

    def redirect_uri(self, config: ExternalProvider) -> str:
        return config.redirect_uri or f"{self.settings.external_url}/callback"

    def callback_url(self, name: str) -> str:
        """Where the provider sends the browser back to (our callback)."""
        return self.redirect_uri(self.config(name)[1])

    @staticmethod
    def base(preset: Preset, config: ExternalProvider) -> str:
        return (config.url or preset.url).rstrip("/")

    # The browser's way to the provider.

    async def ready(self, name: str) -> None:
        """Refuses an unknown or disabled provider (400), and one whose discovery document cannot be had
        (503), before a flow is started for it."""
        preset, config = self.config(name)
        if preset.oidc:
            await self.discovery(name, preset, config)

    async def authorize_url(self, name: str, state: str, scopes: str | None, parameters: dict[str, str]) -> str:
        preset, config = self.config(name)
        requested = [*preset.scopes, *(scope for scope in (scopes or "").replace(",", " ").split() if scope)]
        query = {
            **parameters,
            "client_id": config.client_ids[0],
            "redirect_uri": self.redirect_uri(config),
            "response_type": "code",
            "scope": " ".join(dict.fromkeys(requested)),
            "state": state,
        }
        if preset.form_post:
            query["response_mode"] = "form_post"
        if preset.oidc:
            endpoint = str((await self.discovery(name, preset, config))["authorization_endpoint"])
        elif name == "github":
            endpoint = f"{self.base(preset, config)}/login/oauth/authorize"
        else:  # discord
            endpoint = f"{self.base(preset, config)}/oauth2/authorize"
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    # The callback: the code for tokens, the tokens for the identity.

    async def exchange(self, name: str, code: str, apple_user: str | None = None) -> Identity:
        preset, config = self.config(name)
        try:
            tokens = await self._token(name, preset, config, code)
            access_token = tokens.get("access_token")
            if not isinstance(access_token, str) or not access_token:
                raise refused("The provider answered no access token")
            refresh = tokens.get("refresh_token") if isinstance(tokens.get("refresh_token"), str) else None
            if preset.oidc:
                claims = await self._oidc_identity(name, preset, config, tokens)
            elif name == "github":
                claims = await self._github_identity(preset, config, access_token)
            else:
                claims = await self._discord_identity(preset, config, access_token)
        except ProviderUnavailable as error:
            raise unavailable(name, error) from None
        if name == "apple" and apple_user:
            claims.update(_apple_name(apple_user))
        identity = identity_of(claims, self.base(preset, config))
        return Identity(identity.subject, identity.claims, access_token, refresh)

    async def _token(self, name: str, preset: Preset, config: ExternalProvider, code: str) -> dict[str, Any]:
        if preset.oidc:
            endpoint = str((await self.discovery(name, preset, config))["token_endpoint"])
        elif name == "github":
            endpoint = f"{self.base(preset, config)}/login/oauth/access_token"
        else:
            endpoint = f"{self.base(preset, config)}/api/oauth2/token"
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri(config),
            "client_id": config.client_ids[0],
            "client_secret": self._client_secret(name, config),
        }
        status, answer = await self._fetch("POST", endpoint, data=form, headers={"Accept": "application/json"})
        if not isinstance(answer, dict):
            raise ProviderUnavailable(f"token endpoint answered HTTP {status} without a JSON object")
        if status >= 400 or "error" in answer:
            log.info("provider %s refused the code: HTTP %s %s", name, status, answer.get("error"))
            raise refused(f"Unable to exchange external code: {answer.get('error', status)}")
        return answer

    async def _oidc_identity(
        self, name: str, preset: Preset, config: ExternalProvider, tokens: dict[str, Any]
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {}
        if isinstance(tokens.get("id_token"), str):
            claims = await self.verify_id_token(name, tokens["id_token"])
        discovery = await self.discovery(name, preset, config)
        if (not claims or "email" not in claims) and discovery.get("userinfo_endpoint"):
            status, info = await self._fetch(
                "GET", str(discovery["userinfo_endpoint"]), headers=_bearer(tokens["access_token"])
            )
            if status < 400 and isinstance(info, dict) and (not claims or info.get("sub") == claims.get("sub")):
                claims = {**info, **claims}
        if "iss" not in claims:
            claims["iss"] = discovery.get("issuer")
        return claims

    async def _github_identity(self, preset: Preset, config: ExternalProvider, token: str) -> dict[str, Any]:
        api = f"{config.url}/api/v3" if config.url else "https://api.github.com"
        headers = {**_bearer(token), "Accept": "application/vnd.github+json"}
        status, user = await self._fetch("GET", f"{api}/user", headers=headers)
        if status >= 400 or not isinstance(user, dict) or "id" not in user:
            raise refused("Error getting user profile from external provider")
        status, emails = await self._fetch("GET", f"{api}/user/emails", headers=headers)
        email, verified = None, False
        if status < 400 and isinstance(emails, list):
            listed = [each for each in emails if isinstance(each, dict) and isinstance(each.get("email"), str)]
            chosen = next((each for each in listed if each.get("primary")), listed[0] if listed else None)
            if chosen:
                email, verified = chosen["email"], chosen.get("verified") is True
        return {
            "sub": str(user["id"]),
            "email": email,
            "email_verified": verified,
            "name": user.get("name") or user.get("login"),
            "user_name": user.get("login"),
            "preferred_username": user.get("login"),
            "picture": user.get("avatar_url"),
        }

    async def _discord_identity(self, preset: Preset, config: ExternalProvider, token: str) -> dict[str, Any]:
        status, user = await self._fetch("GET", f"{self.base(preset, config)}/api/users/@me", headers=_bearer(token))
        if status >= 400 or not isinstance(user, dict) or "id" not in user:
            raise refused("Error getting user profile from external provider")
        avatar = user.get("avatar")
        return {
            "sub": str(user["id"]),
            "email": user.get("email"),
            "email_verified": user.get("verified") is True,
            "name": user.get("global_name") or user.get("username"),
            "user_name": user.get("username"),
            "picture": f"https://cdn.discordapp.com/avatars/{user['id']}/{avatar}.png" if avatar else None,
        }

    # OpenID Connect: discovery and ID tokens.

    async def discovery(self, name: str, preset: Preset, config: ExternalProvider) -> dict[str, Any]:
        issuer = self.base(preset, config)
        if not issuer:
            raise AuthError(400, "validation_failed", f"Unsupported provider: {name} has no issuer configured")
        cached = self._discovery.get(issuer)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            status, document = await self._fetch("GET", f"{issuer}/.well-known/openid-configuration")
        except ProviderUnavailable as error:
            raise unavailable(name, error) from None
        if (
            status >= 400
            or not isinstance(document, dict)
            or not all(isinstance(document.get(key), str) for key in ("issuer", "authorization_endpoint", "jwks_uri"))
        ):
            raise unavailable(name, ProviderUnavailable(f"no discovery document at {issuer} (HTTP {status})"))
        self._discovery[issuer] = (time.monotonic() + DISCOVERY_TTL, document)
        return document

    async def verify_id_token(
        self, name: str, token: str, nonce: str | None = None, *, grant: bool = False
    ) -> dict[str, Any]:
        """The claims of an ID token of this provider, once its signature (against the provider's key set),
        issuer, audience (one of the client ids) and expiry check out. grant: the id_token grant's nonce
        rule applies (the token's nonce is SHA-256 hex of the given one; one without the other refused)."""
        preset, config = self.config(name)
        if not preset.oidc:
            raise AuthError(400, "validation_failed", f"Provider {name} does not issue ID tokens")
        discovery = await self.discovery(name, preset, config)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise bad_id_token("Bad ID token: not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in SIGNING_ALGORITHMS:
            raise bad_id_token("Bad ID token: unsupported signature algorithm")
        issuer = str(discovery["issuer"])
        if "{tenantid}" in issuer:  # Azure's multi-tenant endpoints: the tenant is the token's
            issuer = issuer.replace("{tenantid}", str(unverified.get("tid", "")))
        try:
            keys = await self._keys_for(str(discovery["jwks_uri"]), header.get("kid"))
        except ProviderUnavailable as error:
            raise unavailable(name, error) from None
        if not keys:
            raise bad_id_token("Bad ID token: signed by an unknown key")
        for index, key in enumerate(keys):  # one key, unless the token names none (then each of the set)
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key=key,
                    algorithms=[algorithm],
                    audience=list(config.client_ids),
                    issuer=issuer,
                    options={"require": ["exp", "iat", "iss", "sub", "aud"]},
                    leeway=30,
                )
                break
            except jwt.InvalidSignatureError:
                if index == len(keys) - 1:
                    raise bad_id_token("Bad ID token: InvalidSignatureError") from None
            except jwt.InvalidAudienceError:
                raise bad_id_token("Unacceptable audience in id_token", "unexpected_audience") from None
            except jwt.PyJWTError as error:
                raise bad_id_token(f"Bad ID token: {type(error).__name__}") from None
        if grant:
            _check_nonce(claims.get("nonce"), nonce)
        return claims

    async def _keys_for(self, jwks_uri: str, kid: Any) -> list[jwt.PyJWK]:
        """The key a token names by its kid (fetching the set again for a kid not seen yet), or every key
        of the set for a token that names none."""
        keys = self._keys.setdefault(jwks_uri, _KeySet())
        if not isinstance(kid, str) or not kid:
            if not keys.keys and not keys.unknown:
                await self._fetch_keys(jwks_uri, keys, "")
            return list(keys.keys.values())
        if kid in keys.keys:
            return [keys.keys[kid]]
        if kid in keys.unknown:
            return []
        await self._fetch_keys(jwks_uri, keys, kid)
        return [keys.keys[kid]] if kid in keys.keys else []

    async def _fetch_keys(self, jwks_uri: str, keys: _KeySet, wanted: str) -> None:
        async with keys.lock:  # one fetch for every token waiting on the same rotation
            if wanted not in keys.keys and wanted not in keys.unknown:
                status, document = await self._fetch("GET", jwks_uri)
                if status >= 400 or not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                    raise ProviderUnavailable(f"no key set at {jwks_uri} (HTTP {status})")
                fresh: dict[str, jwt.PyJWK] = {}
                for each in document["keys"]:
                    if isinstance(each, dict) and each.get("use", "sig") == "sig":
                        with contextlib.suppress(jwt.PyJWTError, ValueError, TypeError):
                            fresh[str(each.get("kid", ""))] = jwt.PyJWK(each)
                keys.keys = fresh
                keys.unknown = set() if wanted in fresh else {wanted}

    def _client_secret(self, name: str, config: ExternalProvider) -> str:
        if name != "apple" or not (config.team_id and config.key_id):
            return config.secret
        # Apple's client secret is a JWT signed with the .p8 key, valid for at most six months.
        now = time.time()
        if self._apple_secret and self._apple_secret[0] > now + 86400:
            return self._apple_secret[1]
        expires = now + 150 * 86400
        secret = jwt.encode(
            {
                "iss": config.team_id,
                "iat": int(now),
                "exp": int(expires),
                "aud": "https://appleid.apple.com",
                "sub": config.client_ids[0],
            },
            config.secret,
            algorithm="ES256",
            headers={"kid": config.key_id},
        )
        self._apple_secret = (expires, secret)
        return secret

    async def _fetch(self, method: str, url: str, **options: Any) -> tuple[int, Any]:
        """The provider's JSON answer (None when it is not JSON) and its status."""
        assert self._session is not None, "Providers.running() was not entered"
        try:
            async with self._session.request(method, url, **options) as response:
                raw = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    raw += chunk
                    if len(raw) > MAX_ANSWER:
                        raise ProviderUnavailable(f"{url} answered over {MAX_ANSWER} bytes")
                try:
                    return response.status, json.loads(raw)
                except ValueError:
                    return response.status, None
        except TimeoutError:
            raise ProviderUnavailable(f"{url}: no answer within {self.settings.external_timeout:g} s") from None
        except aiohttp.ClientError as error:
            raise ProviderUnavailable(f"{url}: {type(error).__name__}: {error}") from None


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _check_nonce(in_token: Any, given: str | None) -> None:
    if bool(in_token) != bool(given):
        raise bad_id_token("Passed nonce and nonce in id_token should either both exist or not.", "validation_failed")
    if given and not hmac.compare_digest(str(in_token), hashlib.sha256(given.encode()).hexdigest()):
        raise oauth_error("invalid_nonce", "Nonces mismatch", "validation_failed")


def identity_of(claims: dict[str, Any], issuer: str) -> Identity:
    """The identity these claims name (the provider's subject); 400 bad_oauth_callback when they name none."""
    subject = claims.get("sub")
    if not isinstance(subject, str | int) or not str(subject):
        raise refused("Missing sub claim")
    return Identity(str(subject), _identity_data(claims, issuer))


def check_access_token_hash(claims: dict[str, Any], access_token: str, id_token: str) -> None:
    """An access token given with an ID token must be the one it was issued with, when the ID token says
    which (at_hash: the left half of its SHA-256, base64url; OpenID Connect Core 3.2.2.9)."""
    expected = claims.get("at_hash")
    if expected is None or not jwt.get_unverified_header(id_token).get("alg", "").endswith("256"):
        return
    digest = hashlib.sha256(access_token.encode()).digest()
    actual = base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()
    if not hmac.compare_digest(actual, str(expected)):
        raise bad_id_token("Bad ID token: access token does not match its at_hash")


def _apple_name(user: str) -> dict[str, Any]:
    """The name Apple posts (as JSON in the form's `user`) on the first sign-in only."""
    try:
        name = json.loads(user).get("name") or {}
        full = " ".join(part for part in (name.get("firstName"), name.get("lastName")) if isinstance(part, str))
    except (ValueError, AttributeError):
        return {}
    return {"name": full, "full_name": full} if full else {}


def _identity_data(claims: dict[str, Any], issuer: str) -> dict[str, Any]:
    """GoTrue's identity_data: the user's claims (not the token's), email_verified a boolean, names and
    picture also under GoTrue's aliases."""
    data = {key: value for key, value in claims.items() if key not in _PROTOCOL_CLAIMS and value is not None}
    data["email_verified"] = claims.get("email_verified") in (True, "true")
    data.setdefault("phone_verified", False)
    data.setdefault("iss", issuer)
    if "name" in data:
        data.setdefault("full_name", data["name"])
    if "picture" in data:
        data.setdefault("avatar_url", data["picture"])
    return data
