"""POST /signup: email + password, phone + password, or anonymous when neither email nor phone is given."""

from typing import Annotated

from aiohttp import web
from msgspec import Meta
from psycopg.types.json import Jsonb

from authgres.captcha import CaptchaProtected, require_captcha
from authgres.errors import validation_failed
from authgres.http import client_ip, db, passwords, redirect_to, reply, require_phone, user_agent
from authgres.inputs import Channel, JsonObject, RedirectQuery, Text, declared
from authgres.pkce import CodeChallenge, CodeChallengeMethod, challenge

routes = web.RouteTableDef()


class SignupRequest(CaptchaProtected):
    """Email or phone, and password; neither email nor phone signs in anonymously. With code_challenge and
    code_challenge_method the confirmation link is a PKCE flow's (email only)."""

    email: Text | None = None
    password: Text | None = None
    phone: Annotated[Text, Meta(description="E.164; confirmed by a texted code (external phone enabled)")] | None = None
    channel: Channel | None = None
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
        return await _phone_signup(request, body, data, code_challenge)
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


async def _phone_signup(
    request: web.Request, body: SignupRequest, data: Jsonb, code_challenge: str | None
) -> web.Response:
    require_phone(request, 400, "Phone signups are disabled")
    if code_challenge:
        raise validation_failed("PKCE not supported for phone signups")
    if not body.password:
        raise validation_failed("Signup requires a valid password")
    passwords(request).require_strong(body.password)
    password_hash = await passwords(request).hash(body.password)
    result = await db(request).call(
        "sign_up_phone",
        phone=body.phone,
        password_hash=password_hash,
        data=data,
        channel=body.channel,
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    return reply(result)  # its text is queued for the sender: see auth.sign_up_phone
