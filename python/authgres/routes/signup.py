"""POST /signup: email + password, or anonymous when neither email nor phone is given."""

from aiohttp import web
from psycopg.types.json import Jsonb

from authgres.captcha import CaptchaProtected, require_captcha
from authgres.errors import AuthError, validation_failed
from authgres.http import client_ip, db, passwords, redirect_to, reply, user_agent
from authgres.inputs import JsonObject, RedirectQuery, Text, declared
from authgres.pkce import CodeChallenge, CodeChallengeMethod, challenge

routes = web.RouteTableDef()


class SignupRequest(CaptchaProtected):
    """Email and password; neither email nor phone signs in anonymously. With code_challenge and
    code_challenge_method the confirmation link is a PKCE flow's."""

    email: Text | None = None
    password: Text | None = None
    phone: Text | None = None  # not supported yet: answers phone_provider_disabled
    data: JsonObject | None = None  # the initial user_metadata
    code_challenge: CodeChallenge | None = None
    code_challenge_method: CodeChallengeMethod | None = None


@routes.post("/signup")
@declared
async def signup(request: web.Request, body: SignupRequest, query: RedirectQuery) -> web.Response:
    await require_captcha(request, body)
    data = Jsonb(body.data or {})
    code_challenge, code_challenge_method = challenge(body.code_challenge, body.code_challenge_method)
    if body.email and body.phone:
        raise validation_failed("Only an email address or phone number should be provided on signup.")
    if body.phone:
        raise AuthError(400, "phone_provider_disabled", "Phone signups are disabled")
    if not body.email:
        result = await db(request).call(
            "sign_in_anonymously", data=data, user_agent=user_agent(request), ip=client_ip(request)
        )
        return reply(result)
    if not body.password:
        raise validation_failed("Signup requires a valid password")
    passwords(request).require_strong(body.password)
    # Hashed before SQL looks at the address, so a taken address answers as slowly as a new one.
    password_hash = await passwords(request).hash(body.password)
    result = await db(request).call(
        "sign_up",
        email=body.email,
        password_hash=password_hash,
        data=data,
        redirect_to=redirect_to(request, query.redirect_to),
        user_agent=user_agent(request),
        ip=client_ip(request),
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    )
    return reply(result)
