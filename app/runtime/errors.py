"""Errors that reach clients, each with an `extensions.code` from DESIGN.md."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

CODES = (
    "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "BAD_USER_INPUT", "CONFLICT", "RATE_LIMITED",
    "GRAPHQL_VALIDATION_FAILED", "INTERNAL_SERVER_ERROR",
)


class AppError(GraphQLError):
    code = "INTERNAL_SERVER_ERROR"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        extensions: dict[str, Any] = {"code": self.code, **extra}
        if field is not None:
            extensions["field"] = field
        super().__init__(message, extensions=extensions)
        self.field = field


class Unauthenticated(AppError):
    code = "UNAUTHENTICATED"
    http_status = 401


class Forbidden(AppError):
    code = "FORBIDDEN"
    http_status = 403


class NotFound(AppError):
    code = "NOT_FOUND"
    http_status = 404


class BadInput(AppError):
    code = "BAD_USER_INPUT"
    http_status = 400


class Conflict(AppError):
    code = "CONFLICT"
    http_status = 409


class RateLimited(AppError):
    code = "RATE_LIMITED"
    http_status = 429


class LimitReached(AppError):
    """A live-update limit, with its own code (TOO_MANY_SUBSCRIPTIONS, SUBSCRIBER_TOO_SLOW)."""

    http_status = 429

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        self.code = code
        super().__init__(message, **extra)
