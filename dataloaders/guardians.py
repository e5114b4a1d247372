"""Guardian links by id and by user (either side of the link), and login statistics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    column,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    union_all,
    values,
)
from sqlmodel.sql.sqltypes import UTCDateTime
from strawberry.dataloader import DataLoader

from app.store.models import GuardianLink, LoginEvent, User
from dataloaders.store import Store


class GuardianLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._by_id)
        self.of_user = DataLoader(load_fn=self._of_user)

    async def _by_id(self, ids: Sequence[int]) -> list[GuardianLink | None]:
        rows = await self.store.scalars(select(GuardianLink).where(GuardianLink.id.in_(list(set(ids)))))
        found = {r.id: r for r in rows}
        return [found.get(i) for i in ids]

    async def _of_user(self, user_ids: Sequence[int]) -> list[list[GuardianLink]]:
        """Links where the user is the external user or the pupil, oldest first."""
        wanted = list(set(user_ids))
        rows = await self.store.scalars(
            select(GuardianLink)
            .where(or_(GuardianLink.external_user_id.in_(wanted), GuardianLink.pupil_id.in_(wanted)))
            .order_by(GuardianLink.id)
        )
        links: dict[int, list[GuardianLink]] = defaultdict(list)
        for row in rows:
            links[row.external_user_id].append(row)
            if row.pupil_id != row.external_user_id:
                links[row.pupil_id].append(row)
        return [links.get(i, []) for i in user_ids]


def _sign_ins_of(
    event: type[LoginEvent], licence_type: str | None, kinds: Sequence[str] | None
) -> list[ColumnElement[bool]]:
    """Sign-ins of the accounts asked for: of these kinds (unknown emails have no kind and drop out), holding a
    link of this licence type. Each is a semi-join on the user, so a user holding several links counts once."""
    conditions: list[ColumnElement[bool]] = []
    if licence_type is not None:
        holders = select(GuardianLink.external_user_id).where(GuardianLink.licence_type == licence_type)
        conditions.append(event.user_id.in_(holders))
    if kinds is not None:
        conditions.append(event.user_id.in_(select(User.id).where(User.kind.in_(list(kinds)))))
    return conditions


async def login_buckets(
    store: Store, starts: Sequence[datetime], since: datetime, until: datetime, licence_type: str | None,
    kinds: Sequence[str] | None = None,
) -> tuple[list[tuple[datetime, int, int, int]], int]:
    """(bucket start, successful, failed, unique users) per bucket, empty buckets included, counting sign-ins
    in [since, until), and the distinct users who signed in over the whole period. The buckets are a VALUES
    list joined to login_event: the same SQL on SQLite and PostgreSQL, one indexed range scan per bucket; the
    period's distinct users are one more row of the same statement (start NULL)."""
    if not starts:
        return [], 0
    edges = [*starts[1:], until]
    bucket = (
        values(
            column("start", UTCDateTime()), column("low", UTCDateTime()), column("high", UTCDateTime()),
            name="bucket",
        )
        .data([(s, max(s, since), min(e, until)) for s, e in zip(starts, edges, strict=True)])
        .cte("bucket")
    )
    event = LoginEvent
    chosen = _sign_ins_of(event, licence_type, kinds)
    joined = and_(event.at >= bucket.c.low, event.at < bucket.c.high, *chosen)
    succeeded = event.success.is_(True)
    per_bucket = (
        select(
            bucket.c.start,
            func.count(event.id).filter(succeeded),
            func.count(event.id).filter(event.success.is_(False)),
            func.count(func.distinct(case((succeeded, event.user_id)))),
        )
        .select_from(bucket)
        .outerjoin(event, joined)
        .group_by(bucket.c.start)
    )
    period = select(
        literal(None, UTCDateTime()), literal(0), literal(0), func.count(func.distinct(event.user_id))
    ).where(event.at >= since, event.at < until, succeeded, *chosen)
    rows = await store.all(union_all(per_bucket, period))
    unique = 0
    buckets: list[tuple[datetime, int, int, int]] = []
    for s, ok, failed, users in rows:
        if s is None:
            unique = int(users)
        else:
            buckets.append((s, int(ok), int(failed), int(users)))
    buckets.sort(key=lambda b: b[0])
    return buckets, unique


def holds_licence(user_id: ColumnElement[int], licence_type: str) -> ColumnElement[bool]:
    """UserFilter.licenceType: the (external) user holds a link of this licence type."""
    return exists().where(GuardianLink.external_user_id == user_id, GuardianLink.licence_type == licence_type)


def has_no_pupils(user_id: ColumnElement[int]) -> ColumnElement[bool]:
    """UserFilter.noPupils: no pupil linked to the account."""
    return not_(exists().where(GuardianLink.external_user_id == user_id))
