"""The application's shared state: one typed key per object that start-up puts in the app.

The types are for the type checker only, so importing this module loads none of them: route modules
reach the state through http.py without loading the mailer, which only app.py starts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from authgres.captcha import Captcha
    from authgres.db import Database
    from authgres.events import UserEvents
    from authgres.mailer import Mailer
    from authgres.metrics import Metrics
    from authgres.passwords import Passwords
    from authgres.providers import Providers
    from authgres.settings import Settings
    from authgres.sms import SmsSender

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
MAILER: web.AppKey[Mailer] = web.AppKey("mailer")
DB: web.AppKey[Database] = web.AppKey("db")
PASSWORDS: web.AppKey[Passwords] = web.AppKey("passwords")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
EVENTS: web.AppKey[UserEvents] = web.AppKey("events")
CAPTCHA: web.AppKey[Captcha] = web.AppKey("captcha")
SMS: web.AppKey[SmsSender] = web.AppKey("sms")
PROVIDERS: web.AppKey[Providers] = web.AppKey("providers")
# Set when the service begins to stop: /ready then answers 503 while in-flight requests finish.
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining")
