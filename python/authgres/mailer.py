"""Delivers the email outbox that the SQL flows write: SMTP (aiosmtplib) or the console.

Drained as outbox.py drains every outbox (NOTIFY authgres_outbox, a periodic sweep, leased rows), so any
number of service processes may run a mailer against one database; a failed send is retried with
exponential backoff and ends as 'dead' with its last error after the last attempt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import aiosmtplib
import jinja2
from jinja2.ext import Extension

from authgres.db import Database
from authgres.outbox import OutboxDrain
from authgres.settings import Settings

log = logging.getLogger("authgres.mailer")

_TEXT_MARK = "\n----- text -----\n"
_HTML_MARK = "\n----- html -----\n"


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str

    def message(self, sender: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = self.to
        message["Subject"] = self.subject
        message.set_content(self.text)
        message.add_alternative(self.html, subtype="html")
        return message


class _GoTrueVariables(Extension):
    """Lets templates ported from GoTrue keep `{{ .Token }}`: the leading dot is dropped."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return re.sub(r"(\{\{-?\s*)\.(?=[A-Za-z])", r"\1", source)


class Templates:
    """Jinja2 templates, one file per kind (`<kind>.jinja`, or `<kind>.<locale>.jinja` first)."""

    def __init__(self, settings: Settings) -> None:
        folders = [settings.mailer_templates] if settings.mailer_templates else []
        loader = jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(folders), jinja2.FileSystemLoader(str(Path(__file__).parent / "templates"))]
        )
        # Rendered twice: the HTML part with autoescaping, subject and text without it.
        self.plain = jinja2.Environment(loader=loader, autoescape=False, extensions=[_GoTrueVariables])  # noqa: S701
        self.html = jinja2.Environment(loader=loader, autoescape=True, extensions=[_GoTrueVariables])
        self.settings = settings

    def render(self, kind: str, to: str, payload: Mapping[str, Any]) -> Email:
        data = payload.get("data") or {}
        locale = str(data.get("locale") or "").replace("/", "")
        names = [f"{kind}.{locale}.jinja", f"{kind}.jinja"] if locale else [f"{kind}.jinja"]
        mode = self.settings.delivery(kind)
        link = f"{self.settings.external_url}/verify?" + urlencode(
            {"token": payload["token_hash"], "type": payload["verify_type"], "redirect_to": payload["redirect_to"]}
        )
        variables = {
            "ConfirmationURL": link,
            "Token": payload["token"],
            "TokenHash": payload["token_hash"],
            "SiteURL": payload["site_url"],
            "Email": payload["email"],
            "NewEmail": payload.get("new_email", ""),
            "RedirectTo": payload["redirect_to"],
            "Data": data,
            # A nonce and a second step are typed where they were asked for: they have no link.
            "ShowLink": mode in ("both", "link") and kind not in ("reauthentication", "mfa_email"),
            "ShowCode": mode in ("both", "code") or kind in ("reauthentication", "mfa_email"),
        }
        plain = self.plain.select_template(names).render(variables)
        subject, _, text = plain.partition(_TEXT_MARK)
        text = text.partition(_HTML_MARK)[0]
        html = self.html.select_template(names).render(variables).partition(_HTML_MARK)[2]
        return Email(to=to, subject=subject.strip(), text=text.strip() + "\n", html=html.strip() + "\n")


class Transport(Protocol):
    async def send(self, email: Email) -> None: ...


class ConsoleTransport:
    """Development: prints the email instead of sending it."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, email: Email) -> None:
        print(f"\n--- email to {email.to}: {email.subject}\n{email.text}---", flush=True)


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, email: Email) -> None:
        settings = self.settings
        await aiosmtplib.send(
            email.message(settings.smtp_sender),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user,
            password=settings.smtp_pass,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            timeout=15,
        )


def transport_for(settings: Settings) -> Transport:
    return SmtpTransport(settings) if settings.smtp_host else ConsoleTransport(settings.smtp_sender)


class Mailer(OutboxDrain):
    channel = "authgres_outbox"
    claim = "claim_outbox"

    def __init__(self, settings: Settings, db: Database, transport: Transport | None = None) -> None:
        self.settings = settings
        self.db = db
        self.transport = transport or transport_for(settings)
        self.templates = Templates(settings)

    async def deliver(self, row: Mapping[str, Any]) -> None:
        try:
            email = self.templates.render(row["kind"], row["to_address"], json.loads(row["payload"]))
            await self.transport.send(email)
        except Exception as error:
            log.warning(
                "mailer: email %s to %s failed (attempt %s): %s", row["id"], row["to_address"], row["attempts"], error
            )
            await self.db.call(
                "fail_outbox",
                id=row["id"],
                error=f"{type(error).__name__}: {error}",
                max_attempts=self.settings.mailer_max_attempts,
                retry_base_seconds=self.settings.mailer_retry_base_seconds,
            )
        else:
            await self.db.call("complete_outbox", id=row["id"])

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Mailer]:
        async with self.draining():
            yield self
