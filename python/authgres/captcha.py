"""Captcha on the endpoints bots abuse, as GoTrue does it (AUTHGRES_SECURITY_CAPTCHA_*).

A protected request carries the token the browser widget (hCaptcha or Cloudflare Turnstile) gave it in
its JSON body, as `gotrue_meta_security: {captcha_token}`: CaptchaProtected declares that member once,
for every body that takes it. The handler calls `require_captcha` first, once the body is decoded and
before any database work or hashing: the token goes to the provider's siteverify (a form POST of
secret, response and remoteip) and the request goes on only when the provider says success.

What is answered: no token, 400 captcha_failed; the provider says no, 400 captcha_failed naming its
error codes; the provider cannot be asked (refused, timed out, not a 2xx, not its JSON), 503
captcha_failed, logged: the check fails closed. A request whose Authorization bearer is the
service_role key skips the check, as in GoTrue; that is recognised here, without the database (see
`_service_role_key`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated

import aiohttp
import jwt
import msgspec
from aiohttp import web

from authgres.errors import captcha_failed
from authgres.http import client_ip
from authgres.inputs import Body
from authgres.settings import Settings
from authgres.state import CAPTCHA

log = logging.getLogger("authgres")

MAX_TOKEN = 8192  # hCaptcha's tokens run to a few thousand characters, Turnstile's to 2048
MAX_ANSWER = 64 * 1024  # a siteverify answer is a few hundred bytes
ADMIN_ROLES = ("service_role", "supabase_admin")  # as auth._require_admin

CaptchaToken = Annotated[
    str, msgspec.Meta(max_length=MAX_TOKEN, description="The token the captcha widget gave the browser")
]


class MetaSecurity(msgspec.Struct):
    """gotrue_meta_security: the captcha token, required when the server enables captcha protection."""

    captcha_token: CaptchaToken | None = None


class CaptchaProtected(Body):
    """A body of an endpoint that needs a captcha when AUTHGRES_SECURITY_CAPTCHA_ENABLED is on."""

    gotrue_meta_security: MetaSecurity | None = None


class _Answer(msgspec.Struct):
    """What siteverify answers (hCaptcha and Turnstile alike); other members are ignored."""

    success: bool
    error_codes: list[str] | None = msgspec.field(default=None, name="error-codes")


class _Unavailable(Exception):
    """The provider could not be asked, or did not answer as a siteverify does."""


class Captcha:
    """The siteverify client. Its HTTP session lives as long as the app (app.py runs `running`), and
    exists only when captcha is enabled."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        if not self.settings.captcha_enabled:
            yield
            return
        timeout = aiohttp.ClientTimeout(total=self.settings.captcha_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as self._session:
            yield
        self._session = None

    async def check(self, request: web.Request, body: CaptchaProtected) -> None:
        """Returns when the request may go on; raises captcha_failed otherwise."""
        if not self.settings.captcha_enabled or _service_role_key(request, self.settings.jwt_secret):
            return
        security = body.gotrue_meta_security
        token = ((security and security.captcha_token) or "").strip()
        if not token:
            raise captcha_failed("captcha protection: request disallowed (no captcha_token found)")
        try:
            answer = await self._siteverify(token, client_ip(request))
        except _Unavailable as error:
            log.error("captcha: %s could not verify a token: %s", self.settings.captcha_siteverify_url, error)
            raise captcha_failed("captcha verification is unavailable; try again later", 503) from None
        if not answer.success:
            reasons = ", ".join(answer.error_codes or ()) or "no error code given"
            raise captcha_failed(f"captcha protection: request disallowed ({reasons})")

    async def _siteverify(self, token: str, ip: str | None) -> _Answer:
        assert self._session is not None, "Captcha.running() was not entered"
        form = {"secret": (self.settings.captcha_secret or "").strip(), "response": token}
        if ip:
            form["remoteip"] = ip
        raw = bytearray()
        try:
            async with self._session.post(self.settings.captcha_siteverify_url, data=form) as response:
                if not 200 <= response.status < 300:
                    raise _Unavailable(f"it answered HTTP {response.status}")
                async for chunk in response.content.iter_chunked(MAX_ANSWER):
                    raw += chunk
                    if len(raw) > MAX_ANSWER:
                        raise _Unavailable(f"its answer is over {MAX_ANSWER} bytes")
        except TimeoutError:
            raise _Unavailable(f"no answer within {self.settings.captcha_timeout:g} s") from None
        except aiohttp.ClientError as error:
            raise _Unavailable(f"{type(error).__name__}: {error}") from None
        try:
            return msgspec.json.decode(raw, type=_Answer)
        except msgspec.DecodeError as error:  # ValidationError is one too: JSON, but not siteverify's
            raise _Unavailable(f"its answer is not siteverify's JSON ({error})") from None


async def require_captcha(request: web.Request, body: CaptchaProtected) -> None:
    """The captcha check of a protected endpoint: its handler's first step."""
    await request.app[CAPTCHA].check(request, body)


def _service_role_key(request: web.Request, jwt_secret: str) -> bool:
    """Whether the Authorization bearer is the service_role key (`authgres keys`): a JWT without kid
    or sub, signed HS256 with AUTHGRES_JWT_SECRET, unexpired, of an admin role. Checked here rather
    than by auth._require_admin, so that telling an admin costs no database call on requests that
    captcha protects before any database work: a service_role key signed with that secret still skips
    the captcha after its key was revoked in auth.signing_keys (it can do nothing else), until
    AUTHGRES_JWT_SECRET changes."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.isascii() or token.count(".") != 2:
        return False
    try:
        if "kid" in jwt.get_unverified_header(token):
            return False
        claims = jwt.decode(
            token,
            jwt_secret,
            algorithms=["HS256"],
            options={"require": ["exp"], "verify_aud": False, "verify_iss": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        return False
    return "sub" not in claims and claims.get("role") in ADMIN_ROLES
