"""Shared set-up for the progress and review tests: courses, enrollments and events through the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.store.models import User
from tests.site import Site, gid

CREATE_COURSE = """mutation($name: String!, $steps: [StepInput!]!) {
  createCourse(name: $name, steps: $steps) { id databaseId name stepCount steps { id databaseId title position kind maxPoints } }
}"""
ENROLL = "mutation($u: [ID!]!, $c: ID!, $x: DateTime) { enroll(userIds: $u, courseId: $c, expiresAt: $x) }"
RECORD = "mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }"


async def course(site: Site, admin: User, name: str, steps: list[tuple[str, int | None]]) -> dict[str, Any]:
    """A course whose steps are (kind, maxPoints), titled after their position."""
    body = await site.gql(
        CREATE_COURSE,
        {"name": name, "steps": [{"title": f"{name} {n + 1}", "kind": k, "maxPoints": p} for n, (k, p) in enumerate(steps)]},
        as_user=admin,
    )
    assert "errors" not in body, body
    return body["data"]["createCourse"]


async def enroll(site: Site, admin: User, users: list[User], course: dict[str, Any]) -> int:
    body = await site.gql(ENROLL, {"u": [gid("User", u) for u in users], "c": course["id"]}, as_user=admin)
    assert "errors" not in body, body
    return body["data"]["enroll"]


def event(user: User, kind: str, step: dict[str, Any] | None = None, at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"userId": gid("User", user), "kind": kind, **extra}
    if step is not None:
        out["stepId"] = step["id"]
    if at is not None:
        out["occurredAt"] = at.isoformat()
    return out


async def record(site: Site, admin: User, events: list[dict[str, Any]]) -> dict[str, Any]:
    return await site.gql(RECORD, {"e": events}, as_user=admin)
