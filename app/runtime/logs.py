"""Logs: one JSON object per line on stderr, for everything.

Our own events go through structlog; every library logger (uvicorn's included, warnings too) reaches the
root handler, which renders the same JSON (`logging_config()` is what `serve` hands uvicorn, so a worker
logs JSON from its first line). A traceback is the `exception` field of its line, never lines of its own.
The access log (`access()`) is one line per request written directly, without the processor chain: it is
on every request's path. Every line carries `pid` (which worker) and, inside a request, `request_id`.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog.types import EventDict, WrappedLogger

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _emit(line: str) -> None:
    """One write per line (print() writes the text and the newline apart, and the workers of a server share
    one stderr: their lines would interleave), to whatever sys.stderr is at the time of writing (a stream
    bound at configuration would be a closed one under test capture)."""
    stream = sys.stderr
    stream.write(line + "\n")
    stream.flush()


class _StderrLogger:
    """One JSON line per event (see _emit)."""

    def msg(self, message: str) -> None:
        _emit(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*_args: object) -> _StderrLogger:
    return _StderrLogger()


def _add_pid(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    event_dict["pid"] = os.getpid()
    return event_dict


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """Renders a standard-library record (uvicorn, SQLAlchemy, asyncio, warnings) as our JSON line."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        super().__init__(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                _TIMESTAMP,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _add_pid,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )


class StderrHandler(logging.Handler):
    """Writes each formatted record to the sys.stderr of the moment (see _StderrLogger)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _emit(self.format(record))
        except Exception:  # a failing log line must not fail the caller
            self.handleError(record)


def level_name(level: str | None) -> str:
    name = (level or "INFO").strip().upper()
    return name if name in LEVELS else "INFO"


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """The standard-library logging configuration (dictConfig) for uvicorn's `log_config`."""
    level = level_name(level)
    quiet = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"()": f"{__name__}.StderrHandler", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {**quiet, "level": level},
            "uvicorn.error": {**quiet, "level": level},
            "uvicorn.access": {**quiet, "level": "WARNING"},  # ours is app.http.observe's access log
        },
    }


def configure_logging(level: str = "INFO") -> None:
    """JSON for structlog and for the root logger (once per process; later calls only change the level)."""
    level = level_name(level)
    root = logging.getLogger()
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if isinstance(h, StderrHandler)]
        logger.propagate = True
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _TIMESTAMP,
            _add_pid,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


log = structlog.get_logger("groupgraph")
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


@dataclass(slots=True)
class RequestInfo:
    """What the access log line says about a request, filled in by the layers that learn it."""

    request_id: str
    operation: str | None = None
    user_id: int | None = None


CURRENT_REQUEST: ContextVar[RequestInfo | None] = ContextVar("current_request", default=None)


def note_user(user_id: int | None) -> None:
    info = CURRENT_REQUEST.get()
    if info is not None and user_id is not None:
        info.user_id = user_id


def note_operation(name: str | None) -> None:
    info = CURRENT_REQUEST.get()
    if info is not None and name:
        info.operation = name[:100]


def access(fields: dict[str, Any]) -> None:
    """The access log line (a plain json.dumps: this is on every request's path)."""
    line = {
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "level": "info", "event": "request",
        "logger": "groupgraph.access", "pid": os.getpid(), **fields,
    }
    _emit(json.dumps(line, default=str))
