"""Delivers the SMS outbox that the phone flows write (sql/functions/phone.sql), through an SMS provider's
plain HTTP API with aiohttp's client: Twilio (SMS, and WhatsApp through the `whatsapp:` prefix), Twilio
Verify, Vonage, MessageBird, Textlocal, or the console for development.

As the mailer drains the email outbox: woken by NOTIFY authgres_sms_outbox, with a periodic sweep as
fallback; rows are leased with FOR UPDATE SKIP LOCKED; a provider that is down (no answer, 5xx, 429)
gets the text again later with exponential backoff, and a provider that refuses it (any other 4xx, or a
refusal in its answer) makes it dead at once with the provider's error (auth.reject_sms_outbox, which
also removes what was made only for that text). A signed-in user's request that texts a code at once (phone
change, phone factor's challenge) sends the row SQL leased to it through the same path, and reports a
refusal as 422 sms_send_failed; a sign-up's text is queued, so its answer's timing says nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from authgres.db import Database
from authgres.errors import AuthError
from authgres.outbox import OutboxDrain
from authgres.settings import Settings

log = logging.getLogger("authgres.sms")

_CODE = re.compile(r"\{\{-?\s*\.?Code\s*-?\}\}")
_E164 = re.compile(r"^[1-9][0-9]{1,14}$")


class SmsRefused(Exception):
    """The provider answered and will not deliver this text (a bad number, a bad sender, bad credentials)."""


class SmsUnavailable(Exception):
    """The provider could not be reached or asked to try later: the text is sent again later."""


@dataclass(frozen=True)
class Text:
    to: str  # E.164 digits, no +
    channel: str  # sms or whatsapp
    body: str
    code: str


def render(template: str, code: str) -> str:
    """The message text: the template with {{ .Code }} (GoTrue's spelling) or {{ Code }} replaced by the code."""
    return _CODE.sub(code, template)


class Provider(Protocol):
    async def send(self, http: aiohttp.ClientSession, text: Text) -> str:
        """Sends the text; returns the provider's message id. Raises SmsRefused or SmsUnavailable."""
        ...


async def _answer(response: aiohttp.ClientResponse) -> Any:
    """The provider's JSON answer; a 5xx or 429 is SmsUnavailable, another non-2xx SmsRefused with its message."""
    try:
        body: Any = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        body = None
    if response.status >= 500 or response.status == 429:
        raise SmsUnavailable(f"HTTP {response.status}")
    if response.status >= 300:
        raise SmsRefused(f"HTTP {response.status}: {_message(body)}")
    if body is None:
        raise SmsUnavailable(f"HTTP {response.status}: an answer that is not JSON")
    return body


def _message(body: Any) -> str:
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("description") or errors[0].get("message") or errors[0])
        for key in ("message", "error_message", "error-text", "detail"):
            if body.get(key):
                code = f" (code {body['code']})" if body.get("code") else ""
                return f"{body[key]}{code}"
    return "no details"


class Console:
    """Development: prints the text (and its code) instead of sending it."""

    async def send(self, http: aiohttp.ClientSession, text: Text) -> str:
        print(f"\n--- {text.channel} to +{text.to}: {text.body}\n---", flush=True)
        return ""


@dataclass(frozen=True)
class Twilio:
    """Twilio's Messages API: POST /2010-04-01/Accounts/{sid}/Messages.json, basic auth, a form."""

    api_url: str
    account_sid: str
    auth_token: str
    sender: str  # a Messaging Service SID (MG...) or a number

    async def send(self, http: aiohttp.ClientSession, text: Text) -> str:
        to, sender = f"+{text.to}", self.sender
        messaging_service = sender.startswith("MG")
        if text.channel == "whatsapp":
            to = f"whatsapp:{to}"
            if not messaging_service:
                sender = f"whatsapp:{sender if sender.startswith('+') else '+' + sender}"
        form = {"To": to, "Body": text.body, "MessagingServiceSid" if messaging_service else "From": sender}
        url = f"{self.api_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        headers = {"Authorization": aiohttp.encode_basic_auth(self.account_sid, self.auth_token)}
        async with http.post(url, data=form, headers=headers) as response:
            body = await _answer(response)
        if body.get("status") in ("failed", "undelivered"):
            raise SmsRefused(f"{body.get('error_message')} (code {body.get('error_code')})")
        return str(body.get("sid") or "")


