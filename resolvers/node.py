"""`node(id:)`: one entry per Node type, each returning null for what the caller may not see."""

from __future__ import annotations

import importlib

import strawberry
from strawberry.types import Info

from app.runtime.ids import parse_global_id
from resolvers.common import Node

# type name -> "module:function" taking (info, database_id) and returning the object or None
NODE_RESOLVERS: dict[str, str] = {
    "User": "resolvers.users:user_by_id",
    "Group": "resolvers.groups:visible_group",
    "Membership": "resolvers.memberships:visible_membership",
    "AccessRequest": "resolvers.consent:visible_access_request",
    "GuardianLink": "resolvers.guardians:visible_guardian_link",

    "Course": "resolvers.courses:visible_course",
    "Step": "resolvers.courses:visible_step",
    "Submission": "resolvers.reviews:visible_submission",

    "AuditEvent": "resolvers.audit:visible_audit_event",
}


@strawberry.type
class NodeQueries:
    @strawberry.field
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, database_id = parse_global_id(id)
        target = NODE_RESOLVERS.get(type_name)
        if target is None:
            return None
        module, function = target.split(":")
        return await getattr(importlib.import_module(module), function)(info, database_id)
