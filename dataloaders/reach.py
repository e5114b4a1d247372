"""The one query behind a viewer's Reach."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, and_, bindparam, literal, or_, select, union_all
from sqlalchemy.orm import aliased

from app.store.models import (
    AccessRequest,
    CatalogueVersion,
    GroupClosure,
    GuardianLink,
    Membership,
    User,
    utcnow,
)
from dataloaders.groups import gives_sight
from dataloaders.store import Store


def asked_of(viewer_id: Any, now: Any) -> ColumnElement[bool]:
    """Requests whose subject is the viewer (by account, or by the email of an account not yet known to the
    request) that are PENDING and not expired, or GRANTED: their requesters the viewer may see (name, email)."""
    viewer_email = select(User.email_normalized).where(User.id == viewer_id).scalar_subquery()
    mine = or_(
        AccessRequest.subject_user_id == viewer_id,
        and_(AccessRequest.subject_user_id.is_(None), AccessRequest.subject_email_normalized == viewer_email),
    )
    live = or_(AccessRequest.status == "GRANTED", and_(AccessRequest.status == "PENDING", AccessRequest.expires_at > now))
    return and_(mine, live)


async def load_reach_rows(
    store: Store, viewer_id: int, members_see_groups: bool = True
) -> list[tuple[str, int, str | None]]:
    """(kind, id, role) rows: every group under each of the viewer's memberships, every user who
    granted the viewer access, every pupil linked to the viewer. The same statement reads the course
    catalogue's version for the request (`store.catalogue_version`, dataloaders.courses). Ended memberships count for nothing, nor
    do MEMBER memberships in a tree whose members do not see their groups (`members_see_groups`: the site's
    default; a root group may override it)."""
    rows = await store.all(_reach_statement(members_see_groups), {"viewer_id": viewer_id, "now": utcnow()})
    out: list[tuple[str, int, str | None]] = []
    for kind, ident, role in rows:
        if kind == "catalogue":  # rides along: the request's course loader needs no statement of its own
            store.catalogue_version = int(ident)
        else:
            out.append((kind, int(ident), role))
    return out


@cache
def _reach_statement(members_see_groups: bool):  # type: ignore[no-untyped-def]
    """Built once per process (per site default): the viewer and the instant are bound at execution."""
    viewer_id = bindparam("viewer_id")  # typed by the columns they are compared with
    now = bindparam("now")
    sight = gives_sight(Membership, members_see_groups)
    groups = (
        select(literal("group"), GroupClosure.descendant_id, Membership.role)
        .join(GroupClosure, GroupClosure.ancestor_id == Membership.group_id)
        .where(Membership.user_id == viewer_id, sight)
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
        Membership.user_id == viewer_id, sight
    )
    askers = select(literal("asker"), AccessRequest.requester_id, literal(None)).where(asked_of(viewer_id, now))
    version = CatalogueVersion.__table__.c  # type: ignore[attr-defined]
    catalogue = select(literal("catalogue"), version.version, literal(None)).where(version.id == 1)
    return union_all(groups, granted, pupils, direct, askers, catalogue)


def reach_rows_of(viewer_ids: Any, members_see_groups: bool = True, now: Any = None) -> CompoundSelect:
    """`load_reach_rows` for many viewers in one statement: (viewer, kind, id, role) rows, the viewers being
    `viewer_ids` (a select of user ids, or a list). The same five parts under the same conditions, each
    keyed by its viewer; `now` (a value or a bind parameter) decides which pending requests have expired."""
    sight = gives_sight(Membership, members_see_groups)
    groups = (
        select(Membership.user_id, literal("group"), GroupClosure.descendant_id, Membership.role)
        .join(GroupClosure, GroupClosure.ancestor_id == Membership.group_id)
        .where(Membership.user_id.in_(viewer_ids), sight)
    )
    granted = select(
        AccessRequest.requester_id, literal("granted"), AccessRequest.subject_user_id, literal(None)
    ).where(
        AccessRequest.requester_id.in_(viewer_ids),
        AccessRequest.status == "GRANTED",
        AccessRequest.subject_user_id.is_not(None),
    )
    pupils = select(GuardianLink.external_user_id, literal("pupil"), GuardianLink.pupil_id, literal(None)).where(
        GuardianLink.external_user_id.in_(viewer_ids)
    )
    direct = select(Membership.user_id, literal("direct"), Membership.group_id, Membership.role).where(
        Membership.user_id.in_(viewer_ids), sight
    )
    subject = aliased(User)
    now = utcnow() if now is None else now
    askers = (
        select(subject.id, literal("asker"), AccessRequest.requester_id, literal(None))
        .select_from(subject)
        .join(
            AccessRequest,
            or_(
                AccessRequest.subject_user_id == subject.id,
                and_(
                    AccessRequest.subject_user_id.is_(None),
                    AccessRequest.subject_email_normalized == subject.email_normalized,
                ),
            ),
        )
        .where(
            subject.id.in_(viewer_ids),
            or_(AccessRequest.status == "GRANTED", and_(AccessRequest.status == "PENDING", AccessRequest.expires_at > now)),
        )
    )
    return union_all(groups, granted, pupils, direct, askers)
