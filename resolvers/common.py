"""Pieces every domain shares: the Node interface, PageInfo, cursors and page sizes."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from app.context import Context
from app.runtime.errors import BadInput


@strawberry.interface
class Node:
    id: strawberry.ID = strawberry.field(
        description="Opaque global id (Relay). node(id:) returns null for ids the caller may not see."
    )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def context(info: Info) -> Context:
    return info.context


def page_size(info: Info, first: int | None, field: str = "first") -> int:
    limit = info.context.settings.max_page_size
    if first is None:
        return min(50, limit)
    if first < 0 or first > limit:
        raise BadInput(f"first must be between 0 and {limit}", field=field)
    return first


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([_jsonable(v) for v in values]).encode()).decode()


def decode_cursor(cursor: str | None, kinds: Sequence[type], field: str = "after") -> list[Any] | None:
    """The keyset values a cursor holds, checked against their expected types."""
    if cursor is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError
        out: list[Any] = []
        for value, kind in zip(values, kinds, strict=True):
            if value is None:
                out.append(None)
            elif kind is datetime:
                out.append(datetime.fromisoformat(value))
            elif kind is int and isinstance(value, int) and not isinstance(value, bool):
                out.append(value)
            elif kind is str and isinstance(value, str):
                out.append(value)
            elif kind is float and isinstance(value, int | float):
                out.append(float(value))
            else:
                raise ValueError
        return out
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise BadInput("after is not a cursor this list gave out", field=field) from None


def page_info(has_next: bool, cursors: Sequence[str]) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        has_previous_page=False,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


def clean_text(value: str | None, field: str, *, max_length: int = 200, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise BadInput(f"{field} is required", field=field)
        return None
    value = value.strip()
    if "\x00" in value:  # no text holds NUL, and PostgreSQL refuses it
        raise BadInput(f"{field} must not contain NUL characters", field=field)
    if required and not value:
        raise BadInput(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise BadInput(f"{field} must be at most {max_length} characters", field=field)
    return value
