"""Export jobs: the life cycle (queued, done, downloaded by a plain signed link and by the bearer header,
emailed, expired), a job that fails, a worker killed mid-job and the retry after its lease, a permission
revoked between start and download, two workers claiming side by side, spreadsheet-native cells. The
worker is driven here one round at a time with a clock the test controls."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from openpyxl import load_workbook
from sqlalchemy import delete, select, update

import app.services.export_jobs as export_jobs
import app.services.sheets as sheets
from app.runtime.ids import parse_global_id
from app.services.export_jobs import claim_job, file_store, queue_job, run_job, work_once
from app.services.links import link_key, sign
from app.services.reports import GROUPS, ExportRequest
from app.settings import Settings
from app.store.db import Database
from app.store.models import AuditEvent, ExportJob, Membership, OutboxEmail, utcnow
from tests.school import auth, parse, school
from tests.site import Site, errors_of, gid

BASE = "https://groupgraph.example"
START = """mutation($g: ID!, $f: ExportFormat) { startProgressExport(groupId: $g, format: $f) {
  id status rowsWritten progressPercent downloadUrl } }"""
JOB = """query($id: ID!) { node(id: $id) { ... on ExportJob {
  status report format rowsWritten rowsTotal progressPercent createdAt startedAt finishedAt expiresAt fileName
  downloadUrl error attempts } } }"""
JOBS = "query($all: Boolean) { exportJobs(all: $all) { edges { node { id status report } } pageInfo { hasNextPage } } }"


@pytest.fixture
def settings_overrides(tmp_path: Any) -> dict[str, Any]:
    return {"export_dir": str(tmp_path / "exports"), "public_url": BASE, "export_chunk_rows": 2}


class Clock:
    """The worker's clock: now, until the test moves it."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def work(site: Site, clock: Clock) -> bool:
    return await work_once(site.database, site.settings, file_store(site.settings), clock)


async def job_of(site: Site, job_id: str, user: Any) -> dict[str, Any]:
    body = await site.gql(JOB, {"id": job_id}, as_user=user)
    assert "errors" not in body, body
    return body["data"]["node"]


