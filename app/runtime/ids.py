"""Relay global ids: base64 of "Type:databaseId"."""

from __future__ import annotations

import base64
import binascii

from app.runtime.errors import BadInput


def to_global_id(type_name: str, database_id: int) -> str:
    return base64.b64encode(f"{type_name}:{database_id}".encode()).decode()


def parse_global_id(global_id: str, field: str = "id") -> tuple[str, int]:
    """Only the canonical form decodes: base64 (padded) of "Type:digits", digits without sign, separators or
    leading zeros, exactly as to_global_id writes it; every other string is BAD_USER_INPUT."""
    try:
        if len(global_id) > 200 or not global_id.isascii():
            raise ValueError
        raw = base64.b64decode(global_id.encode(), validate=True).decode("ascii")
        type_name, _, number = raw.partition(":")
        if not type_name.isascii() or not type_name.isalpha() or not number.isdigit():
            raise ValueError
        database_id = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadInput(f"'{global_id[:200]}' is not a valid id", field=field) from None
    if not 0 < database_id <= 2**31 - 1 or to_global_id(type_name, database_id) != global_id:
        raise BadInput(f"'{global_id[:200]}' is not a valid id", field=field)
    return type_name, database_id


def decode_id(global_id: str, expected: str, field: str = "id") -> int | None:
    """The database id when the global id names an `expected` object, None when it names another type."""
    type_name, database_id = parse_global_id(global_id, field)
    return database_id if type_name == expected else None


def require_id(global_id: str, expected: str, field: str = "id") -> int:
    """Like decode_id, but an id of another type is bad input."""
    database_id = decode_id(global_id, expected, field)
    if database_id is None:
        raise BadInput(f"'{global_id}' is not a {expected} id", field=field)
    return database_id
