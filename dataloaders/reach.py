"""The one query behind a viewer's Reach."""

from __future__ import annotations

from sqlalchemy import literal, select, union_all

from app.store.models import AccessRequest, GroupClosure, GuardianLink, Membership
from dataloaders.store import Store


async def load_reach_rows(store: Store, viewer_id: int) -> list[tuple[str, int, str | None]]:
    """(kind, id, role) rows: every group under each of the viewer's memberships, every user who
    granted the viewer access, every pupil linked to the viewer."""
    groups = (
        select(literal("group"), GroupClosure.descendant_id, Membership.role)
        .join(GroupClosure, GroupClosure.ancestor_id == Membership.group_id)
        .where(Membership.user_id == viewer_id, Membership.ended_at.is_(None))
    )
    granted = select(literal("granted"), AccessRequest.subject_user_id, literal(None)).where(
        AccessRequest.requester_id == viewer_id,
        AccessRequest.status == "GRANTED",
        AccessRequest.subject_user_id.is_not(None),
    )
    pupils = select(literal("pupil"), GuardianLink.pupil_id, literal(None)).where(
        GuardianLink.external_user_id == viewer_id
    )
    direct = select(literal("direct"), Membership.group_id, Membership.role).where(
        Membership.user_id == viewer_id, Membership.ended_at.is_(None)  # an ended membership gives no access
    )
    rows = await store.all(union_all(groups, granted, pupils, direct))
    return [(kind, int(ident), role) for kind, ident, role in rows]
