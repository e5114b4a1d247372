"""`node(id:)`: one entry per Node type, each returning null for what the caller may not see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.types import Info

from app.runtime.ids import parse_global_id
from resolvers.audit import visible_audit_event
from resolvers.common import Node
from resolvers.consent import visible_access_request
from resolvers.courses import visible_course, visible_step
from resolvers.exports import visible_export_job, visible_schedule
from resolvers.guardians import visible_guardian_link
from resolvers.memberships import visible_membership
from resolvers.reviews import visible_submission
from resolvers.rostering import visible_roster_sync
from resolvers.views import visible_group, visible_user

# type name -> a function taking (info, database_id) and returning the object or None
NODE_RESOLVERS: dict[str, Callable[[Info, int], Awaitable[Any]]] = {
    "User": visible_user,
    "Group": visible_group,
    "Membership": visible_membership,
    "AccessRequest": visible_access_request,
    "GuardianLink": visible_guardian_link,
    "Course": visible_course,
    "Step": visible_step,
    "Submission": visible_submission,
    "AuditEvent": visible_audit_event,
    "RosterSync": visible_roster_sync,
    "ExportJob": visible_export_job,
    "ExportSchedule": visible_schedule,
}


@strawberry.type
class NodeQueries:
    @strawberry.field
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, database_id = parse_global_id(id)
        resolve = NODE_RESOLVERS.get(type_name)
        return None if resolve is None else await resolve(info, database_id)
