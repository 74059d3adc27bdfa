"""How the service reads a batched item's outcome: a value, an auth error, or a retryable conflict."""

import pytest

from authgres.db import JsonText, _raise_failure
from authgres.errors import AuthError


def test_a_value_passes_through():
    user = JsonText('{"id": "x", "error_note": "not a failure"}')
    assert _raise_failure(user) is user


def test_an_auth_sqlstate_becomes_its_error_code():
    with pytest.raises(AuthError) as raised:
        _raise_failure(JsonText('{"error": "AUJ04", "message": "Session from session_id claim in JWT does not exist"}'))
    assert (raised.value.status, raised.value.code) == (403, "session_not_found")


def test_a_deadlock_victim_is_retryable():
    with pytest.raises(AuthError) as raised:
        _raise_failure(JsonText('{"error": "40P01", "message": "deadlock detected"}'))
    assert raised.value.status == 503


def test_any_other_failure_is_an_internal_error():
    with pytest.raises(RuntimeError, match="22P02"):
        _raise_failure(JsonText('{"error": "22P02", "message": "invalid input syntax"}'))
