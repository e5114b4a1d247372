"""The one cursor codec: opaque strings that carry a connection's keyset values, bound to that connection.

A cursor is base64url (no padding) of the compact JSON `[connection, value, ...]`. Decoding checks every
value against the kind the connection expects and then re-encodes it: only a string this codec could have
written for that connection is accepted, so anything malformed, tampered with or taken from another
connection (or another ordering of the same one) is BAD_USER_INPUT, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from app.runtime.errors import BadInput

# kinds of keyset value; a trailing "?" allows null (a nullable column)
ID = "id"  # a database id: 1 .. 2**31 - 1
INT = "int"  # a 32-bit signed integer
TEXT = "text"  # at most MAX_TEXT characters, no NUL
INSTANT = "instant"  # an aware instant, written in UTC with microseconds and Z
NUMBER = "number"  # a finite float

MAX_TEXT = 1000
INT32 = 2**31


def _check(kind: str, value: Any) -> Any:
    nullable = kind.endswith("?")
    base = kind.rstrip("?")
    if value is None:
        if nullable:
            return None
        raise ValueError("null")
    if base in (ID, INT):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("not an integer")
        low = 1 if base == ID else -INT32
        if not low <= value < INT32:
            raise ValueError("out of range")
        return value
    if base == TEXT:
        if not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
            raise ValueError("bad text")
        return value
    if base == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError("bad number")
        return float(value)
    if base == INSTANT:
        if isinstance(value, datetime):
            if value.utcoffset() is None:
                raise ValueError("naive instant")
            return value.astimezone(UTC)
        if not isinstance(value, str) or not value.endswith("Z"):
            raise ValueError("bad instant")
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    raise AssertionError(f"unknown cursor kind {kind!r}")


def _wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return value


def encode(connection: str, kinds: Sequence[str], values: Sequence[Any]) -> str:
    if len(values) != len(kinds):
        raise AssertionError(f"{connection}: {len(kinds)} cursor values expected, got {len(values)}")
    checked = [_wire(_check(kind, value)) for kind, value in zip(kinds, values, strict=True)]
    raw = json.dumps([connection, *checked], separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(connection: str, kinds: Sequence[str], cursor: str, field: str = "after") -> tuple[Any, ...]:
    """The keyset values of a cursor this connection gave out; BAD_USER_INPUT for any other string."""
    try:
        if not cursor or len(cursor) > 4 * MAX_TEXT or not cursor.isascii():
            raise ValueError("empty or too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw.decode("ascii"))
        if not isinstance(payload, list) or len(payload) != len(kinds) + 1 or payload[0] != connection:
            raise ValueError("another connection's cursor")
        values = tuple(_check(kind, value) for kind, value in zip(kinds, payload[1:], strict=True))
        if encode(connection, kinds, values) != cursor:
            raise ValueError("not canonical")
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeError, RecursionError):
        raise BadInput(f"{field} is not a cursor this list gave out", field=field) from None
    return values