@dataclass(frozen=True)
class TwilioVerify:
    """Twilio Verify: the provider makes, sends and checks the code (POST /v2/Services/{sid}/Verifications
    and /VerificationCheck); the code authgres issued is not sent."""

    api_url: str
    account_sid: str
    auth_token: str
    service_sid: str

    def _post(self, http: aiohttp.ClientSession, path: str, form: dict[str, str]) -> Any:
        headers = {"Authorization": aiohttp.encode_basic_auth(self.account_sid, self.auth_token)}
        return http.post(f"{self.api_url}/v2/Services/{self.service_sid}/{path}", data=form, headers=headers)

    async def send(self, http: aiohttp.ClientSession, text: Text) -> str:
        async with self._post(http, "Verifications", {"To": f"+{text.to}", "Channel": text.channel}) as response:
            body = await _answer(response)
        return str(body.get("sid") or "")

    async def check(self, http: aiohttp.ClientSession, phone: str, code: str) -> bool:
        """Whether Twilio approves this code for the number (a 404: no pending verification, so no)."""
        async with self._post(http, "VerificationCheck", {"To": f"+{phone}", "Code": code}) as response:
            if response.status == 404:
                return False
            body = await _answer(response)
        return bool(body.get("status") == "approved")


@dataclass(frozen=True)
class Vonage:
    """Vonage's SMS API: POST /sms/json, a form with the key and secret; status "0" is sent."""

    api_url: str
    api_key: str
    api_secret: str
    sender: str

    async def send(self, http: aiohttp.ClientSession, text: Text) -> str:
        form = {
            "from": self.sender,
            "to": text.to,
            "text": text.body,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
        }
        if not text.body.isascii():
            form["type"] = "unicode"
        async with http.post(f"{self.api_url}/sms/json", data=form) as response:
            body = await _answer(response)
        messages = body.get("messages") or [{}]
        status = str(messages[0].get("status", ""))
        if status == "1":  # throttled
            raise SmsUnavailable(f"vonage: {messages[0].get('error-text')}")
        if status != "0":
            raise SmsRefused(f"vonage: {messages[0].get('error-text')} (status {status})")
        return str(messages[0].get("message-id") or "")


@dataclass(frozen=True)
class MessageBird:
    """MessageBird: POST /messages with `Authorization: AccessKey ...`, a form."""

    api_url: str
    access_key: str
    originator: str

    async def send(self, http: aiohttp.ClientSession, text: Text) -> str:
        form = {
            "originator": self.originator,
            "body": text.body,
            "recipients": text.to,
            "type": "sms",
            "datacoding": "unicode",
        }
        headers = {"Authorization": f"AccessKey {self.access_key}"}
        async with http.post(f"{self.api_url}/messages", data=form, headers=headers) as response:
            body = await _answer(response)
        return str(body.get("id") or "")


@dataclass(frozen=True)
class Textlocal:
    """Textlocal: POST /send/, a form with the API key; {"status": "success"} is sent."""

    api_url: str
    api_key: str
    sender: str

    async def send(self, http: aiohttp.ClientSession, text: Text) -> str:
        form = {"sender": self.sender, "apikey": self.api_key, "message": text.body, "numbers": text.to}
        async with http.post(f"{self.api_url}/send/", data=form) as response:
            body = await _answer(response)
        if body.get("status") != "success":
            raise SmsRefused(f"textlocal: {_message(body)}")
        messages = body.get("messages") or [{}]
        return str(messages[0].get("id") or "")


