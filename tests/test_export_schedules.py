"""Export schedules: created, checked, fired by the worker at the local time (a clock the test controls),
each run an export job emailed to the owner and to the recipients who may still export the report,
paused, resumed, changed and deleted, every step audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select

from app.services.export_jobs import fire_due_schedules, next_run
from app.store.models import AuditEvent, ExportJob, Membership, OutboxEmail
from tests.school import school
from tests.site import Site, errors_of, gid
from tests.test_export_jobs import Clock, link_in, work

CREATE = """mutation($input: CreateExportScheduleInput!) { createExportSchedule(input: $input) {
  id report format dateFormat frequency time timeZone weekday dayOfMonth paused nextRunAt lastRunAt
  recipients { id } group { id } } }"""
PAUSE = "mutation($id: ID!, $p: Boolean) { pauseExportSchedule(id: $id, paused: $p) { paused nextRunAt } }"
UPDATE = """mutation($id: ID!, $input: UpdateExportScheduleInput!) { updateExportSchedule(id: $id, input: $input) {
  frequency time nextRunAt weekday } }"""
SCHEDULES = "query($all: Boolean) { exportSchedules(all: $all) { edges { node { id } } } }"


@pytest.fixture
def settings_overrides(tmp_path: Any) -> dict[str, Any]:
    return {"export_dir": str(tmp_path / "exports"), "public_url": "https://groupgraph.example"}


def paris(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(ZoneInfo("Europe/Paris"))


async def test_a_weekly_schedule_fires_at_its_local_time(site: Site) -> None:
    s = await school(site)
    co = await site.user("Col", "Leader", kind="STAFF", email="col@example.com")
    await site.member(co, s["root"], "LEADER")
    base = {
        "report": "PROGRESS", "groupId": gid("Group", s["root"]), "frequency": "WEEKLY", "weekday": "MONDAY",
        "time": "07:00", "timeZone": "Europe/Paris",
    }

    async def create(user: Any, **changes: Any) -> dict[str, Any]:
        return await site.gql(CREATE, {"input": {**base, **changes}}, as_user=user)

    for changes, field in (
        ({"time": "7am"}, "time"), ({"timeZone": "Mars/Olympus"}, "timeZone"), ({"weekday": None}, "weekday"),
        ({"frequency": "MONTHLY"}, "dayOfMonth"), ({"recipientIds": [gid("User", s["analyst"])]}, "recipientIds"),
    ):
        body = await create(s["leader"], **changes)
        assert errors_of(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == field, body
    refused = await create(s["leader"], recipientIds=[gid("User", s["analyst"])])
    assert refused["errors"][0]["extensions"]["userIds"] == [gid("User", s["analyst"])]
    assert errors_of(await create(s["mentor"])) == ["FORBIDDEN"]
    assert errors_of(await create(s["analyst"])) == ["NOT_FOUND"]  # the school is out of the analyst's sight
    assert errors_of(await create(s["leader"], report="GROUPS", groupId=None)) == ["FORBIDDEN"]

    made = await create(s["leader"], recipientIds=[gid("User", co)])
    assert "errors" not in made, made
    schedule = made["data"]["createExportSchedule"]
    assert (schedule["format"], schedule["dateFormat"], schedule["weekday"], schedule["paused"]) == ("XLSX", "RFC3339", "MONDAY", False)
    assert schedule["recipients"] == [{"id": gid("User", co)}] and schedule["group"] == {"id": gid("Group", s["root"])}
    first = paris(schedule["nextRunAt"])
    assert (first.weekday(), first.hour, first.minute) == (0, 7, 0)
    assert [e["node"]["id"] for e in (await site.gql(SCHEDULES, as_user=s["leader"]))["data"]["exportSchedules"]["edges"]] == [schedule["id"]]
    assert (await site.gql(SCHEDULES, as_user=co))["data"]["exportSchedules"]["edges"] == []

    due = first.astimezone(UTC)
    assert await fire_due_schedules(site.database, due - timedelta(minutes=1)) == []
    clock = Clock()
    clock.now = due
    assert await work(site, clock) is True  # the run starts a job, and the same round writes it
    async with site.database.session() as session:
        mails = list(await session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))
    assert [m.to_address for m in mails] == [s["leader"].email, co.email]
    co_link = link_in(mails[1].body)
    assert (await site.client.get(co_link)).status_code == 200  # the recipient's own link, no header
    assert "Not sent to" not in mails[0].body
    listed = await site.gql("{ exportJobs { edges { node { schedule { id } } } } }", as_user=s["leader"])
    assert listed["data"]["exportJobs"]["edges"][0]["node"]["schedule"] == {"id": schedule["id"]}
    after = await site.gql(SCHEDULES.replace("node { id }", "node { nextRunAt lastRunAt }"), as_user=s["leader"])
    node = after["data"]["exportSchedules"]["edges"][0]["node"]
    assert paris(node["nextRunAt"]) == first + timedelta(days=7) and node["lastRunAt"] is not None
    assert await fire_due_schedules(site.database, due + timedelta(days=1)) == []  # ran once, not again

    # the co-leader leaves the school: next Monday's run skips them, and the owner is told
    async with site.database.transaction() as session:
        await session.execute(delete(Membership).where(Membership.user_id == co.id))
    assert (await site.client.get(co_link)).status_code == 403  # last week's link is refused now too
    clock.now = due + timedelta(days=7)
    assert await work(site, clock) is True
    async with site.database.session() as session:
        jobs = list(await session.scalars(select(ExportJob).order_by(ExportJob.id)))
        mails = list(await session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))
    assert [(j.owner_id, j.rows_written, j.format) for j in jobs] == [(s["leader"].id, 4, "XLSX")] * 2
    assert [j.status for j in jobs] == ["EXPIRED", "DONE"]  # last week's file is past its retention
    assert [m.to_address for m in mails[2:]] == [s["leader"].email]
    assert "Not sent to Col Leader <col@example.com>" in mails[2].body

    # paused: the next Monday passes without a run; resumed, changed, deleted
    paused = await site.gql(PAUSE, {"id": schedule["id"], "p": True}, as_user=s["leader"])
    assert paused["data"]["pauseExportSchedule"]["paused"] is True
    assert await fire_due_schedules(site.database, due + timedelta(days=15)) == []
    assert errors_of(await site.gql(PAUSE, {"id": schedule["id"], "p": False}, as_user=co)) == ["NOT_FOUND"]
    await site.gql(PAUSE, {"id": schedule["id"], "p": False}, as_user=s["leader"])
    changed = await site.gql(UPDATE, {"id": schedule["id"], "input": {"frequency": "DAILY", "time": "18:30"}}, as_user=s["admin"])
    assert "errors" not in changed, changed
    daily = changed["data"]["updateExportSchedule"]
    assert (daily["frequency"], daily["time"], daily["weekday"]) == ("DAILY", "18:30", None)
    assert (paris(daily["nextRunAt"]).hour, paris(daily["nextRunAt"]).minute) == (18, 30)
    deleted = await site.gql("mutation($id: ID!) { deleteExportSchedule(id: $id) }", {"id": schedule["id"]}, as_user=s["leader"])
    assert deleted["data"]["deleteExportSchedule"] is True
    async with site.database.session() as session:
        actions = list(await session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("export_schedule.%")).order_by(AuditEvent.id)))
        kept = list(await session.scalars(select(ExportJob)))
    assert actions == [
        "export_schedule.create", "export_schedule.run", "export_schedule.run", "export_schedule.pause",
        "export_schedule.resume", "export_schedule.update", "export_schedule.delete",
    ]
    assert [j.schedule_id for j in kept] == [None, None]  # the jobs (and their files) stay


def test_next_run_in_time_zones_across_clock_changes_and_short_months() -> None:
    new_york = ZoneInfo("America/New_York")
    # Monday 07:00 in Paris: before (UTC+1) and after (UTC+2) the clocks go forward on 28 March 2027
    assert next_run("WEEKLY", "07:00", "Europe/Paris", datetime(2027, 3, 23, tzinfo=UTC), 0) == datetime(2027, 3, 29, 5, tzinfo=UTC)
    assert next_run("WEEKLY", "07:00", "Europe/Paris", datetime(2027, 3, 15, 6, 0, tzinfo=UTC), 0) == datetime(2027, 3, 22, 6, tzinfo=UTC)
    # strictly after: at the very minute, the next one
    assert next_run("DAILY", "00:00", "UTC", datetime(2027, 1, 1, tzinfo=UTC)) == datetime(2027, 1, 2, tzinfo=UTC)
    # day 31 in February: the month's last day
    feb = next_run("MONTHLY", "09:15", "America/New_York", datetime(2027, 1, 31, 15, tzinfo=UTC), day_of_month=31)
    assert feb.astimezone(new_york).replace(tzinfo=None) == datetime(2027, 2, 28, 9, 15)
    # a local time the clocks skip (02:30 on 14 March 2027 in New York) runs at the offset before the change
    skipped = next_run("DAILY", "02:30", "America/New_York", datetime(2027, 3, 14, 5, tzinfo=UTC))
    assert skipped == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
