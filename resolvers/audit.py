"""The audit log: what every successful mutation (and export download) changed, for site admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.ids import to_global_id
from app.store.models import AuditEvent as AuditEventRow
from dataloaders.audit import audit_event, audit_page
from permissions.classes import requires
from permissions.reach import Permission
from resolvers.common import After, Before, First, Last, Node, PageInfo, clean_text, paging
from resolvers.views import UserType, UserView, prepare_users


@strawberry.type
class AuditEvent(Node):
    row: strawberry.Private[AuditEventRow]
    actor_user: strawberry.Private[UserView | None]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("AuditEvent", self.row.id))  # type: ignore[arg-type]

    @strawberry.field(description="Null for the system (sync, migrations), or when the account is gone.")
    def actor(self) -> UserType | None:
        return self.actor_user

    @strawberry.field(description="For example group.create, membership.add, access_request.revoke, user.deny.")
    def action(self) -> str:
        return self.row.action

    @strawberry.field
    def target_type(self) -> str:
        return self.row.target_type

    @strawberry.field
    def target_id(self) -> int | None:
        return self.row.target_id

    @strawberry.field
    def occurred_at(self) -> datetime:
        return self.row.occurred_at

    @strawberry.field(description="JSON text: what changed.")
    def detail(self) -> str | None:
        return self.row.detail


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo


async def build_events(info: Info, rows: list[AuditEventRow]) -> list[AuditEvent]:
    """Events with their actors prepared in one batch (the caller is a site admin: every actor shows)."""
    actor_ids = sorted({r.actor_id for r in rows if r.actor_id is not None})
    found = [u for u in await info.context.loaders.users.many(actor_ids) if u is not None]
    actors = {u.row.id: u for u in await prepare_users(info, found)}
    return [AuditEvent(row=r, actor_user=actors.get(r.actor_id) if r.actor_id is not None else None) for r in rows]


async def visible_audit_event(info: Info, event_id: int) -> AuditEvent | None:
    """For `node(id:)`: site admins only; null for everyone else, as for a missing id."""
    reach = await info.context.load_reach()
    if not reach.is_admin:
        return None
    row = await audit_event(info.context.store, event_id)
    return None if row is None else (await build_events(info, [row]))[0]


@strawberry.type
class AuditQueries:
    @strawberry.field(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Newest first; keyset-paginated (after: the endCursor of the previous page).",
    )
    async def audit_log(
        self, info: Info,
        action: Annotated[str | None, strawberry.argument(description="Only events of this action (e.g. user.create).")] = None,
        first: First = 50, after: After = None, last: Last = None, before: Before = None,
    ) -> AuditEventConnection:
        pages = paging(info, "auditLog", (cursors.ID,), first, after, last, before)
        action = clean_text(action, "action", max_length=64, required=False)
        fetched = list(await audit_page(info.context.store, action, pages.window))
        rows, made, page_info_ = pages.page(fetched, lambda r: (r.id,))
        events = {e.row.id: e for e in await build_events(info, rows)}
        edges = [AuditEventEdge(cursor=c, node=events[r.id]) for c, r in zip(made, rows, strict=True)]
        return AuditEventConnection(edges=edges, page_info=page_info_)
