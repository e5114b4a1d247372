"""The progress CSV written by PostgreSQL's COPY: byte for byte the Python path's file for the same data
(names with commas, quotes and line breaks, empty and missing cells, the formula guard, non-ASCII, times
with and without values, percentages on and off ties, a course without steps, every scope), streamed
with back-pressure, cut short (never ended as if complete) when the COPY fails, and the connection given
back after a client disconnect."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import BigInteger, Select, Text, cast, literal_column, select, text

import dataloaders.reports
from app.http.exports import COPY_QUEUE_BLOCKS, CopyExport
from app.services.sheets import CrlfLines
from dataloaders.reports import ReportScope, _percent, percent_text
from dataloaders.store import Store
from tests.school import auth, course, enroll, parse, progress
from tests.site import Site

pytestmark = pytest.mark.engines("postgres")

T1 = datetime(2026, 3, 2, 9, 30, 15, 999_999, tzinfo=UTC)  # the fraction is dropped, not rounded
T2 = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"export_chunk_rows": 3}  # the Python path reads several keyset chunks


async def _tricky(site: Site) -> dict[str, Any]:
    """School > (Class, "A" > =Sub "quoted"; Ünïcode 学校; Empty), learners with awkward names in them."""
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    root = await site.group("School")
    a = await site.group('Class, "A"', root)
    a1 = await site.group('=Sub "quoted"', a)
    b = await site.group("Ünïcode Ω 学校", root)
    empty = await site.group("Empty", root)
    ann = await site.user("Ann", "Archer", email="ann@example.com")
    bob = await site.user("Bob\nTwo lines", 'Baker, "Jr."', email="bob@example.com", company="")
    eve = await site.user("=SUM(A1)", "+plus", email="-minus@example.com", company="@at")
    zoe = await site.user("Zoë", "Łukasz 李 🙂", email="zoe@example.com", company="Crème, brûlée\r\nLtd")
    odd = await site.user("Odd", " spaced ", email="odd@example.com", company='"')
    dee = await site.user("Dee", "Deep", email="dee@example.com", company="-")
    for user, group in ((ann, a), (bob, a), (eve, a), (zoe, b), (odd, b), (dee, a1), (ann, b)):
        await site.member(user, group)
    mentor = await site.user("Men", kind="STAFF")
    await site.member(mentor, a, "MENTOR")  # not a MEMBER: not in the report
    maths, maths_steps = await course(site, "Maths", 3)
    art, _ = await course(site, "Art", 0)  # no steps: 0.0
    science, science_steps = await course(site, "-Science", 4)
    music, music_steps = await course(site, "Music", 32)  # 1/32 = 3.125 and 3/32 = 9.375: ties
    history, history_steps = await course(site, 'History, "old"', 8)
    for user in (ann, bob, eve, zoe, odd, dee):
        await enroll(site, user, maths, completed_at=T1 if user is eve else None, expires_at=T2 if user in (ann, zoe) else None)
        await enroll(site, user, art)
    for user in (ann, zoe):
        await enroll(site, user, science, expires_at=T1)
        await enroll(site, user, music)
    await enroll(site, eve, history, completed_at=T2, expires_at=T2)
    await progress(site, ann, maths_steps, viewed=2, completed=1)  # 33.33
    await progress(site, bob, maths_steps, viewed=3, completed=2)  # 66.67
    await progress(site, eve, maths_steps, viewed=3, completed=3)  # 100.0
    await progress(site, zoe, maths_steps, viewed=1, completed=0)  # 0.0
    await progress(site, ann, science_steps, viewed=2, completed=2)  # 50.0
    await progress(site, zoe, science_steps, viewed=4, completed=1)  # 25.0
    await progress(site, ann, music_steps, viewed=1, completed=1)  # 3.12 (half to even)
    await progress(site, zoe, music_steps, viewed=3, completed=3)  # 9.38
    await progress(site, eve, history_steps, viewed=1, completed=1)  # 12.5
    return {
        "admin": admin, "root": root, "a": a, "a1": a1, "b": b, "empty": empty, "maths": maths, "art": art,
        "music": music, "history": history,
    }


async def _download(site: Site, url: str, token: str, monkeypatch: pytest.MonkeyPatch, use_copy: bool) -> bytes:
    monkeypatch.setattr(site.settings, "export_use_copy", use_copy)
    with site.statements() as counted:
        response = await site.client.get(url, headers=auth(token))
        keyset_queries = [s for s in counted.statements if "step_progress" in s and "LIMIT" in s.upper()]
    assert response.status_code == 200, response.text
    # the COPY path sends no keyset query through SQLAlchemy; the Python path at least one
    assert (len(keyset_queries) == 0) == use_copy, (use_copy, len(keyset_queries))
    return response.content


async def test_copy_csv_is_byte_for_byte_the_python_csv(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    s = await _tricky(site)
    token = await site.token(s["admin"])
    compared = 0
    for group in ("root", "a", "a1", "b", "empty"):
        for nested in ("true", "false"):
            for course_row in (None, s["maths"], s["art"], s["music"]):
                url = f"/exports/groups/{s[group].id}/progress.csv?includeNested={nested}"
                if course_row is not None:
                    url += f"&courseId={course_row.id}"
                python = await _download(site, url, token, monkeypatch, use_copy=False)
                copied = await _download(site, url, token, monkeypatch, use_copy=True)
                assert copied == python, url
                compared += 1
    assert compared == 40

    # the fixture holds what it is meant to hold (seen in the Python path's file)
    whole = await _download(site, f"/exports/groups/{s['root'].id}/progress.csv", token, monkeypatch, use_copy=False)
    rows = parse(whole)[1:]
    assert len(rows) == 21
    assert whole.count(b"\r\n") == 1 + 21 + 4  # header, rows, and the CRLF inside Zoe's company (4 rows)
    assert b'"Bob\nTwo lines","Baker, ""Jr.""",bob@example.com,,' in whole  # LF kept inside quotes; "" -> empty
    assert b"'=SUM(A1),'+plus,'-minus@example.com,'@at," in whole
    assert b',"""",' in whole  # a lone quote
    assert b'Odd, spaced ,odd@example.com,"""",' in whole
    assert "Łukasz 李 🙂".encode() in whole and "Ünïcode Ω 学校".encode() in whole
    assert b'"=Sub' not in whole and b'"\'=Sub ""quoted"""' in whole  # Dee's group: guarded, then quoted
    assert {r[7] for r in rows} == {"33.33", "66.67", "100.0", "0.0", "50.0", "25.0", "3.12", "9.38", "12.5"}
    assert {r[6] for r in rows} == {"2026-03-02T09:30:00Z"}
    assert {r[8] for r in rows} == {"", "2026-03-02T09:30:15Z", "2027-01-01T00:00:00Z"}
    assert {r[9] for r in rows} == {"", "2026-03-02T09:30:15Z", "2027-01-01T00:00:00Z"}
    assert [r[4] for r in rows].count("Ünïcode Ω 学校") == 10 and [r[0] for r in rows].count("Ann") == 8  # Ann twice


