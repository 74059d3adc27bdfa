"""Emails and texts on request: POST /otp, /magiclink, /recover, /resend. Each answers {} (a text
{message_id}) whether or not the address or number is registered; the throttles are keyed by address or
number, so a 429 does not tell either. Texts are queued and sent by the service after the answer, so
the answer's time does not tell either."""

from typing import Annotated

from aiohttp import web
from msgspec import Meta
from psycopg.types.json import Jsonb

from authgres.captcha import CaptchaProtected, require_captcha
from authgres.errors import AuthError, validation_failed
from authgres.http import client_ip, db, redirect_to, reply, require_phone
from authgres.inputs import Channel, JsonObject, RedirectQuery, Text, declared
from authgres.pkce import CodeChallenge, CodeChallengeMethod, challenge

routes = web.RouteTableDef()

PHONE_DISABLED = AuthError(400, "phone_provider_disabled", "Unsupported phone provider")

Phone = Annotated[Text, Meta(description="E.164 (AUTHGRES_EXTERNAL_PHONE_ENABLED): the code is texted")]


class EmailRequest(CaptchaProtected):
    """An address to email; with code_challenge and code_challenge_method its link is a PKCE flow's."""

    email: Text | None = None
    phone: Phone | None = None
    channel: Channel | None = None
    code_challenge: CodeChallenge | None = None
    code_challenge_method: CodeChallengeMethod | None = None

    def pkce(self) -> tuple[str | None, str | None]:
        return challenge(self.code_challenge, self.code_challenge_method)


class OtpRequest(EmailRequest):
    create_user: (
        Annotated[bool, Meta(description="Sign up a new address on its first verification (default true)")] | None
    ) = None
    data: Annotated[JsonObject, Meta(description="user_metadata for a user created this way")] | None = None


class MagicLinkRequest(EmailRequest):
    data: Annotated[JsonObject, Meta(description="user_metadata for a user created this way")] | None = None


ResendType = Annotated[Text, Meta(extra_json_schema={"enum": ["signup", "email_change", "sms", "phone_change"]})]


class ResendRequest(EmailRequest):
    type: ResendType | None = None


def _email(body: EmailRequest, missing: str) -> str:
    if body.phone:
        raise PHONE_DISABLED
    if not body.email:
        raise validation_failed(missing)
    return body.email


async def _send_magic_link(
    request: web.Request, body: OtpRequest | MagicLinkRequest, email: str, create_user: bool, query: RedirectQuery
) -> None:
    code_challenge, code_challenge_method = body.pkce()
    await db(request).call(
        "send_magic_link",
        email=email,
        create_user=create_user,
        data=Jsonb(body.data or {}),
        redirect_to=redirect_to(request, query.redirect_to),
        ip=client_ip(request),
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    )


@routes.post("/otp")
@declared
async def otp(request: web.Request, body: OtpRequest, query: RedirectQuery) -> web.Response:
    await require_captcha(request, body)
    if body.email and body.phone:
        raise validation_failed("Only an email address or phone number should be provided")
    if body.phone:
        require_phone(request, 400, "Unsupported phone provider")
        sent = await db(request).call(
            "send_phone_otp",
            phone=body.phone,
            create_user=body.create_user is not False,
            data=Jsonb(body.data or {}),
            channel=body.channel,
            ip=client_ip(request),
        )
        return reply(sent)
    if body.channel:
        raise validation_failed("Channel should only be specified with Phone OTP")
    email = _email(body, "One of email or phone must be set")
    # Absent or null is true, as in GoTrue, whose decoder leaves the default in place.
    await _send_magic_link(request, body, email, body.create_user is not False, query)
    return reply({})


@routes.post("/magiclink")
@declared
async def magiclink(request: web.Request, body: MagicLinkRequest, query: RedirectQuery) -> web.Response:
    await require_captcha(request, body)
    await _send_magic_link(request, body, _email(body, "An email address is required"), True, query)
    return reply({})


@routes.post("/recover")
@declared
async def recover(request: web.Request, body: EmailRequest, query: RedirectQuery) -> web.Response:
    await require_captcha(request, body)
    code_challenge, code_challenge_method = body.pkce()
    await db(request).call(
        "send_recovery",
        email=_email(body, "Password recovery requires an email"),
        redirect_to=redirect_to(request, query.redirect_to),
        ip=client_ip(request),
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    )
    return reply({})


@routes.post("/resend")
@declared
async def resend(request: web.Request, body: ResendRequest, query: RedirectQuery) -> web.Response:
    await require_captcha(request, body)
    if body.type in ("sms", "phone_change"):
        require_phone(request, 400, "Unsupported phone provider")
        if not body.phone:
            raise validation_failed("Type provided requires a phone number")
        sent = await db(request).call(
            "resend_phone", type=body.type, phone=body.phone, channel=body.channel, ip=client_ip(request)
        )
        return reply(sent)
    if body.type not in ("signup", "email_change"):
        raise validation_failed("Missing one of these types: signup, email_change, sms, phone_change")
    code_challenge, code_challenge_method = body.pkce()
    await db(request).call(
        "resend",
        type=body.type,
        email=_email(body, "Type provided requires an email address"),
        redirect_to=redirect_to(request, query.redirect_to),
        ip=client_ip(request),
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    )
    return reply({})
