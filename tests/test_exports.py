"""Streamed exports: header rows byte for byte, values, RFC 4180 quoting, the formula guard, permissions,
keyset chunks, XLSX read back with openpyxl, the unassigned-students file accepted by the importer."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert

from app.store.models import AuditEvent, Enrollment, Membership, Usage, User
from tests.school import auth, course, parse, school
from tests.site import Site, gid

PROGRESS_HEADER = (
    b"Student First Name,Student Last Name,Student Email,Company,Group Name,Course Name,Activated At,"
    b"% Completed,Completed Date,Expiry Date\r\n"
)
async def test_progress_csv_rows_quoting_and_formula_guard(site: Site) -> None:
    s = await school(site)
    response = await site.client.get(f"/exports/groups/{s['root'].id}/progress.csv", headers=auth(await site.token(s["leader"])))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="{s["root"].slug}-progress.csv"'
    assert response.content.startswith(PROGRESS_HEADER)
    assert parse(response.content)[1:] == [
        ["Ann", "Archer", "ann@example.com", "'=cmd|' /C calc'!A0", "Class A", "Maths", "2026-03-02T09:30:00Z",
         "100.0", "2026-03-09T12:00:00Z", "2027-01-01T00:00:00Z"],
        ["Ann", "Archer", "ann@example.com", "'=cmd|' /C calc'!A0", "Class A", "Art", "2026-03-02T09:30:00Z",
         "33.33", "", ""],
        ["Bob", "Baker, Jr.", "bob@example.com", 'Say "hi"', "Class A", "Maths", "2026-03-02T09:30:00Z", "0.0", "", ""],
        ["Cid", "Cole", "cid@example.com", "", "Class B", "Art", "2026-03-02T09:30:00Z", "0.0", "", ""],
    ]
    # RFC 4180 on the wire: CRLF, fields with a comma or a quote quoted, quotes doubled
    assert b'"Baker, Jr.",bob@example.com,"Say ""hi""",Class A' in response.content
    assert response.content.count(b"\r\n") == 5

    only_root = await site.client.get(
        f"/exports/groups/{s['root'].id}/progress.csv?includeNested=false", headers=auth(await site.token(s["leader"]))
    )
    assert parse(only_root.content) == [parse(PROGRESS_HEADER)[0]]
    art_only = await site.client.get(
        f"/exports/groups/{gid('Group', s['root'])}/progress.csv?courseId={gid('Course', s['art'])}",
        headers=auth(await site.token(s["admin"])),
    )
    assert [r[0] + "/" + r[5] for r in parse(art_only.content)[1:]] == ["Ann/Art", "Cid/Art"]
    audits = await site.count(AuditEvent, AuditEvent.action == "export.progress")
    assert audits == 3


async def test_progress_export_denials_and_bad_input(site: Site) -> None:
    s = await school(site)
    url = f"/exports/groups/{s['a'].id}/progress.csv"
    assert (await site.client.get(url)).status_code == 401
    invalid = await site.client.get(url, headers=auth("not-a-token"))
    assert invalid.status_code == 401 and invalid.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    for who in ("mentor", "ann"):
        denied = await site.client.get(url, headers=auth(await site.token(s[who])))
        assert denied.status_code == 403, who
        assert denied.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    analyst = auth(await site.token(s["analyst"]))
    assert (await site.client.get(url, headers=analyst)).status_code == 200
    other = await site.client.get(f"/exports/groups/{s['b'].id}/progress.xlsx", headers=analyst)
    assert other.status_code == 404 and other.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    missing = await site.client.get("/exports/groups/999999/progress.csv", headers=analyst)
    assert missing.status_code == 404
    admin = auth(await site.token(s["admin"]))
    no_course = await site.client.get(f"{url}?courseId=999999", headers=admin)
    assert no_course.status_code == 404 and no_course.json()["errors"][0]["extensions"]["field"] == "courseId"
    bad = await site.client.get(f"{url}?includeNested=maybe", headers=admin)
    assert bad.status_code == 400 and bad.json()["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "includeNested"}
    bad_id = await site.client.get(f"{url}?courseId=xyz!", headers=admin)
    assert bad_id.status_code == 400 and bad_id.json()["errors"][0]["extensions"]["field"] == "courseId"
    # denials write no audit event; the one analyst download did
    assert await site.count(AuditEvent, AuditEvent.action == "export.progress") == 1


async def test_progress_xlsx_reads_back(site: Site) -> None:
    s = await school(site)
    response = await site.client.get(f"/exports/groups/{s['a'].id}/progress.xlsx", headers=auth(await site.token(s["analyst"])))
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="{s["a"].slug}-progress.xlsx"'
    sheet = load_workbook(io.BytesIO(response.content), read_only=True).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == parse(PROGRESS_HEADER)[0]
    assert rows[1] == [
        "Ann", "Archer", "ann@example.com", "=cmd|' /C calc'!A0", "Class A", "Maths", datetime(2026, 3, 2, 9, 30),
        100.0, datetime(2026, 3, 9, 12, 0), datetime(2027, 1, 1),
    ]
    assert [r[:2] + r[5:6] + r[7:8] for r in rows[2:]] == [["Ann", "Archer", "Art", 33.33], ["Bob", "Baker, Jr.", "Maths", 0.0]]
    # the company cell is a text cell, not a formula
    workbook = load_workbook(io.BytesIO(response.content))
    assert workbook.active["D2"].data_type == "s"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"export_chunk_rows": 7}