async def emails(site: Site) -> list[OutboxEmail]:
    async with site.database.session() as session:
        return list(await session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def link_in(body: str) -> str:
    found = re.search(re.escape(BASE) + r"(/exports/jobs/\S+)", body)
    assert found, body
    return found.group(1)


def tampered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params.update(changes)
    return parts.path + "?" + urlencode(params)


async def test_life_cycle_queued_done_downloaded_emailed_expired(site: Site) -> None:
    s = await school(site)
    clock = Clock()
    await site.token(s["leader"])
    with site.statements() as counted:
        started = await site.gql(START, {"g": gid("Group", s["root"]), "f": "XLSX"}, as_user=s["leader"])
        statements = list(counted.statements)
    assert "errors" not in started, started
    # whatever the report's size: sign-in with the reach, the group (twice), the caller's unfinished jobs, the
    # job, its audit
    assert len(statements) == 6 and not any("enrollment" in q for q in statements), statements
    job = started["data"]["startProgressExport"]
    assert job["status"] == "QUEUED" and job["rowsWritten"] == 0 and job["progressPercent"] is None
    assert job["downloadUrl"] is None
    listed = await site.gql(JOBS, as_user=s["leader"])
    assert [e["node"]["id"] for e in listed["data"]["exportJobs"]["edges"]] == [job["id"]]
    assert (await site.gql(JOBS, as_user=s["analyst"]))["data"]["exportJobs"]["edges"] == []
    assert errors_of(await site.gql(JOBS, {"all": True}, as_user=s["analyst"])) == ["FORBIDDEN"]
    assert len((await site.gql(JOBS, {"all": True}, as_user=s["admin"]))["data"]["exportJobs"]["edges"]) == 1
    assert (await site.gql(JOB, {"id": job["id"]}, as_user=s["analyst"]))["data"]["node"] is None

    assert await work(site, clock) is True
    assert await work(site, clock) is False  # nothing left
    done = await job_of(site, job["id"], s["leader"])
    assert done["status"] == "DONE" and done["report"] == "PROGRESS" and done["format"] == "XLSX"
    assert (done["rowsWritten"], done["rowsTotal"], done["progressPercent"]) == (4, 4, 100.0)
    assert done["fileName"] == f"{s['root'].slug}-progress.xlsx" and done["error"] is None
    url = done["downloadUrl"]
    assert url.startswith(f"/exports/jobs/{parse_global_id(job['id'])[1]}/file?")

    # a plain link: no header
    plain = await site.client.get(url)
    assert plain.status_code == 200, plain.text
    assert plain.headers["content-disposition"] == f'attachment; filename="{s["root"].slug}-progress.xlsx"'
    assert plain.headers["cache-control"] == "private, no-store"
    workbook = load_workbook(io.BytesIO(plain.content))
    sheet = workbook.active
    assert [c.value for c in sheet[1]] == [
        "Student First Name", "Student Last Name", "Student Email", "Company", "Group Name", "Course Name",
        "Activated At", "% Completed", "Completed Date", "Expiry Date",
    ]
    assert sheet["G2"].is_date and sheet["G2"].value == datetime(2026, 3, 2, 9, 30)
    assert sheet["G2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet["H3"].data_type == "n" and sheet["H3"].value == 33.33 and sheet["H3"].number_format == "0.00"
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:J5"
    assert sheet.column_dimensions["C"].width > 20

    # the bearer header still works; a changed or another user's link does not
    assert (await site.client.get(url.split("?")[0], headers=auth(await site.token(s["leader"])))).status_code == 200
    assert (await site.client.get(url.split("?")[0])).status_code == 401
    assert (await site.client.get(url.split("?")[0], headers=auth(await site.token(s["analyst"])))).status_code == 404
    for changed in (tampered(url, u=str(s["admin"].id)), tampered(url, exp="9999999999"), tampered(url, sig="x" * 43)):
        refused = await site.client.get(changed)
        assert refused.status_code == 403 and refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    # the owner's email carries a link of its own
    (mail,) = await emails(site)
    assert mail.kind == "export_ready" and mail.to_address == s["leader"].email
    assert (await site.client.get(link_in(mail.body))).status_code == 200

    # kept for the retention period, then deleted
    clock.advance(hours=site.settings.export_retention_hours - 1)
    await work(site, clock)
    assert (await job_of(site, job["id"], s["leader"]))["status"] == "DONE"
    clock.advance(hours=2)
    await work(site, clock)
    expired = await job_of(site, job["id"], s["leader"])
    assert expired["status"] == "EXPIRED" and expired["downloadUrl"] is None
    assert (await site.client.get(link_in(mail.body))).status_code == 410
    assert list(Path(site.settings.export_dir).glob("job-*")) == []  # noqa: ASYNC240
    actions = [a for (a,) in (await _audit(site))]
    assert actions.count("export_job.start") == 1 and actions.count("export.job_download") == 3
    metrics = (await site.client.get("/metrics")).text
    assert 'groupgraph_export_jobs{status="EXPIRED"} 1.0' in metrics
    assert "groupgraph_export_job_seconds_count" in metrics


async def _audit(site: Site) -> list[Any]:
    async with site.database.session() as session:
        return list((await session.execute(select(AuditEvent.action).order_by(AuditEvent.id))).all())


async def test_a_failing_job_and_an_owner_who_lost_the_permission(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    s = await school(site)
    clock = Clock()
    monkeypatch.setattr(sheets, "MAX_SHEET_ROWS", 4)  # header + 3 rows fit; the school has 4
    monkeypatch.setattr(export_jobs, "MAX_SHEET_ROWS", 4)
    big = (await site.gql(START, {"g": gid("Group", s["root"])}, as_user=s["admin"]))["data"]["startProgressExport"]
    await work(site, clock)
    failed = await job_of(site, big["id"], s["admin"])
    assert failed["status"] == "FAILED" and failed["downloadUrl"] is None
    assert failed["error"] == "More than 3 rows: export one course at a time (courseId)."
    (mail,) = await emails(site)
    assert mail.kind == "export_failed" and "export one course at a time" in mail.body

    # started while allowed, refused when it runs: the analyst's membership is gone meanwhile
    started = await site.gql(START, {"g": gid("Group", s["a"]), "f": "CSV"}, as_user=s["analyst"])
    async with site.database.transaction() as session:
        await session.execute(delete(Membership).where(Membership.user_id == s["analyst"].id))
    await work(site, clock)
    refused = await job_of(site, started["data"]["startProgressExport"]["id"], s["analyst"])
    assert refused["status"] == "FAILED" and refused["error"] == "The owner may no longer export this report."

    # denials at the start change nothing
    denied = await site.gql(START, {"g": gid("Group", s["a"])}, as_user=s["mentor"])
    assert errors_of(denied) == ["FORBIDDEN"]
    hidden = await site.gql(START, {"g": gid("Group", s["b"])}, as_user=s["analyst"])
    assert errors_of(hidden) == ["NOT_FOUND"]
    admin_only = await site.gql("mutation { startGroupsExport { id } }", as_user=s["leader"])
    assert errors_of(admin_only) == ["FORBIDDEN"]
    assert await site.count(ExportJob) == 2


class Killed(BaseException):
    """The worker process dies: nothing it would do afterwards happens."""


async def test_a_worker_killed_mid_job_is_retried_after_its_lease(site: Site) -> None:
    s = await school(site)
    clock = Clock()
    started = await site.gql(START, {"g": gid("Group", s["root"]), "f": "CSV"}, as_user=s["leader"])
    job_id = started["data"]["startProgressExport"]["id"]
    first = await claim_job(site.database, site.settings, clock(), worker="host-a:1")
    assert first is not None and first.attempts == 1

    def die_after_first_chunk(progress: Any) -> None:
        if progress.rows >= 2:
            raise Killed

    with pytest.raises(Killed):
        await run_job(site.database, site.settings, file_store(site.settings), first, clock, die_after_first_chunk)
    half = Path(site.settings.export_dir) / ".partial" / f"job-{first.id}-1.csv"
    half.write_bytes(b"half a file")  # a killed process cleans nothing up
    running = await job_of(site, job_id, s["leader"])
    assert running["status"] == "RUNNING" and running["rowsTotal"] == 4 and running["progressPercent"] == 0.0

    clock.advance(seconds=site.settings.export_lease_seconds - 5)
    assert await work(site, clock) is False  # the lease still holds: nobody takes it over
    clock.advance(seconds=10)
    assert await work(site, clock) is True
    retried = await job_of(site, job_id, s["leader"])
    assert (retried["status"], retried["attempts"], retried["rowsWritten"]) == ("DONE", 2, 4)
    assert not half.exists()
    csv_body = await site.client.get((await job_of(site, job_id, s["leader"]))["downloadUrl"])
    assert len(parse(csv_body.content)) == 5

    # the first worker, were it to come back, changes nothing
    outcome = await export_jobs._finish(site.database, site.settings, first, clock(), error="late")
    assert outcome.status == "RUNNING"
    assert (await job_of(site, job_id, s["leader"]))["status"] == "DONE"


async def test_permission_revoked_between_start_and_download(site: Site) -> None:
    s = await school(site)
    clock = Clock()
    started = await site.gql(START, {"g": gid("Group", s["a"]), "f": "CSV"}, as_user=s["analyst"])
    await work(site, clock)
    url = (await job_of(site, started["data"]["startProgressExport"]["id"], s["analyst"]))["downloadUrl"]
    link = (await site.gql(
        'query($id: ID!) { group(id: $id) { progressExportUrl(format: XLSX) } }', {"id": gid("Group", s["a"])},
        as_user=s["analyst"],
    ))["data"]["group"]["progressExportUrl"]
    assert (await site.client.get(url)).status_code == 200
    assert (await site.client.get(link)).status_code == 200
    async with site.database.transaction() as session:
        await session.execute(delete(Membership).where(Membership.user_id == s["analyst"].id))
    refused = await site.client.get(url)
    assert refused.status_code == 403 and refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await site.client.get(link)).status_code == 404  # the group is out of sight now, as if missing
    assert (await site.client.get(url.split("?")[0], headers=auth(await site.token(s["analyst"])))).status_code == 403
    # a DENIED account's links stop too
    leader_link = (await site.gql(
        'query($id: ID!) { group(id: $id) { progressExportUrl } }', {"id": gid("Group", s["root"])}, as_user=s["leader"],
    ))["data"]["group"]["progressExportUrl"]
    assert (await site.client.get(leader_link)).status_code == 200
    # a header, when sent, decides: the link's parameters lend nothing to another caller
    assert (await site.client.get(leader_link, headers=auth(await site.token(s["mentor"])))).status_code == 403
    async with site.database.transaction() as session:
        from app.store.models import User

        await session.execute(update(User).where(User.id == s["leader"].id).values(status="DENIED"))
    assert (await site.client.get(leader_link)).status_code == 403
    # an expired link
    key = await link_key(site.database, site.settings)
    old = sign(key, f"/exports/groups/{s['root'].id}/progress.csv", {}, s["admin"].id, int(utcnow().timestamp()) - 1)
    expired = await site.client.get(old)
    assert expired.status_code == 403 and "expired" in expired.json()["errors"][0]["message"]
    fresh = sign(key, f"/exports/groups/{s['root'].id}/progress.csv", {}, s["admin"].id, int(utcnow().timestamp()) + 60)
    assert (await site.client.get(fresh)).status_code == 200
    # the signature covers the path and every parameter
    assert (await site.client.get(fresh.replace(f"/groups/{s['root'].id}/", f"/groups/{s['a'].id}/"))).status_code == 403
    assert (await site.client.get(fresh + "&includeNested=false")).status_code == 403


async def test_two_workers_never_claim_one_job_twice(site: Site, engine: str) -> None:
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    async with site.database.transaction() as session:
        for _ in range(12):
            queue_job(session, admin.id, ExportRequest(GROUPS))  # type: ignore[arg-type]
    other = Database(Settings(database_url=engine))
    now = utcnow()
    claimed: list[int] = []

    async def claim_all(database: Database, name: str) -> None:
        while (job := await claim_job(database, site.settings, now, worker=name)) is not None:
            claimed.append(job.id)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(claim_all(site.database, "a"), claim_all(other, "b"), claim_all(site.database, "c"))
    finally:
        await other.dispose()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 12
    async with site.database.session() as session:
        attempts = list(await session.scalars(select(ExportJob.attempts)))
    assert attempts == [1] * 12


async def test_csv_date_format_for_spreadsheets_and_every_report_as_a_job(site: Site) -> None:
    s = await school(site)
    clock = Clock()
    headers = auth(await site.token(s["admin"]))
    for path in (f"/exports/groups/{s['root'].id}/progress.csv", "/exports/groups.csv", "/exports/memberships.csv"):
        response = await site.client.get(path + "?dateFormat=spreadsheet", headers=headers)
        assert response.status_code == 200, response.text
        body = response.text
        assert "Z," not in body and not body.rstrip().endswith("Z")
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", body)
    progress = parse((await site.client.get(f"/exports/groups/{s['root'].id}/progress.csv?dateFormat=SPREADSHEET", headers=headers)).content)
    assert progress[1][6] == "2026-03-02 09:30:00" and progress[1][8] == "2026-03-09 12:00:00"
    default = parse((await site.client.get(f"/exports/groups/{s['root'].id}/progress.csv", headers=headers)).content)
    assert default[1][6] == "2026-03-02T09:30:00Z"
    bad = await site.client.get("/exports/groups.csv?dateFormat=excel", headers=headers)
    assert bad.status_code == 400 and bad.json()["errors"][0]["extensions"]["field"] == "dateFormat"

    mutations = {
        "startGroupsExport(format: XLSX)": "groups.xlsx", "startMembershipsExport(dateFormat: SPREADSHEET)": "memberships.csv",
        "startUnassignedStudentsExport": "unassigned-active-students.csv",
        "startExternalUsersExport": "external-users.xlsx",
        "startPupilsWithoutLicenceExport(licenceType: PUPIL)": "pupils-without-licence.xlsx",
    }
    ids = []
    for field in mutations:
        body = await site.gql(f"mutation {{ {field} {{ id status }} }}", as_user=s["admin"])
        assert "errors" not in body, body
        ids.append(next(iter(body["data"].values()))["id"])
    # a leader: the accounts homed under a group they lead, never the whole site
    scoped = await site.gql(
        "mutation($g: ID!) { startUnassignedStudentsExport(scopeGroupId: $g) { id } }", {"g": gid("Group", s["root"])},
        as_user=s["leader"],
    )
    assert "errors" not in scoped, scoped
    unscoped = await site.gql("mutation { startUnassignedStudentsExport { id } }", as_user=s["leader"])
    assert errors_of(unscoped) == ["BAD_USER_INPUT"] and unscoped["errors"][0]["extensions"]["field"] == "scopeGroupId"
    while await work(site, clock):
        pass
    leader_job = await job_of(site, scoped["data"]["startUnassignedStudentsExport"]["id"], s["leader"])
    assert leader_job["status"] == "DONE" and leader_job["fileName"] == "unassigned-active-students.csv"
    for job_id, name in zip(ids, mutations.values(), strict=True):
        job = await job_of(site, job_id, s["admin"])
        assert job["status"] == "DONE" and job["fileName"] == name, job
    groups = load_workbook(io.BytesIO((await site.client.get((await job_of(site, ids[0], s["admin"]))["downloadUrl"])).content))
    rows = list(groups.active.iter_rows(values_only=True))
    assert rows[0][:5] == ("Group ID", "Group Name", "Slug", "Description", "Created At")
    assert rows[1][0] == s["root"].id and isinstance(rows[1][4], datetime)
    memberships = parse((await site.client.get((await job_of(site, ids[1], s["admin"]))["downloadUrl"])).content)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", memberships[1][9])


async def test_pupils_with_licence_as_a_job_matches_the_download(site: Site) -> None:
    """The background job writes what the download sends: the learners with a holder of the licence type;
    a non-admin is refused and starts nothing."""
    from app.store.models import GuardianLink

    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    parent = await site.user("Dee", "Dale", kind="EXTERNAL")
    pip = await site.user("Pip", "Pym", external_id="S1", email="pip@example.com")
    pam = await site.user("Pam", "Pym", external_id="S2", email="pam@example.com")
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pip.id, licence_type="PARENT_GUARDIAN"))
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pam.id, licence_type="OTHER"))
    start = "mutation { startPupilsWithLicenceExport(licenceType: PARENT_GUARDIAN) { id status } }"
    refused = await site.gql(start, as_user=parent)
    assert errors_of(refused) == ["FORBIDDEN"]
    assert await site.count(ExportJob) == 0
    body = await site.gql(start, as_user=admin)
    assert "errors" not in body, body
    clock = Clock()
    while await work(site, clock):
        pass
    job = await job_of(site, body["data"]["startPupilsWithLicenceExport"]["id"], admin)
    assert job["status"] == "DONE" and job["fileName"] == "pupils-with-licence.xlsx", job
    written = list(load_workbook(io.BytesIO((await site.client.get(job["downloadUrl"])).content)).active.iter_rows(values_only=True))
    assert [list(r) for r in written] == [
        ["ID", "Student ID", "First Name", "Surname", "Email", "Licence Types"],
        [pip.id, "S1", "Pip", "Pym", "pip@example.com", "PARENT_GUARDIAN"],
    ]
    download = await site.client.get(
        "/exports/pupils-with-licence.xlsx?licenceType=PARENT_GUARDIAN", headers=auth(await site.token(admin))
    )
    assert list(load_workbook(io.BytesIO(download.content)).active.iter_rows(values_only=True)) == written
