"""Structured JSON logs (structlog) carrying the request id."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

import structlog


class _StderrLogger:
    """One JSON line per event on whatever sys.stderr is at the time of writing (a logger bound to the
    stream of the moment of configuration would write to a closed stream under test capture)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*_args: object) -> _StderrLogger:
    return _StderrLogger()


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )


log = structlog.get_logger("groupgraph")
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
