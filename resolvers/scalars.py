"""Scalars as tools expect them: DateTime is RFC 3339 in UTC, written with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime

import dateutil.parser
import orjson
from strawberry.schema.types.base_scalars import wrap_parser
from strawberry.types.scalar import ScalarDefinition

RFC3339 = "https://datatracker.ietf.org/doc/html/rfc3339"


_UTC_Z = orjson.OPT_UTC_Z


WRITTEN_SIZE = 1 << 16
# instants as read from the database, written: the same instants come back with every refresh of a page (on
# PostgreSQL as the very same objects, app.store.instants, whose hash Python keeps)
_written: dict[datetime, str] = {}


def rfc3339(value: datetime) -> str:
    """UTC with `Z` (a naive value is taken as UTC); fractional seconds only when there are some."""
    if value.tzinfo is UTC and type(value) is datetime:  # as read from the database
        text = _written.get(value)
        if text is None:
            # orjson writes what isoformat would, with `Z` for "+00:00", in a third of the time (a page of 500
            # learners with their cards writes ~1,600 instants)
            text = orjson.dumps(value, option=_UTC_Z)[1:-1].decode()
            if len(_written) >= WRITTEN_SIZE:
                _written.clear()
            _written[value] = text
        return text
    utc = value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


DATETIME = ScalarDefinition(
    name="DateTime",
    description="An instant, RFC 3339: always written in UTC with `Z` (2026-03-01T09:30:00Z, fractional seconds "
    "when there are some). Read with any offset; a value without one is taken as UTC.",
    specified_by_url=RFC3339,
    serialize=rfc3339,
    parse_value=wrap_parser(dateutil.parser.isoparse, "DateTime"),
    parse_literal=None,
    origin=datetime,
)

SCALARS = {datetime: DATETIME}
