"""Identity providers on the loopback, speaking their real wire protocols, for the third-party sign-in
tests: a real OpenID provider (the oidc-provider-mock package: discovery, authorization form, token
endpoint, userinfo, JWKS), a GitHub-style OAuth 2.0 server (its token endpoint and REST API /user and
/user/emails), and an issuer of our own that signs ID tokens we shape (wrong audience, expired ...)
with keys it can rotate. Import the fixtures into a test module to use them."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import jwt
import oidc_provider_mock
import pytest
import werkzeug.serving
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from authgres.settings import ExternalProvider

CLIENT_ID = "authgres-test-client"
CLIENT_SECRET = "authgres-test-secret"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # what the provider is told; tests carry its answer over


class OidcProvider:
    """oidc-provider-mock in a thread: any client id and secret; users are whoever logs in at its form."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def set_user(self, sub: str, **claims: Any) -> None:
        """The claims the provider gives for this subject."""
        import httpx

        response = httpx.put(f"{self.issuer}/users/{sub}", json=claims)
        assert response.status_code == 204, response.text

    async def log_in(self, authorize_url: str, sub: str, deny: bool = False) -> str:
        """Submits the provider's login form as the browser would: the Location it answers (our callback)."""
        assert authorize_url.startswith(self.issuer), authorize_url
        form = {"action": "deny"} if deny else {"sub": sub}
        async with (
            aiohttp.ClientSession() as session,
            session.post(authorize_url, data=form, allow_redirects=False) as response,
        ):
            assert response.status in (302, 303), await response.text()
            return response.headers["Location"]


@pytest.fixture
def oidc_provider() -> Iterator[OidcProvider]:
    app = oidc_provider_mock.app()
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield OidcProvider(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def oidc_config(issuer: str, **changes: Any) -> ExternalProvider:
    return ExternalProvider(
        **{
            "enabled": True,
            "client_ids": (CLIENT_ID,),
            "secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT_URI,
            "url": issuer,
            **changes,
        }
    )


@dataclass
class GitHubUser:
    id: int
    login: str
    name: str | None = None
    emails: list[dict[str, Any]] = field(default_factory=list)


class GitHub:
    """A GitHub-style server: /login/oauth/authorize logs in `next_user` at once, /login/oauth/access_token
    trades the code (client secret checked) for a token, /api/v3/user and /api/v3/user/emails answer for it."""

    def __init__(self) -> None:
        self.url = ""
        self.next_user: GitHubUser | None = None
        self.codes: dict[str, GitHubUser] = {}
        self.tokens: dict[str, GitHubUser] = {}
        self.token_requests: list[dict[str, str]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/login/oauth/authorize", self.authorize)
        app.router.add_post("/login/oauth/access_token", self.access_token)
        app.router.add_get("/api/v3/user", self.user)
        app.router.add_get("/api/v3/user/emails", self.emails)
        return app

    async def authorize(self, request: web.Request) -> web.Response:
        assert self.next_user is not None
        code = secrets.token_urlsafe(16)
        self.codes[code] = self.next_user
        query = urlencode({"code": code, "state": request.query["state"]})
        raise web.HTTPFound(f"{request.query['redirect_uri']}?{query}")

    async def access_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({key: str(value) for key, value in form.items()})
        user = self.codes.pop(str(form.get("code")), None)
        if user is None or form.get("client_secret") != CLIENT_SECRET or form.get("client_id") != CLIENT_ID:
            return web.json_response({"error": "bad_verification_code"})  # GitHub answers 200 with an error
        token = "gho_" + secrets.token_urlsafe(16)
        self.tokens[token] = user
        return web.json_response({"access_token": token, "token_type": "bearer", "scope": "user:email"})

    def _user(self, request: web.Request) -> GitHubUser:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or token not in self.tokens:
            raise web.HTTPUnauthorized()
        return self.tokens[token]

    async def user(self, request: web.Request) -> web.Response:
        user = self._user(request)
        return web.json_response({"id": user.id, "login": user.login, "name": user.name, "avatar_url": None})

    async def emails(self, request: web.Request) -> web.Response:
        return web.json_response(self._user(request).emails)


@pytest.fixture
async def github(aiohttp_server: Any) -> GitHub:
    github = GitHub()
    server = await aiohttp_server(github.app())
    github.url = str(server.make_url("")).rstrip("/")
    return github


def github_config(github: GitHub) -> ExternalProvider:
    return ExternalProvider(
        enabled=True, client_ids=(CLIENT_ID,), secret=CLIENT_SECRET, redirect_uri=REDIRECT_URI, url=github.url
    )


class Issuer:
    """An OpenID issuer of our own whose ID tokens the tests shape: discovery and JWKS, and a bare
    authorization endpoint (logs in `next_claims` at once, any scope) and token endpoint (records the form
    it gets), for providers the mock cannot play (Apple's scopes and form post)."""

    def __init__(self) -> None:
        self.url = ""
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.jwks_fetches = 0
        self.next_claims: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.rotate()

    def rotate(self) -> None:
        """A new signing key, published beside the old ones."""
        self.keys.append((f"key-{len(self.keys)}", rsa.generate_private_key(public_exponent=65537, key_size=2048)))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.exchange)
        return app

    async def authorize(self, request: web.Request) -> web.Response:
        code = secrets.token_urlsafe(16)
        self.codes[code] = dict(self.next_claims)
        query = urlencode({"code": code, "state": request.query["state"]})
        raise web.HTTPFound(f"{request.query['redirect_uri']}?{query}")

    async def exchange(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.token_requests.append(form)
        claims = self.codes.pop(form.get("code", ""), None)
        if claims is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        return web.json_response(
            {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "id_token": self.token(**claims)}
        )

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        keys = []
        for kid, key in self.keys:
            public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**public, "kid": kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": keys})

    def token(
        self, sub: str = "issuer-user-1", *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        body = {"iss": self.url, "sub": sub, "aud": CLIENT_ID, "iat": now, "exp": now + 600, **claims}
        body = {name: value for name, value in body.items() if value is not None}
        signing_kid, signing_key = self.keys[-1]
        return jwt.encode(
            body, key or signing_key, algorithm="RS256", headers={"kid": kid if kid is not None else signing_kid}
        )


def nonce_pair() -> tuple[str, str]:
    """A nonce and what the ID token carries for it (its SHA-256, hex)."""
    nonce = secrets.token_urlsafe(16)
    return nonce, hashlib.sha256(nonce.encode()).hexdigest()


@pytest.fixture
async def issuer(aiohttp_server: Any) -> Issuer:
    issuer = Issuer()
    server = await aiohttp_server(issuer.app())
    issuer.url = str(server.make_url("")).rstrip("/")
    return issuer


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def fragment_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).fragment, keep_blank_values=True).items()}