async def test_percent_text_is_repr_of_the_python_percentage(site: Site) -> None:
    """Every (done, steps) up to 120 steps, and the ties (100 * done / steps = m / 200 with m odd) of
    larger courses, where Python's round() goes half to even on an exact double and to the side the
    double lies on otherwise."""
    pairs = [(done, steps) for steps in range(121) for done in range(steps + 2)]
    for steps in (160, 800, 4000, 12_800, 20_000):
        pairs += [(done, steps) for done in range(steps + 1) if (done * 20_000) % steps == 0]
    done, steps = literal_column("done", BigInteger()), literal_column("steps", BigInteger())
    statement: Select[Any] = select(percent_text(done, steps)).select_from(
        text("unnest(CAST(:d AS bigint[]), CAST(:s AS bigint[])) WITH ORDINALITY AS t(done, steps, n)")
    ).order_by(literal_column("n"))
    store = Store(site.database)
    try:
        got = await store.scalars(statement, {"d": [p[0] for p in pairs], "s": [p[1] for p in pairs]})
    finally:
        await store.close()
    wrong = [(pair, text_) for pair, text_ in zip(pairs, got, strict=True) if text_ != repr(_percent(*pair))]
    assert wrong == []
    assert len(pairs) > 8000 and repr(_percent(1, 4000)) == "0.03" and repr(_percent(1, 32)) == "3.12"


