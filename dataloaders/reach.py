"""The one query behind a viewer's Reach."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, bindparam, literal, or_, select, union_all
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


def asked_of(viewer_id: Any, now: Any, viewer_email: Any = None) -> ColumnElement[bool]:
    """Requests whose subject is the viewer (by account, or by the email of an account not yet known to the
    request) that are PENDING and not expired, or GRANTED: their requesters the viewer may see (name, email).
    `viewer_email`: the viewer's normalized email where the statement has it already (else a subquery)."""
    if viewer_email is None:
        viewer_email = select(User.email_normalized).where(User.id == viewer_id).scalar_subquery()
    mine = or_(
        AccessRequest.subject_user_id == viewer_id,
        and_(AccessRequest.subject_user_id.is_(None), AccessRequest.subject_email_normalized == viewer_email),
    )
    live = or_(AccessRequest.status == "GRANTED", and_(AccessRequest.status == "PENDING", AccessRequest.expires_at > now))
    return and_(mine, live)


def _reach_parts(
    is_viewer: Callable[[Any], ColumnElement[bool]], members_see_groups: bool, now: Any, keyed: bool
) -> list[Select[Any]]:
    """The five parts of a Reach as (kind, id, role) rows, each led by its viewer's id when `keyed` (many viewers
    in one statement): every group under each of the viewer's memberships, the users who granted the viewer
    access, the pupils linked to the viewer, the viewer's own memberships, and who asks the viewer."""
    sight = gives_sight(Membership, members_see_groups)

    def columns(viewer: Any, kind: str, ident: Any, role: Any) -> list[Any]:
        return [viewer, literal(kind), ident, role] if keyed else [literal(kind), ident, role]

    groups = (
        select(*columns(Membership.user_id, "group", GroupClosure.descendant_id, Membership.role))
        .join(GroupClosure, GroupClosure.ancestor_id == Membership.group_id)
        .where(is_viewer(Membership.user_id), sight)
    )
    granted = select(*columns(AccessRequest.requester_id, "granted", AccessRequest.subject_user_id, literal(None))).where(
        is_viewer(AccessRequest.requester_id),
        AccessRequest.status == "GRANTED",
        AccessRequest.subject_user_id.is_not(None),
    )
    pupils = select(*columns(GuardianLink.external_user_id, "pupil", GuardianLink.pupil_id, literal(None))).where(
        is_viewer(GuardianLink.external_user_id)
    )
    direct = select(*columns(Membership.user_id, "direct", Membership.group_id, Membership.role)).where(
        is_viewer(Membership.user_id), sight
    )
    subject = aliased(User)
    askers = (
        select(*columns(subject.id, "asker", AccessRequest.requester_id, literal(None)))
        .select_from(subject)
        .join(AccessRequest, asked_of(subject.id, now, subject.email_normalized))
        .where(is_viewer(subject.id))
    )
    return [groups, granted, pupils, direct, askers]


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


def reach_parts(viewer: Any, members_see_groups: bool, now: Any) -> list[Select[Any]]:
    """The (kind, id, role) selects of `load_reach_rows`'s statement, the viewer being `viewer` (a bind
    parameter, or a subquery finding them), the catalogue's version last."""
    parts = _reach_parts(lambda column: column == viewer, members_see_groups, now, keyed=False)
    version = CatalogueVersion.__table__.c  # type: ignore[attr-defined]
    return [*parts, select(literal("catalogue"), version.version, literal(None)).where(version.id == 1)]


@cache
def _reach_statement(members_see_groups: bool):  # type: ignore[no-untyped-def]
    """Built once per process (per site default): the viewer and the instant are bound at execution."""
    viewer_id = bindparam("viewer_id")  # typed by the columns it is compared with
    return union_all(*reach_parts(viewer_id, members_see_groups, bindparam("now")))


def reach_rows_of(viewer_ids: Any, members_see_groups: bool = True, now: Any = None) -> CompoundSelect:
    """`load_reach_rows` for many viewers in one statement: (viewer, kind, id, role) rows, the viewers being
    `viewer_ids` (a select of user ids, or a list); `now` (a value or a bind parameter) decides which pending
    requests have expired."""
    now = utcnow() if now is None else now
    return union_all(*_reach_parts(lambda column: column.in_(viewer_ids), members_see_groups, now, keyed=True))
