"""POST /token?grant_type=password|refresh_token|pkce|twofa|id_token|web3 (pkce: an emailed link's or a
provider sign-in's auth code and the client's code verifier; twofa: strict email 2-step; id_token: an
OpenID provider's ID token, verified here, signs in as the provider callback does; web3: a wallet's
signed message, verified here (web3.py), signs in once as a provider identity)."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from aiohttp import web
from psycopg.types.json import Jsonb

from authgres import web3
from authgres.captcha import CaptchaProtected, require_captcha
from authgres.errors import AuthError, invalid_credentials, oauth_error, validation_failed
from authgres.http import bearer_token, client_ip, db, passwords, reply, require_phone, settings, user_agent
from authgres.inputs import Query, Text, declared
from authgres.providers import check_access_token_hash, identity_of
from authgres.routes.external import open_provider_tokens
from authgres.state import METRICS, PROVIDERS

routes = web.RouteTableDef()

# Documented as an enum, read as text: any other grant answers invalid_credentials, as GoTrue's does.
GrantType = Annotated[
    Text,
    msgspec.Meta(extra_json_schema={"enum": ["password", "refresh_token", "pkce", "twofa", "id_token", "web3"]}),
]


class TokenQuery(Query):
    grant_type: GrantType = ""


class TokenRequest(CaptchaProtected):
    """password grant: email (or phone) and password (and the captcha token, when captcha is enabled);
    refresh_token grant: refresh_token; pkce grant: auth_code and code_verifier; twofa grant:
    challenge_token and code."""

    email: Text | None = None
    phone: Text | None = None
    password: Text | None = None
    refresh_token: Text | None = None
    challenge_token: Text | None = None
    code: Text | None = None
    auth_code: Text | None = None
    code_verifier: Text | None = None
    # id_token grant: the provider, its ID token (and the access token issued with it), the nonce the
    # token was requested with, and link_identity to add the identity to the signed-in user (Authorization).
    provider: Text | None = None
    id_token: Annotated[str, msgspec.Meta(max_length=16384)] | None = None
    access_token: Annotated[str, msgspec.Meta(max_length=16384)] | None = None
    nonce: Text | None = None
    link_identity: bool | None = None
    # web3 grant: the chain (solana or ethereum), the message the wallet signed (SIWS / EIP-4361) and
    # its signature (Solana: base64url of 64 bytes; Ethereum: 0x and 130 hex digits).
    chain: Text | None = None
    message: Annotated[str, msgspec.Meta(max_length=web3.MAX_MESSAGE)] | None = None
    signature: Text | None = None


@routes.post("/token")
@declared
async def token(request: web.Request, query: TokenQuery, body: TokenRequest) -> web.Response:
    if query.grant_type == "password":
        return await _password_grant(request, body)
    if query.grant_type == "refresh_token":
        try:
            session = await db(request).call_batched(
                "refresh_sessions", body.refresh_token or "", user_agent(request), client_ip(request)
            )
        except AuthError as error:
            if error.code == "refresh_token_already_used":  # AUR02: the session was ended
                request.app[METRICS].refresh_token_replays.inc()
            raise
        return reply(session)
    if query.grant_type == "pkce":  # no captcha, as in GoTrue: the code was earned by a link
        session = await db(request).call(
            "exchange_auth_code",
            auth_code=body.auth_code or "",
            code_verifier=body.code_verifier or "",
            user_agent=user_agent(request),
            ip=client_ip(request),
        )
        if '"sealed_provider' in session:  # a provider sign-in's: its tokens go to the client, opened
            return reply(open_provider_tokens(request, json.loads(session)))
        return reply(session)
    if query.grant_type == "id_token":
        return await _id_token_grant(request, body)
    if query.grant_type == "web3":
        return await _web3_grant(request, body)
    if query.grant_type == "twofa":
        session = await db(request).call(
            "complete_twofa",
            challenge_token=body.challenge_token or "",
            code=body.code or "",
            user_agent=user_agent(request),
            ip=client_ip(request),
        )
        return reply(session)
    raise AuthError(400, "invalid_credentials", "unsupported_grant_type")


async def _id_token_grant(request: web.Request, body: TokenRequest) -> web.Response:
    if not body.id_token or not body.provider:
        message = "id_token required" if not body.id_token else "provider required"
        raise oauth_error("invalid_request", message, "validation_failed")
    link_to = bearer_token(request) if body.link_identity else None
    providers = request.app[PROVIDERS]
    claims = await providers.verify_id_token(body.provider, body.id_token, body.nonce, grant=True)
    if body.access_token:
        check_access_token_hash(claims, body.access_token, body.id_token)
    identity = identity_of(claims, providers.issuer_of(body.provider))
    session = await db(request).call(
        "sign_in_with_identity",
        provider=body.provider,
        subject=identity.subject,
        claims=Jsonb(identity.claims),
        method="id_token",
        access_token=link_to,
        user_agent=user_agent(request),
        ip=client_ip(request),
    )
    return reply(session)


async def _web3_grant(request: web.Request, body: TokenRequest) -> web.Response:
    await require_captcha(request, body)  # as GoTrue, whose captcha guards this grant
    config = settings(request)
    if not (config.web3_solana_enabled or config.web3_ethereum_enabled):
        raise AuthError(422, "web3_provider_disabled", "Web3 provider is disabled")
    if body.chain == "solana" and not config.web3_solana_enabled:
        raise AuthError(422, "web3_provider_disabled", "Solana Web3 provider is disabled")
    if body.chain == "ethereum" and not config.web3_ethereum_enabled:
        raise AuthError(422, "web3_provider_disabled", "Ethereum Web3 provider is disabled")
    if body.chain not in ("solana", "ethereum"):
        raise AuthError(400, "web3_unsupported_chain", "Unsupported chain")
    chain: web3.Chain = "solana" if body.chain == "solana" else "ethereum"
    raw = body.message or ""
    maximum_validity = timedelta(seconds=config.web3_maximum_validity)
    try:
        web3.check_length(raw)
        signature = web3.decode_signature(chain, body.signature or "")
        message = web3.parse_message(chain, raw)
    except web3.MessageRefused as refusal:
        raise validation_failed(str(refusal)) from None
    web3.check(
        message,
        signature,
        now=datetime.now(UTC),
        maximum_validity=maximum_validity,
        site_url=config.site_url,
        allow_list=config.uri_allow_list,
    )
    session = await db(request).call(
        "sign_in_with_identity",
        provider="web3",
        subject=message.subject,
        claims=Jsonb(web3.identity_claims(message)),
        method="web3",
        user_agent=user_agent(request),
        ip=client_ip(request),
        message_digest=hashlib.sha256(raw.encode()).digest(),
        valid_until=message.valid_until(maximum_validity),
        audit=Jsonb(web3.audit_details(message)),
    )
    return reply(session)


async def _password_grant(request: web.Request, body: TokenRequest) -> web.Response:
    await require_captcha(request, body)  # the password grant only, as in GoTrue
    email, phone, password = body.email, body.phone, body.password or ""
    if email and phone:
        raise validation_failed("Only an email address or phone number should be provided on login.")
    if phone:
        require_phone(request, 422, "Phone logins are disabled")
    elif not email:
        raise validation_failed("missing email or phone")
    if phone:
        account = await db(request).call_row("password_hash_by_phone", phone=phone)
    else:
        account = await db(request).call_row("password_hash_by_email", email=email)
    stored_hash = account["password_hash"] if account else None
    # Verified even without a user or password (against a dummy hash): timing does not tell them apart.
    verification = await passwords(request).verify(stored_hash, password)
    if not verification.ok or account is None:
        if phone:
            await db(request).call("record_failed_phone_login", phone=phone, ip=client_ip(request))
        else:
            await db(request).call("record_failed_login", email=email, ip=client_ip(request))
        request.app[METRICS].login_failures.inc()
        raise invalid_credentials()
    session = await db(request).call(
        "sign_in_with_password",
        user_id=account["user_id"],
        verified_hash=stored_hash,
        rehash=verification.rehash,
        user_agent=user_agent(request),
        ip=client_ip(request),
        phone=bool(phone),
    )
    weakness = passwords(request).weakness(password)
    if weakness and '"access_token"' in session:
        return reply({**json.loads(session), "weak_password": weakness.as_json()})
    return reply(session)