def provider_for(settings: Settings) -> Provider:
    """The provider AUTHGRES_SMS_PROVIDER names, with its credentials (checked at start-up)."""
    s = settings
    match s.sms_provider:
        case "twilio":
            return Twilio(
                s.sms_twilio_api_url,
                s.sms_twilio_account_sid or "",
                s.sms_twilio_auth_token or "",
                s.sms_twilio_message_service_sid or "",
            )
        case "twilio_verify":
            return TwilioVerify(
                s.sms_twilio_verify_api_url,
                s.sms_twilio_verify_account_sid or "",
                s.sms_twilio_verify_auth_token or "",
                s.sms_twilio_verify_message_service_sid or "",
            )
        case "vonage":
            return Vonage(s.sms_vonage_api_url, s.sms_vonage_api_key or "", s.sms_vonage_api_secret or "",
                          s.sms_vonage_from or "")  # fmt: skip
        case "messagebird":
            return MessageBird(
                s.sms_messagebird_api_url, s.sms_messagebird_access_key or "", s.sms_messagebird_originator or ""
            )
        case "textlocal":
            return Textlocal(s.sms_textlocal_api_url, s.sms_textlocal_api_key or "", s.sms_textlocal_sender or "")
    return Console()


class SmsSender(OutboxDrain):
    """Sends texts: the outbox's due rows in the background (run), and a request's own row at once (send_now)."""

    channel = "authgres_sms_outbox"
    claim = "claim_sms_outbox"

    def __init__(self, settings: Settings, db: Database, provider: Provider | None = None) -> None:
        self.settings = settings
        self.db = db
        self.provider = provider or provider_for(settings)
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "SmsSender.open() first"
        return self._http

    @contextlib.asynccontextmanager
    async def open(self, background: bool) -> AsyncIterator[SmsSender]:
        """One HTTP session to the provider for the process's lifetime; with background, the drain loop too."""
        timeout = aiohttp.ClientTimeout(total=self.settings.sms_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as self._http:
            if not background:
                yield self
                return
            async with self.draining():
                yield self

    async def deliver(self, row: Mapping[str, Any]) -> str | None:
        """Sends one leased row and records the outcome; returns the provider's refusal, if it refused."""
        payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
        code = str(payload.get("code", ""))
        text = Text(row["to_phone"], row["channel"], render(self.settings.sms_template, code), code)
        try:
            message_id = await self.provider.send(self.http, text)
        except SmsRefused as refusal:
            log.warning("sms: text %s to +%s refused: %s", row["id"], row["to_phone"], refusal)
            await self.db.call("reject_sms_outbox", id=row["id"], error=str(refusal))
            return str(refusal)
        except Exception as error:
            log.warning("sms: text %s to +%s failed (attempt %s): %s", row["id"], row["to_phone"], row["attempts"],
                        error or type(error).__name__)  # fmt: skip
            await self.db.call(
                "fail_sms_outbox",
                id=row["id"],
                error=f"{type(error).__name__}: {error}",
                max_attempts=self.settings.sms_max_attempts,
                retry_base_seconds=self.settings.sms_retry_base_seconds,
            )
            return None
        await self.db.call("complete_sms_outbox", id=row["id"], provider_message_id=message_id)
        return None

    async def send_now(self, answer: dict[str, Any]) -> dict[str, Any]:
        """The answer of a SQL function that leased a text to this request (its "sms" member): the text is
        sent before the request is answered, and the answer comes back without that member. A refusal is
        422 sms_send_failed (SQL has already undone what was made for the text); a provider that is down
        only delays it, the outbox sends it later."""
        row = answer.pop("sms", None)
        if row is not None:
            refusal = await self.deliver(row)
            if refusal is not None:
                raise AuthError(422, "sms_send_failed", f"Error sending SMS: {refusal}")
        return answer

    async def check(self, phone: str, code: str) -> bool | None:
        """With Twilio Verify, whether the provider approves the code (None for every other provider: SQL checks).
        A provider that cannot be asked is a 503: the code is not counted as wrong."""
        if not isinstance(self.provider, TwilioVerify) or phone in self.settings.sms_test_otp:
            return None
        if not _E164.match(phone):  # SQL refuses it (validation_failed) before Twilio hears of it
            return None
        try:
            return await self.provider.check(self.http, phone, code.strip())
        except (SmsUnavailable, aiohttp.ClientError, TimeoutError) as error:
            log.warning("sms: Twilio Verify could not check a code: %s", error)
            raise AuthError(503, "sms_send_failed", "The SMS provider cannot check the code, please retry") from None
        except SmsRefused:
            return False
