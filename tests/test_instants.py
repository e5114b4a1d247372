"""Instants on PostgreSQL (app.store.instants): the app's connections read and write timestamptz exactly as
asyncpg's own codec does, each instant read is decoded once (the same object comes back), and the memo stays
within its bound."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.store import instants
from tests.site import Site

LITERALS = (
    "2026-03-01 09:30:00+00", "2026-03-01 09:30:00.5+02", "1999-12-31 23:59:59.999999+00", "2000-01-01 00:00:00+00",
    "1970-01-01 00:00:00.000001+00", "1900-06-15 12:00:00-05", "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00", "infinity", "-infinity",
)
WRITTEN = (
    datetime(2026, 3, 1, 9, 30, tzinfo=UTC), datetime(2026, 3, 1, 11, 30, 0, 7, tzinfo=timezone(timedelta(hours=2))),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 3, 1, 9, 30),  # naive: local time
    date(2026, 3, 1), instants.INFINITY, instants.NEGATIVE_INFINITY,
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
)

REFUSED = re.escape("expected a datetime.date or datetime.datetime instance, got 'str'")


def postgres_only(site: Site) -> None:
    if site.database.is_sqlite:
        pytest.skip("timestamptz codecs are PostgreSQL's")


async def asyncpgs_own(site: Site) -> asyncpg.Connection:
    """A plain asyncpg connection to the test database: asyncpg's own codecs."""
    url = make_url(site.settings.database_url).set(drivername="postgresql")
    return await asyncpg.connect(url.render_as_string(hide_password=False))


async def read_through_the_app(site: Site, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    async with site.database.engine.connect() as connection:
        return list((await connection.execute(text(sql), params or {})).scalars())


async def test_instants_read_as_asyncpg_reads_them(site: Site) -> None:
    postgres_only(site)
    sql = "SELECT v::timestamptz FROM unnest(CAST(:literals AS text[])) WITH ORDINALITY AS t(v, n) ORDER BY n"
    own = await asyncpgs_own(site)
    try:
        expected = [r[0] for r in await own.fetch(sql.replace(":literals", "$1"), list(LITERALS))]
    finally:
        await own.close()
    read = await read_through_the_app(site, sql, {"literals": list(LITERALS)})
    assert read == expected
    assert [(v.tzinfo, v.microsecond) for v in read] == [(v.tzinfo, v.microsecond) for v in expected]
    assert read[-2] is instants.INFINITY and read[-1] is instants.NEGATIVE_INFINITY and read[0].tzinfo is UTC


async def test_instants_written_as_asyncpg_writes_them(site: Site) -> None:
    postgres_only(site)
    own = await asyncpgs_own(site)
    try:
        expected = [await own.fetchval("SELECT $1::timestamptz::text", value) for value in WRITTEN]
    finally:
        await own.close()
    written = [(await read_through_the_app(site, "SELECT CAST(:v AS timestamptz)::text", {"v": v}))[0] for v in WRITTEN]
    assert written == expected
    assert written[-4:-2] == ["infinity", "-infinity"]


async def test_what_is_not_an_instant_is_refused_as_asyncpg_refuses_it(site: Site) -> None:
    postgres_only(site)
    own = await asyncpgs_own(site)
    try:
        with pytest.raises(asyncpg.DataError, match=REFUSED):
            await own.fetchval("SELECT $1::timestamptz", "2026-03-01")
    finally:
        await own.close()
    with pytest.raises(DBAPIError, match=REFUSED):
        await read_through_the_app(site, "SELECT CAST(:v AS timestamptz)", {"v": "2026-03-01"})


async def test_an_instant_read_again_is_the_same_object_and_the_memo_is_bounded(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres_only(site)
    monkeypatch.setattr(instants, "MEMO_SIZE", 16)
    monkeypatch.setattr(instants, "_memo", {})
    sql = "SELECT timestamptz '2026-03-01 09:30:00+00' + n * interval '1 second' FROM generate_series(0, 9) AS n"
    first, again = await read_through_the_app(site, sql), await read_through_the_app(site, sql)
    assert first == [datetime(2026, 3, 1, 9, 30, n, tzinfo=UTC) for n in range(10)]
    assert all(a is b for a, b in zip(first, again, strict=True))
    many = await read_through_the_app(site, sql.replace("(0, 9)", "(0, 99)"))
    assert many == [datetime(2026, 3, 1, 9, 30, tzinfo=UTC) + timedelta(seconds=n) for n in range(100)]
    assert len(instants._memo) <= 16
