"""Services in processes of their own (`authgres serve`), driven without an event loop: status and body of a
request, and waiting for a condition up to a deadline. tests/http/conftest.py's `serve` starts them."""

import time
import urllib.error
import urllib.request

SERVICE_DEADLINE = 20  # seconds a started or stopped service may take, at most


def get(request: str | urllib.request.Request) -> tuple[int, bytes]:
    """Status and body of a URL (or a prepared request), error answers included."""
    try:
        with urllib.request.urlopen(request, timeout=SERVICE_DEADLINE) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(predicate, what: str):
    deadline = time.monotonic() + SERVICE_DEADLINE
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def answers(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:
        return False
