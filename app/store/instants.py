"""PostgreSQL's timestamptz as asyncpg reads and writes it, with each instant decoded once.

asyncpg decodes a timestamptz by building a timedelta through a Python call and adding it to its epoch, about
0.4 us a value: at the bench, the instants were 15% of the worker's instructions for the root dashboard's page
of 100 learners with their course cards (~700 instants a request). Rows read again hold the same instants (a
dashboard refreshed, a page several people look at), so the datetimes decoded are kept by their 8 bytes, up to
MEMO_SIZE of them (about 10 MB), and shared: a datetime never changes. A value read for the first time costs
a dictionary insert more than asyncpg's own decoding.

Values and errors are asyncpg's own (its `pgproto/codecs/datetime.pyx`): aware datetimes in UTC; its naive
`infinity_datetime` and `negative_infinity_datetime` for PostgreSQL's infinities; a naive datetime or a date
written as local time; anything else refused with asyncpg's TypeError.
"""

from __future__ import annotations

from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

MEMO_SIZE = 1 << 16
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's
INFINITY = datetime(MAXYEAR, 12, 31, 23, 59, 59, 999999)  # asyncpg's, naive
NEGATIVE_INFINITY = datetime(MINYEAR, 1, 1)
_PG_INFINITY = (1 << 63) - 1
_PG_NEGATIVE_INFINITY = -(1 << 63)
# the microseconds since EPOCH of the aware extremes, which asyncpg writes as PostgreSQL's infinities too
_INFINITY_TS = 252455615999999999
_NEGATIVE_INFINITY_TS = -63082281600000000
_MICROSECOND = timedelta(microseconds=1)
_memo: dict[bytes, datetime] = {}


def decode(data: bytes) -> datetime:
    found = _memo.get(data)
    if found is None:
        found = _decoded(data)
        if len(_memo) >= MEMO_SIZE:
            _memo.clear()
        _memo[data] = found
    return found


def _decoded(data: bytes) -> datetime:
    microseconds = int.from_bytes(data, "big", signed=True)
    if microseconds == _PG_INFINITY:
        return INFINITY
    if microseconds == _PG_NEGATIVE_INFINITY:
        return NEGATIVE_INFINITY
    return EPOCH + timedelta(microseconds=microseconds)


def encode(value: Any) -> bytes:
    if not isinstance(value, datetime):
        if not isinstance(value, date):
            raise TypeError(f"expected a datetime.date or datetime.datetime instance, got {type(value).__name__!r}")
        value = datetime(value.year, value.month, value.day).astimezone()  # local midnight, as asyncpg
    if value == INFINITY:
        microseconds = _PG_INFINITY
    elif value == NEGATIVE_INFINITY:
        microseconds = _PG_NEGATIVE_INFINITY
    else:
        microseconds = (value.astimezone(UTC) - EPOCH) // _MICROSECOND
        if microseconds == _INFINITY_TS:
            microseconds = _PG_INFINITY
        elif microseconds == _NEGATIVE_INFINITY_TS:
            microseconds = _PG_NEGATIVE_INFINITY
    return microseconds.to_bytes(8, "big", signed=True)


async def install(connection: Any) -> None:
    """On one asyncpg connection."""
    await connection.set_type_codec("timestamptz", schema="pg_catalog", encoder=encode, decoder=decode, format="binary")


def decode_once(engine: AsyncEngine) -> None:
    """Every connection `engine` opens (PostgreSQL) reads instants through `decode`."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(install)
