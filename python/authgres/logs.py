"""The service's log: JSON lines (AUTHGRES_LOG_FORMAT=json) or plain text, on standard error.

One line per request comes from the logger `authgres.access` (observe.py), at INFO; every other line
logged while a request is answered carries that request's id. No line holds a token, code, password or
key: the request line names the route's template, never the path or query it was reached by, and
nothing logs headers or bodies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar
from typing import Any, TextIO

import msgspec

# The id of the request being answered, for every line logged meanwhile (set by observe.py).
REQUEST_ID: ContextVar[str | None] = ContextVar("authgres_request_id", default=None)

access_log = logging.getLogger("authgres.access")
_encode = msgspec.json.Encoder().encode
_second: tuple[int, str] = (-1, "")


def _utc(created: float) -> str:
    """created as 2024-01-31T12:00:00.123Z; the part up to the second is formatted once per second."""
    global _second
    second, text = _second
    if int(created) != second:
        second = int(created)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return f"{text}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "msg", "request_id"?, the request line's fields?, "exc"?}"""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields is not None:
            entry.update(fields)
        elif (request_id := REQUEST_ID.get()) is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _encode(entry).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL message`, then the request id (and the user, on a request line) as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        if fields is not None:
            user = f" user_id={fields['user_id']}" if "user_id" in fields else ""
            return f"{line}{user} request_id={fields['request_id']}"
        request_id = REQUEST_ID.get()
        return line if request_id is None else f"{line} request_id={request_id}"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Standard error, written once per pass of the event loop rather than once per line.

    Each write to a pipe (journald, a container runtime) is a system call that also wakes the reader.
    Under load one pass of the loop answers many requests: their lines go out together at its end. From
    any other thread, or without a running loop, a line goes out at once.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        # Not sys.stderr, which flushes at every newline.
        if stream is None:
            stream = open(2, "w", buffering=1 << 16, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        super().__init__(stream)
        self._pending_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on

    def write_line(self, line: str) -> None:
        """A line formatted already (log_request's)."""
        self.acquire()
        try:
            self.stream.write(line + self.terminator)
            self.flush()
        finally:
            self.release()

    def flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().flush()
            return
        if self._pending_on is not loop:  # (one scheduled on a loop that closed first never runs)
            self._pending_on = loop
            loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._pending_on = None
        super().flush()


_direct: StderrHandler | None = None  # configure()'s handler, when it writes JSON
_root = logging.getLogger()


def _alone(handler: logging.Handler) -> bool:
    """Whether handler is the only one a line of authgres.access reaches."""
    if _root.handlers != [handler]:
        return False
    logger: logging.Logger | None = access_log
    while logger is not None and logger is not _root:
        if logger.handlers or logger.filters or not logger.propagate:
            return False
        logger = logger.parent
    return not handler.filters


def log_request(message: str, fields: dict[str, Any]) -> None:
    """The request's line, at INFO on authgres.access (the caller has checked that INFO is enabled).

    When configure()'s JSON handler is the only one that would see it, as in `authgres serve`, the line
    is written by that handler directly, the same line JsonFormatter would write: no LogRecord, no pass
    through the loggers and their filters, 10 µs less on every request. Otherwise (another handler, as
    under pytest, or the text format) it goes through logging like any other line.
    """
    handler = _direct
    if handler is not None and _alone(handler):
        entry = {"time": _utc(time.time()), "level": "INFO", "logger": access_log.name, "msg": message, **fields}
        handler.write_line(_encode(entry).decode())
    else:
        access_log.info(message, extra={"fields": fields})


def flush() -> None:
    """Writes out what the root logger's handlers hold: for a process that ends with os._exit, which skips
    the flush logging does at exit."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, StderrHandler):
            handler._flush_now()


def configure(level: str, form: str) -> None:
    """The root logger at level, writing `form` (json or text) to standard error; nothing when the root
    logger has handlers already (an application that embeds the service, or pytest, configured it)."""
    global _direct
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    _direct = handler if form == "json" and _root.handlers == [handler] else None
