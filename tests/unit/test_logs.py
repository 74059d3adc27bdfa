"""Log formats, and which one each command writes."""

import asyncio
import contextlib
import io
import json
import logging
import re
import sys

import pytest

from authgres import cli, logs
from authgres.logs import REQUEST_ID, JsonFormatter, TextFormatter


def record(message="hello %s", args=("world",), **extra):
    entry = logging.LogRecord("authgres", logging.WARNING, __file__, 1, message, args, None)
    entry.created = 1767225600.25  # 2026-01-01T00:00:00.250Z
    entry.__dict__.update(extra)
    return entry


def test_json_lines():
    line = json.loads(JsonFormatter().format(record()))
    assert line == {"time": "2026-01-01T00:00:00.250Z", "level": "WARNING", "logger": "authgres", "msg": "hello world"}
    token = REQUEST_ID.set("abc")
    try:
        assert json.loads(JsonFormatter().format(record()))["request_id"] == "abc"
    finally:
        REQUEST_ID.reset(token)
    fields = {"request_id": "r", "method": "GET", "route": "/user", "status": 200, "duration_ms": 1.5}
    assert json.loads(JsonFormatter().format(record(fields=fields))) == {
        "time": "2026-01-01T00:00:00.250Z",
        "level": "WARNING",
        "logger": "authgres",
        "msg": "hello world",
        **fields,
    }
    try:
        raise ValueError("ünïcode")
    except ValueError:
        failure = record(exc_info=sys.exc_info())
    line = JsonFormatter().format(failure)
    assert "\n" not in line
    assert json.loads(line)["exc"].endswith("ValueError: ünïcode")


def test_text_lines():
    assert TextFormatter().format(record()).endswith(" WARNING hello world")
    fields = {"request_id": "r", "user_id": "u"}
    assert TextFormatter().format(record(fields=fields)).endswith(" WARNING hello world user_id=u request_id=r")


@pytest.mark.parametrize(
    ("argv", "env", "form"),
    [
        (["serve"], {}, "json"),
        (["dev"], {}, "text"),
        (["dev"], {"AUTHGRES_LOG_FORMAT": "json"}, "json"),
        (["serve"], {"AUTHGRES_LOG_FORMAT": "TEXT"}, "text"),
    ],
)
def test_serve_writes_json_and_dev_text(monkeypatch, argv, env, form):
    configured = []
    monkeypatch.setattr(logs, "configure", lambda level, form: configured.append((level, form)))
    monkeypatch.setattr(cli, "serve", lambda *args: None)
    monkeypatch.setattr(cli, "dev", lambda env: None)
    for name in ("AUTHGRES_LOG_FORMAT", "AUTHGRES_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql:///x")
    monkeypatch.setenv("AUTHGRES_JWT_SECRET", "s" * 32)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli.main(argv)
    assert configured == [("INFO", form)]


def test_configure_puts_one_handler_on_the_root():
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    try:
        root.handlers = []
        logs.configure("debug", "json")
        assert root.level == logging.DEBUG
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert handler.stream.fileno() == 2  # standard error, buffered by the handler
        assert logs._direct is handler
        logs.configure("info", "text")  # configured already: nothing changes
        assert root.handlers == [handler] and root.level == logging.DEBUG
    finally:
        root.handlers = handlers
        root.setLevel(level)
        logs._direct = None


class Stream(io.StringIO):
    flushes = 0

    def flush(self):
        self.flushes += 1


@pytest.fixture
def alone(monkeypatch):
    """A JSON StderrHandler over a StringIO as the root's only handler, as configure() leaves it
    (pytest's own handlers, added for each test's call, are set aside meanwhile)."""
    handler = logs.StderrHandler(Stream())
    handler.setFormatter(JsonFormatter())
    monkeypatch.setattr(logs, "_direct", handler)
    return handler


@contextlib.contextmanager
def only(handler):
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    root.handlers = [handler]
    root.setLevel(logging.INFO)  # setLevel, which clears the loggers' caches
    try:
        yield
    finally:
        root.handlers = handlers
        root.setLevel(level)


FIELDS = {"request_id": "r", "method": "GET", "route": "/user", "status": 200, "duration_ms": 1.5}


def test_the_request_line_written_directly_is_the_line_logging_writes(alone):
    with only(alone):
        other = logging.NullHandler()  # another handler is there: the line goes through logging
        logging.getLogger().handlers.append(other)
        logs.log_request("GET /user 200 1.5 ms", FIELDS)
        through_logging = alone.stream.getvalue()
        logging.getLogger().handlers.remove(other)
        alone.stream.seek(0)
        alone.stream.truncate(0)
        alone.setFormatter(logging.Formatter("%(message)s, not JSON"))  # the direct way formats the line itself
        logs.log_request("GET /user 200 1.5 ms", FIELDS)
        direct = alone.stream.getvalue()
    assert direct.endswith("\n") and through_logging.endswith("\n")
    first, second = json.loads(direct), json.loads(through_logging)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.pop("time"))
    second.pop("time")
    assert first == second == {"level": "INFO", "logger": "authgres.access", "msg": "GET /user 200 1.5 ms", **FIELDS}


@pytest.mark.parametrize("where", ["handler", "logger"])
def test_a_filter_anywhere_sends_the_line_through_logging(alone, where):
    dropped = []

    def drop(record):
        dropped.append(record)
        return False

    target = {"handler": alone, "logger": logs.access_log}[where]
    target.addFilter(drop)
    try:
        with only(alone):
            logs.log_request("GET /user 200 1.5 ms", FIELDS)
    finally:
        target.removeFilter(drop)
    assert len(dropped) == 1 and alone.stream.getvalue() == ""


async def test_lines_go_out_once_per_pass_of_the_event_loop(alone):
    with only(alone):
        for _ in range(3):
            logs.log_request("GET /user 200 1.5 ms", FIELDS)
        assert alone.stream.flushes == 0
        await asyncio.sleep(0)
        assert alone.stream.flushes == 1
        assert len(alone.stream.getvalue().splitlines()) == 3
        logs.flush()
        assert alone.stream.flushes == 2


def test_without_a_loop_a_line_goes_out_at_once(alone):
    with only(alone):
        logs.log_request("GET /user 200 1.5 ms", FIELDS)
    assert alone.stream.flushes == 1
