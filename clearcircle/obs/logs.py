"""Structured logs: one JSON object a line, with the id of the event being handled on every line.

Stdlib `logging` with a JSON formatter (no extra dependency; uvicorn's own loggers propagate into it). The
event id travels in a context variable, so every line logged while an event is handled -- by the API, the
core or a library -- carries it without being passed down: `with event_context(event.id): ...`. Starlette
runs sync work in threads with the context copied, so it follows into `run_in_threadpool` too.

Secrets never reach a line: API key secrets (cc_<id>_<secret>) are masked in every message, and nothing
here logs request headers or event bodies (raw phone/device/payment values are hashed before the core sees
them; see events.identifiers).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

EVENT_ID: ContextVar[str | None] = ContextVar("clearcircle_event_id", default=None)

# the secret part of an API key (store.repository.create_key: cc_<12 hex>_<token_urlsafe(24)>)
_SECRET = re.compile(r"(cc_[0-9a-f]{12}_)[A-Za-z0-9_\-]{8,}")
# attributes every LogRecord has; anything else on a record came in through `extra=` and is written out
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """Mask API key secrets, keeping the public key id (cc_<id>_***)."""
    return _SECRET.sub(r"\1***", text) if "cc_" in text else text


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: ts, level, logger, msg, event_id, then any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "event_id": getattr(record, "event_id", None) or EVENT_ID.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


@contextmanager
def event_context(event_id: str | None) -> Iterator[None]:
    """Every line logged inside carries this event id."""
    token = EVENT_ID.set(event_id)
    try:
        yield
    finally:
        EVENT_ID.reset(token)


def configure(level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """JSON lines on `stream` (stderr) for the root logger and uvicorn's loggers; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler
