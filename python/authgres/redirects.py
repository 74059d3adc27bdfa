"""Where a flow may send the browser back to: the site, or an allow-listed URL (GoTrue's rules)."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit


@lru_cache(maxsize=128)
def _glob(pattern: str) -> re.Pattern[str]:
    """`**` crosses '.' and '/', `*` and `?` do not (gobwas/glob with those separators)."""
    parts = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^./]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^./]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts) + r"\Z")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def safe_redirect(requested: str | None, site_url: str, allow_list: tuple[str, ...]) -> str:
    """requested when it is allowed, else the site URL."""
    if not requested:
        return site_url
    try:
        target, site = urlsplit(requested), urlsplit(site_url)
    except ValueError:
        return site_url
    if not target.scheme or not target.netloc:  # relative and scheme-relative URLs never
        return site_url
    host = target.hostname or ""
    if host.isdigit():  # decimal-encoded IPs are a classic filter bypass
        return site_url
    same_site = target.scheme == site.scheme and (
        target.netloc == site.netloc or (_is_loopback(host) and host == site.hostname)
    )
    if same_site:
        return requested
    without_fragment = urlunsplit(target._replace(fragment=""))
    if any(_glob(pattern).match(without_fragment) for pattern in allow_list):
        return requested
    return site_url
