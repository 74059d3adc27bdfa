"""Property-based tests of the whole HTTP API (schemathesis): for every operation in /openapi.json,
requests generated from its declared schemas, valid ones and invalid ones, never get a 5xx, and every
answer (errors included) has a documented status code and conforms to the documented schema.

Each operation runs against its own live server (real aiohttp app, fresh migrated database), in a
thread of its own because schemathesis calls it synchronously. Authenticated operations get a real
access token, admin operations the service_role key, and half the ids in paths name real rows. The
examples are derandomized and bounded, so a run is repeatable and takes about a minute on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import jwt
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from authgres.app import create_app
from authgres.openapi import document
from authgres.settings import Settings
from tests.authenticator import Authenticator
from tests.conftest import JWT_SECRET, free_port

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]
PASSWORD = "a good password"
MADE_BY = {"factor_id": ("/factors", {"factor_type": "totp"}), "key_id": ("/api_keys", {"name": "a key"})}
# An event stream ends when the token it was opened with expires: it gets one that does within 0.3
# second, so that its answer ends and is checked like any other.
STREAMS = {"/sessions/events"}

# Unknown query parameters are ignored, as GoTrue ignores them (clients send redirect_to everywhere).
CONFIG = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
schema = schemathesis.openapi.from_dict(json.loads(document()), config=CONFIG)


class LiveApi:
    """The app served from a thread with its own event loop, and credentials for it."""

    def __init__(self, settings: Settings) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.http = requests.Session()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner = web.AppRunner(create_app(settings), access_log=None)
        self._users = itertools.count()
        self._email = ""
        self._token = ""
        self._ids: dict[str, str] = {}
        now = int(time.time())
        self.service_key = jwt.encode({"role": "service_role", "iat": now, "exp": now + 3600}, JWT_SECRET)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def start(self) -> None:
        self._thread.start()
        self._run(self._runner.setup())
        port = int(self.url.rsplit(":", 1)[1])
        self._run(web.TCPSite(self._runner, "127.0.0.1", port).start())

    def stop(self) -> None:
        self.http.close()
        self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def access_token(self) -> str:
        """A fresh session's token: the last one may have been logged out, or its password changed."""
        response = None
        if self._email:
            response = self.http.post(
                f"{self.url}/token?grant_type=password", json={"email": self._email, "password": PASSWORD}
            )
        if response is None or response.status_code != 200:
            self._email, self._ids = f"user{next(self._users)}@example.com", {}
            response = self.http.post(f"{self.url}/signup", json={"email": self._email, "password": PASSWORD})
            assert response.status_code == 200, response.text
        session = response.json()
        self._token = session["access_token"]
        claims = jwt.decode(self._token, options={"verify_signature": False})
        self._ids.update(user_id=session["user"]["id"], session_id=claims["session_id"])
        self._ids.update(identity_id=session["user"]["identities"][0]["identity_id"])
        return self._token

    def _real_id(self, name: str) -> str:
        """The id of a real user, session, factor or API key of the current user, made when missing."""
        if not self._token:
            self.access_token()
        if name == "passkey_id" and name not in self._ids:
            self._ids[name] = self._register_passkey()
        if name not in self._ids:
            path, body = MADE_BY[name]
            bearer = {"Authorization": f"Bearer {self._token}"}
            response = self.http.post(f"{self.url}{path}", json=body, headers=bearer)
            assert response.status_code == 200, response.text
            self._ids[name] = response.json()["id"]
        return self._ids[name]

    def _register_passkey(self) -> str:
        """A passkey of the current user, registered with the software authenticator."""
        bearer = {"Authorization": f"Bearer {self._token}"}
        options = self.http.post(f"{self.url}/passkeys/registration/options", headers=bearer).json()
        credential = Authenticator().create(options["options"])
        body = {"challenge_id": options["challenge_id"], "credential": credential}
        response = self.http.post(f"{self.url}/passkeys/registration/verify", json=body, headers=bearer)
        assert response.status_code == 200, response.text
        passkey_id: str = response.json()["id"]
        return passkey_id

    def prepare(self, case: schemathesis.Case) -> dict[str, str]:
        """Headers with a real token in place of the generated one (none where the case leaves it out);
        half of the well-formed ids in the path replaced by real ones, so that requests reach the rows."""
        headers = {}
        if "Authorization" in (case.headers or {}):
            admin = case.path.startswith(("/admin", "/invite"))
            token = self.service_key if admin else self.access_token()
            if case.path in STREAMS:
                claims = jwt.decode(token, options={"verify_signature": False})
                token = jwt.encode({**claims, "exp": time.time() + 0.3}, JWT_SECRET)
            headers["Authorization"] = f"Bearer {token}"
        for name, value in (case.path_parameters or {}).items():
            with contextlib.suppress(ValueError, TypeError):
                if uuid.UUID(value).int % 2 == 0:
                    case.path_parameters[name] = self._real_id(name)
        return headers


@pytest.fixture
def live_api(settings: Settings) -> Iterator[LiveApi]:
    api = LiveApi(replace(settings, passkey_enabled=True, mfa_web_authn_enabled=True))
    api.start()
    yield api
    api.stop()


def test_the_tested_document_is_the_served_one(live_api: LiveApi) -> None:
    assert live_api.http.get(f"{live_api.url}/openapi.json").json() == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_any_request_gets_a_documented_answer_and_never_a_5xx(case: schemathesis.Case, live_api: LiveApi) -> None:
    checks = CHECKS
    if (case.method == "GET" and case.path == "/verify") or case.media_type == "application/x-www-form-urlencoded":
        # The emailed link and its confirmation page answer a browser: a bad link is a 303 to the app with
        # the error in the fragment. (A form cannot say a value's JSON type either.)
        checks = [check for check in CHECKS if check is not negative_data_rejection]
    case.call_and_validate(base_url=live_api.url, headers=live_api.prepare(case), checks=checks)