def test_crlf_only_outside_quoted_fields() -> None:
    lines = CrlfLines()
    blocks = [b'a,"b\n', b'c""\nd",e\nf,', b'"', b'\n"\n', b"g\n"]
    assert b"".join(lines(block) for block in blocks) == b'a,"b\nc""\nd",e\r\nf,"\n"\r\ng\r\n'


def _rows(count: int, fail_at: int | None = None) -> Any:
    """A stand-in for csv_statement: `count` generated rows, fast to produce; with `fail_at`, a division by
    zero at that row, after the rows before it have been sent."""

    def statement(scope: ReportScope, spreadsheet: bool = False) -> Select[Any]:
        i = literal_column("i", BigInteger())
        check = "" if fail_at is None else f" WHERE 1 / ({fail_at} - i) IS NOT NULL"
        return select(cast(i, Text), literal_column("'x, y'")).select_from(
            text(f"(SELECT i FROM generate_series(1, {count}) AS s(i){check}) AS s")
        )

    return statement


async def _copy_backends(site: Site) -> list[tuple[str, str | None, str | None]]:
    """(state, wait event, query) of the other backends of the test database."""
    async with site.database.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT state, wait_event, query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def _eventually(check: Any, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_a_slow_client_holds_the_copy_back(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """While nobody reads, at most COPY_QUEUE_BLOCKS blocks wait in memory, the COPY does not finish and
    the server itself waits to write: memory does not grow with the row count."""
    monkeypatch.setattr(dataloaders.reports, "csv_statement", _rows(50_000_000))
    store = Store(site.database)
    export = CopyExport(store, ReportScope(1))
    body = export.body()
    header = await anext(body)
    assert header.startswith(b"Student First Name,")
    assert (await anext(body)).startswith(b"1,\"x, y\"\r\n")

    async def held_back() -> bool:
        backends = await _copy_backends(site)
        return export.blocks.full() and any(q and q.startswith("COPY") and w == "ClientWrite" for _, w, q in backends)

    await _eventually(held_back)
    assert export.blocks.qsize() == COPY_QUEUE_BLOCKS
    assert export.task is not None and not export.task.done()
    await body.aclose()  # the client goes: the COPY is cancelled, the connection given back
    assert export.task.done()
    assert site.database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await _eventually(lambda: _no_copy_left(site))


async def _no_copy_left(site: Site) -> bool:
    return not [b for b in await _copy_backends(site) if b[0] != "idle" or (b[2] or "").startswith("COPY")]


async def test_a_copy_failing_midway_cuts_the_response_short(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataloaders.reports, "csv_statement", _rows(400_000, fail_at=300_000))
    store = Store(site.database)
    received = 0
    with pytest.raises(asyncpg.DivisionByZeroError):
        async for block in CopyExport(store, ReportScope(1)).body():
            received += block.count(b"\n")
    assert received > 1000  # rows had been streamed before the error
    assert site.database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    # over HTTP: the error reaches the server (the chunked response is aborted, not ended)
    s_admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    group = await site.group("School")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await site.client.get(f"/exports/groups/{group.id}/progress.csv", headers=auth(await site.token(s_admin)))
    assert site.database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await _eventually(lambda: _no_copy_left(site))


async def _get_and_disconnect(app: Any, path: str, token: str) -> list[dict[str, Any]]:
    """Drive the ASGI app as a server would, the client going away after the first block of rows."""
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and b"\r\n1," in b"".join(m.get("body", b"") for m in sent):
            gone.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 30)
    return sent


async def test_a_client_disconnect_gives_the_connection_back(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataloaders.reports, "csv_statement", _rows(50_000_000))
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    group = await site.group("School")
    sent = await _get_and_disconnect(site.app, f"/exports/groups/{group.id}/progress.csv", await site.token(admin))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert all(m.get("more_body", False) for m in sent[1:])  # never ended as if complete
    assert site.database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await _eventually(lambda: _no_copy_left(site))
    # and the next download works
    monkeypatch.setattr(dataloaders.reports, "csv_statement", _rows(3))
    again = await site.client.get(f"/exports/groups/{group.id}/progress.csv", headers=auth(await site.token(admin)))
    assert again.status_code == 200 and again.content.endswith(b'\r\n3,"x, y"\r\n')
