"""A loopback stand-in for Twilio's Messages API, speaking its wire format: POST
/2010-04-01/Accounts/{AccountSid}/Messages.json with HTTP basic auth (account SID, auth token) and a form
(To, From or MessagingServiceSid, Body); 201 with the message resource as JSON, or Twilio's error JSON
({code, message, more_info, status}) with a 4xx. `mode` makes it fail as an outage (500) or refuse every
number (400, Twilio's error 21211)."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from authgres.settings import Settings

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "twilio-auth-token-for-tests"
MESSAGING_SERVICE_SID = "MG0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Request:
    path: str
    authorization: str
    content_type: str
    form: dict[str, str]

    @property
    def code(self) -> str:
        match = re.search(r"\b(\d{6,10})\b", self.form.get("Body", ""))
        assert match, self.form
        return match.group(1)


class Twilio:
    def __init__(self) -> None:
        self.requests: list[Request] = []  # every request, answered or not
        self.accepted: list[Request] = []  # the texts it took (201)
        self.mode = "ok"  # or "500", "refuse"
        self.url = ""
        self.answering = asyncio.Event()  # cleared: requests are taken but held unanswered until it is set
        self.answering.set()
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        seen = Request(request.path, request.headers.get("Authorization", ""), request.content_type, form)
        async with self._changed:
            self.requests.append(seen)
            if self.mode == "ok":
                self.accepted.append(seen)
            self._changed.notify_all()
        await self.answering.wait()
        if self.mode == "500":
            return web.json_response({"code": 20500, "message": "Internal Server Error", "status": 500}, status=500)
        if self.mode == "refuse":
            return web.json_response(
                {
                    "code": 21211,
                    "message": f"The 'To' number {form.get('To')} is not a valid phone number.",
                    "more_info": "https://www.twilio.com/docs/errors/21211",
                    "status": 400,
                },
                status=400,
            )
        sid = "SM" + uuid.uuid4().hex
        resource = {"sid": sid, "status": "queued", "to": form.get("To"), "body": form.get("Body")}
        return web.json_response(resource, status=201)

    async def wait_for(self, count: int, *, accepted: bool = True) -> list[Request]:
        """The first `count` texts taken (or requests seen), once there are that many (20 s at most)."""
        seen = self.accepted if accepted else self.requests
        async with asyncio.timeout(20), self._changed:
            await self._changed.wait_for(lambda: len(seen) >= count)
            return list(seen[:count])

    async def text_to(self, phone: str, index: int = 0) -> Request:
        """The index-th text taken for a number given as E.164 digits (waits for it)."""

        def mine() -> list[Request]:
            return [r for r in self.accepted if r.form.get("To", "").endswith("+" + phone)]

        async with asyncio.timeout(20), self._changed:
            await self._changed.wait_for(lambda: len(mine()) > index)
            return mine()[index]

    def basic_auth(self) -> str:
        return "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


async def start(aiohttp_server: Any) -> Twilio:
    stand_in = Twilio()
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", stand_in.handle)
    server = await aiohttp_server(app)
    stand_in.url = str(server.make_url("")).rstrip("/")
    return stand_in


def phone_settings(settings: Settings, twilio: Twilio, **changes: Any) -> Settings:
    """Phone sign-in on, texts through the stand-in; send gaps off (throttles have a test of their own)."""
    return replace(
        settings,
        external_phone_enabled=True,
        sms_provider="twilio",
        sms_twilio_account_sid=ACCOUNT_SID,
        sms_twilio_auth_token=AUTH_TOKEN,
        sms_twilio_message_service_sid=MESSAGING_SERVICE_SID,
        sms_twilio_api_url=twilio.url,
        sms_max_frequency=0,
        rate_limit_sms_sent=1000,
        sms_retry_base_seconds=0.01,
        **changes,
    )