async def test_many_rows_are_fetched_in_keyset_chunks(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """50 members x 2 courses = 100 rows through chunks of 7: every row once, no query holds more than 7.
    (The Python path: SQLite's, and PostgreSQL's without COPY; tests/test_export_copy.py has the COPY's.)"""
    monkeypatch.setattr(site.settings, "export_use_copy", False)
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    group = await site.group("Big")
    one, _ = await course(site, "One", 2)
    two, _ = await course(site, "Two", 0)
    async with site.database.transaction() as session:
        await session.execute(
            insert(User),
            [
                {"email": f"s{i}@example.com", "email_normalized": f"s{i}@example.com", "first_name": f"S{i}",
                 "last_name": "Bulk", "last_name_normalized": "bulk", "kind": "LEARNER"}
                for i in range(50)
            ],
        )
    async with site.database.session() as session:
        from sqlalchemy import select

        ids = list(await session.scalars(select(User.id).where(User.last_name == "Bulk")))
    async with site.database.transaction() as session:
        await session.execute(insert(Membership), [{"user_id": u, "group_id": group.id, "role": "MEMBER"} for u in ids])
        await session.execute(
            insert(Enrollment), [{"user_id": u, "course_id": c.id} for u in ids for c in (one, two)]
        )
    with site.statements() as counted:
        response = await site.client.get(f"/exports/groups/{group.id}/progress.csv", headers=auth(await site.token(admin)))
        report_queries = [s for s in counted.statements if "enrollment" in s and "LIMIT" in s.upper()]
    rows = parse(response.content)[1:]
    assert len(rows) == 100
    assert len({(r[0], r[5]) for r in rows}) == 100
    assert len(report_queries) == 15  # ceil(100 / 7) chunks
    assert all(r[7] == "0.0" for r in rows)


async def test_admin_csv_exports(site: Site) -> None:
    s = await school(site)
    admin = auth(await site.token(s["admin"]))
    groups = await site.client.get("/exports/groups.csv", headers=admin)
    assert groups.status_code == 200
    assert groups.headers["content-disposition"] == 'attachment; filename="groups.csv"'
    assert groups.content.startswith(
        b"Group ID,Group Name,Slug,Description,Created At,Parent Group ID,Parent Group Name\r\n"
    )
    body = parse(groups.content)
    assert [r[0:3] + r[5:] for r in body[1:]] == [
        [str(s["root"].id), "School", s["root"].slug, "", ""],
        [str(s["a"].id), "Class A", s["a"].slug, str(s["root"].id), "School"],
        [str(s["b"].id), "Class B", s["b"].slug, str(s["root"].id), "School"],
    ]
    assert datetime.fromisoformat(body[1][4].replace("Z", "+00:00")).tzinfo is not None

    memberships = await site.client.get("/exports/memberships.csv", headers=admin)
    assert memberships.content.startswith(
        b"Membership ID,User ID,First Name,Last Name,Email,Group ID,Group Name,Role,Group Parent ID,"
        b"Membership Created At\r\n"
    )
    rows = parse(memberships.content)[1:]
    assert len(rows) == 6
    assert rows[0][1:9] == [str(s["ann"].id), "Ann", "Archer", "ann@example.com", str(s["a"].id), "Class A", "MEMBER", str(s["root"].id)]

    for path in ("/exports/groups.csv", "/exports/memberships.csv", "/exports/unassigned-active-students.csv"):
        assert (await site.client.get(path)).status_code == 401
        for who in ("leader", "analyst"):
            denied = await site.client.get(path, headers=auth(await site.token(s[who])))
            if path.startswith("/exports/unassigned"):  # anyone but a site admin names the scope
                assert denied.status_code == 400 and denied.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
                continue
            assert denied.status_code == 403 and denied.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await site.count(AuditEvent, AuditEvent.action.like("export.%")) == 2


async def test_unassigned_active_students_go_back_into_the_importer(site: Site) -> None:
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    group = await site.group("Landing")
    active = await site.user("Act", "Ive", email="act@example.com", external_id="-S1")
    by_email = await site.user("Ema", "Il", email="ema@example.com")
    idle = await site.user("Idl", email="idl@example.com")
    placed = await site.user("Pla", email="pla@example.com")
    await site.member(placed, group)
    async with site.database.transaction() as session:
        for user, minutes in ((active, 3), (by_email, 1), (idle, 0), (placed, 9)):
            session.add(Usage(user_id=user.id, day=date(2026, 3, 2), minutes=minutes))
            session.add(Usage(user_id=user.id, day=date(2026, 3, 3), minutes=minutes))
    headers = auth(await site.token(admin))
    response = await site.client.get("/exports/unassigned-active-students.csv", headers=headers)
    assert response.status_code == 200
    assert response.content.startswith(b"student_id,first_name,last_name,email,usage_minutes,groups\r\n")
    rows = parse(response.content)
    assert rows[1:] == [
        ["'-S1", "Act", "Ive", "act@example.com", "6", ""],
        ["ema@example.com", "Ema", "Il", "ema@example.com", "2", ""],
    ]
    filled = io.StringIO()
    writer = csv.writer(filled, lineterminator="\r\n")
    writer.writerow(rows[0])
    writer.writerows([*r[:5], group.slug] for r in rows[1:])
    imported = await site.client.post(
        "/imports/group-assignments", content=filled.getvalue().encode(), headers={**headers, "content-type": "text/csv"}
    )
    assert imported.status_code == 200, imported.text
    assert json.loads(imported.content)["membershipsCreated"] == 2
    again = await site.client.get("/exports/unassigned-active-students.csv", headers=headers)
    assert parse(again.content)[1:] == []


async def test_api_tokens_export_too(site: Site) -> None:
    from datetime import timedelta

    from app.services.auth import API_TOKEN_PREFIX, new_token, token_hash
    from app.store.models import ApiToken, utcnow

    s = await school(site)
    token = new_token(API_TOKEN_PREFIX)
    revoked = new_token(API_TOKEN_PREFIX)
    async with site.database.transaction() as session:
        session.add(ApiToken(user_id=s["analyst"].id, name="reports", token_hash=token_hash(token)))
        session.add(
            ApiToken(user_id=s["analyst"].id, name="old", token_hash=token_hash(revoked), revoked_at=utcnow() - timedelta(days=1))
        )
    url = f"/exports/groups/{s['a'].id}/progress.csv"
    response = await site.client.get(url, headers=auth(token))
    assert response.status_code == 200 and len(parse(response.content)) == 4
    assert (await site.client.get(url, headers=auth(revoked))).status_code == 401


async def test_xlsx_past_the_sheet_limit_is_refused_not_cut(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.services.sheets

    s = await school(site)
    monkeypatch.setattr(app.services.sheets, "MAX_SHEET_ROWS", 4)  # header + 3 rows fit; the school has 4
    headers = auth(await site.token(s["admin"]))
    refused = await site.client.get(f"/exports/groups/{s['root'].id}/progress.xlsx", headers=headers)
    assert refused.status_code == 422 and refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    fits = await site.client.get(f"/exports/groups/{s['a'].id}/progress.xlsx", headers=headers)
    assert fits.status_code == 200
    assert len(list(load_workbook(io.BytesIO(fits.content), read_only=True).active.iter_rows())) == 4
