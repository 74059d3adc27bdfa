"""Micro-benchmark: the Python CPU a hot-path request spends reading its input, before and after the
declared inputs (inputs.py). Prints microseconds per request; asserts nothing.

    .venv/bin/python bench/decode.py

"before" is what the handlers did until the declarations: json.loads, then a type check per member
(http.read_json and text_field, reproduced here) and request.query.get; "after" is msgspec decoding the
body into the handler's Struct (bounds and NUL checks included) and the query into its Struct. Bodies
are what the official clients send.
"""

from __future__ import annotations

import json
import timeit
from typing import Any

import msgspec

from authgres.inputs import decode_body
from authgres.routes.token import TokenQuery, TokenRequest

REFRESH = b'{"refresh_token":"v1.MRjclaG4xdXlOHOabcd"}'
PASSWORD = (
    b'{"email":"user@example.com","password":"correct horse battery staple",'
    b'"gotrue_meta_security":{"captcha_token":null}}'
)
ROUNDS = 200_000


def read_json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def text_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value or None
    raise ValueError(f"{key} must be a string")


def before_refresh() -> None:
    query = {"grant_type": "refresh_token"}
    query.get("grant_type", "")
    text_field(read_json(REFRESH), "refresh_token")


def before_password() -> None:
    query = {"grant_type": "password"}
    query.get("grant_type", "")
    body = read_json(PASSWORD)
    text_field(body, "email"), text_field(body, "phone"), text_field(body, "password")


def after_refresh() -> None:
    msgspec.convert({"grant_type": "refresh_token"}, TokenQuery, strict=False)
    decode_body(REFRESH, TokenRequest)


def after_password() -> None:
    msgspec.convert({"grant_type": "password"}, TokenQuery, strict=False)
    decode_body(PASSWORD, TokenRequest)


def microseconds(function: Any) -> float:
    return min(timeit.repeat(function, number=ROUNDS, repeat=5)) / ROUNDS * 1e6


def main() -> None:
    for name, before, after in (
        ("POST /token refresh_token", before_refresh, after_refresh),
        ("POST /token password", before_password, after_password),
    ):
        old, new = microseconds(before), microseconds(after)
        print(f"{name:28} json.loads + checks {old:5.2f} µs   msgspec {new:5.2f} µs   ({new - old:+.2f} µs)")


if __name__ == "__main__":
    main()
