"""Reading codes and links out of delivered emails."""

import asyncio
import re
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def code_in(message: EmailMessage) -> str:
    match = re.search(r"Your code: (\d{6,10})", text_of(message))
    assert match, text_of(message)
    return match.group(1)


def link_in(message: EmailMessage) -> str:
    """The emailed link as a path and query, to request from the test server."""
    match = re.search(r"Or open this link: (\S+)", text_of(message))
    assert match, text_of(message)
    url = urlsplit(match.group(1))
    return f"{url.path}?{url.query}"


def token_hash_in(message: EmailMessage) -> str:
    return parse_qs(urlsplit(link_in(message)).query)["token"][0]


def fragment(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).fragment).items()}


async def until(predicate):
    """Waits (20 s at most), yielding to the mailer on this event loop, until predicate() is truthy."""
    async with asyncio.timeout(20):
        while True:
            if value := predicate():
                return value
            await asyncio.sleep(0.02)


async def outbox_settled(admin) -> dict[str, int]:
    """The outbox's counts by status once no email is pending or being sent."""

    def counts():
        found = dict(admin.execute("select status, count(*) from auth.email_outbox group by status").fetchall())
        return None if found.get("pending") or found.get("sending") else found

    return await until(counts)
