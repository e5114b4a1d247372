"""Submissions by id, pending-review counts per user, the review queue of a group's subtree, a user's
submissions, the latest submission per step, and every review of a submission."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, Integer, and_, bindparam, func, literal, or_, select, union_all
from sqlalchemy.dialects.postgresql import aggregate_order_by
from strawberry.dataloader import DataLoader

from app.store import keyset
from app.store.bulk import one_of
from app.store.keyset import Key, Window
from app.store.models import GroupClosure, Membership, Review, Submission
from dataloaders.records import ids_in
from dataloaders.store import Store

NEEDS_REVIEW = "NEEDS_REVIEW"
REVIEWED = "REVIEWED"


QUEUE_ORDER = (Key(Submission.submitted_at), Key(Submission.id))
REVIEWED_ORDER = (Key(Submission.reviewed_at, descending=True), Key(Submission.id, descending=True))


class ReviewLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._by_id)
        self.pending_count = DataLoader(load_fn=self._pending_count)
        self.reviews = DataLoader(load_fn=self._reviews)
        self.latest_per_step = DataLoader(load_fn=self._latest_per_step)
        # read afresh each time (no cache), batched: live updates decide many events at once
        self.latest_on_steps = DataLoader(load_fn=self._latest_on_steps, cache=False)
        self.queue_counts = DataLoader(load_fn=self._queue_counts, cache=False)
        # (group, viewer) -> the red dot as read with a live batch's routing (app.services.events), for that batch
        self.counted: dict[tuple[int, int | None], int] = {}
        self._of_user: dict[Any, DataLoader[int, list[Submission]]] = {}
        self._counts: dict[str | None, DataLoader[int, int]] = {}

    def counts(self, status: str | None) -> DataLoader[int, int]:
        """user id -> how many submissions (of `status`) the user has: one GROUP BY for the batch."""
        loader = self._counts.get(status)
        if loader is None:

            async def load(user_ids: Sequence[int]) -> list[int]:
                x = Submission
                query = select(x.user_id, func.count()).where(one_of(self.store.dialect == "postgresql", x.user_id, sorted(set(user_ids))))
                if status is not None:
                    query = query.where(x.status == status)
                found = {u: int(n) for u, n in await self.store.all(query.group_by(x.user_id))}
                return [found.get(u, 0) for u in user_ids]

            loader = self._counts[status] = DataLoader(load_fn=load)
        return loader

    async def _reviews(self, submission_ids: Sequence[int]) -> list[list[Review]]:
        """Every review of each submission, oldest first: one statement for the batch."""
        rows = await self.store.scalars(
            select(Review).where(Review.submission_id.in_(sorted(set(submission_ids)))).order_by(Review.reviewed_at, Review.id)
        )
        found: dict[int, list[Review]] = defaultdict(list)
        for row in rows:
            found[row.submission_id].append(row)
        return [found.get(i, []) for i in submission_ids]

    async def _latest_per_step(self, user_ids: Sequence[int]) -> list[dict[int, Submission]]:
        """user id -> {step id: the user's latest submission on it}: one statement for the batch."""
        rank = func.row_number().over(
            partition_by=(Submission.user_id, Submission.step_id), order_by=(Submission.submitted_at.desc(), Submission.id.desc())
        ).label("rank")
        ranked = select(Submission.id, rank).where(
            one_of(self.store.dialect == "postgresql", Submission.user_id, sorted(set(user_ids)))
        ).subquery()
        rows = await self.store.scalars(select(Submission).join(ranked, ranked.c.id == Submission.id).where(ranked.c.rank == 1))
        found: dict[int, dict[int, Submission]] = defaultdict(dict)
        for row in rows:
            found[row.user_id][row.step_id] = row
            self.by_id.prime(row.id, row)
        return [found.get(u, {}) for u in user_ids]

    def of_user(self, status: str | None, limit: int, after: tuple[datetime, int] | None) -> DataLoader[int, list[Submission]]:
        """user id -> the user's submissions (of `status`), newest first, keyset after (submitted_at, id). One
        user: ORDER BY ... LIMIT on the (user_id, status) index; several: one ROW_NUMBER() statement."""
        key = (status, limit, after)
        loader = self._of_user.get(key)
        if loader is None:

            async def load(user_ids: Sequence[int]) -> list[list[Submission]]:
                x = Submission
                conditions: list[Any] = []
                if status is not None:
                    conditions.append(x.status == status)
                if after is not None:
                    at, last_id = after
                    conditions.append(or_(x.submitted_at < at, and_(x.submitted_at == at, x.id < last_id)))
                order = (x.submitted_at.desc(), x.id.desc())
                users = sorted(set(user_ids))
                if len(users) == 1:
                    rows = await self.store.scalars(select(x).where(x.user_id == users[0], *conditions).order_by(*order).limit(limit))
                else:
                    rank = func.row_number().over(partition_by=x.user_id, order_by=order).label("rank")
                    ranked = select(x.id, rank).where(one_of(self.store.dialect == "postgresql", x.user_id, users), *conditions).subquery()
                    rows = await self.store.scalars(
                        select(x).join(ranked, ranked.c.id == x.id).where(ranked.c.rank <= limit).order_by(x.user_id, *order)
                    )
                found: dict[int, list[Submission]] = defaultdict(list)
                for row in rows:
                    found[row.user_id].append(row)
                    self.by_id.prime(row.id, row)
                return [found.get(u, []) for u in user_ids]

            loader = self._of_user[key] = DataLoader(load_fn=load)
        return loader

    async def _by_id(self, ids: Sequence[int]) -> list[Submission | None]:
        rows = await self.store.scalars(select(Submission).where(Submission.id.in_(list(set(ids)))))
        found = {r.id: r for r in rows}
        return [found.get(i) for i in ids]

    async def _pending_count(self, user_ids: Sequence[int]) -> list[int]:
        s = Submission.__table__.c  # type: ignore[attr-defined]
        rows = await self.store.all(
            select(s.user_id, func.count())
            .where(s.status == NEEDS_REVIEW, one_of(self.store.dialect == "postgresql", s.user_id, sorted(set(user_ids))))
            .group_by(s.user_id)
        )
        counts = {user_id: int(n) for user_id, n in rows}
        return [counts.get(u, 0) for u in user_ids]

    @staticmethod
    def _queue_filter(  # type: ignore[no-untyped-def]
        group_id: int, viewer_id: int | None, status: str = NEEDS_REVIEW, user_id: int | None = None
    ):
        """Submissions (of `status`) of users with an own (not consent-based), not ended membership in the
        group's subtree, the viewer's own work left out; `user_id` narrows it to one of them."""
        members = (
            select(Membership.user_id)
            .join(GroupClosure, GroupClosure.descendant_id == Membership.group_id)
            .where(
                GroupClosure.ancestor_id == group_id, Membership.access_request_id.is_(None),
                Membership.ended_at.is_(None),
            )
            .correlate_except(Membership, GroupClosure)  # `group_id` may be a column of an enclosing query
        )
        conditions = [Submission.status == status, Submission.user_id.in_(members)]
        if viewer_id is not None:
            conditions.append(Submission.user_id != viewer_id)
        if user_id is not None:
            conditions.append(Submission.user_id == user_id)
        return and_(*conditions)

    async def queue(
        self, group_id: int, viewer_id: int | None, window: Window, status: str = NEEDS_REVIEW,
        user_id: int | None = None,
    ) -> tuple[list[Submission], int]:
        """NEEDS_REVIEW oldest first over (submitted_at, id); REVIEWED newest reviewed first over (reviewed_at,
        id): one keyset window in fetch order, and the total count."""
        condition = self._queue_filter(group_id, viewer_id, status, user_id)
        order = QUEUE_ORDER if status == NEEDS_REVIEW else REVIEWED_ORDER
        query = select(Submission).where(condition, *keyset.conditions(order, window))
        rows = list(await self.store.scalars(query.order_by(*keyset.ordering(order, window)).limit(window.fetch)))
        total = int(await self.store.scalar(select(func.count()).select_from(Submission).where(condition)))
        for row in rows:
            self.by_id.prime(row.id, row)
        return rows, total

    async def queue_count(self, group_id: int, viewer_id: int | None) -> int:
        """The red dot: how many submissions wait in the group's subtree (one statement, shared by the counts
        asked at the same moment)."""
        counted = self.counted.get((group_id, viewer_id))
        if counted is not None:
            return counted
        return await self.queue_counts.load((group_id, viewer_id))

    async def _queue_counts(self, keys: Sequence[tuple[int, int | None]]) -> list[int]:
        """(group, viewer) -> queue_count: one statement of one count per distinct pair."""
        pairs = list(dict.fromkeys(keys))
        found: dict[tuple[int, int | None], int] = {}
        if self.store.dialect == "postgresql":  # one text whatever the number of pairs (one prepared statement)
            params = {"groups": [g for g, _ in pairs], "viewers": [v or 0 for _, v in pairs]}
            for g, v, n in await self.store.rows(_queue_counts_statement(), params):  # lean outside a transaction
                found[(g, v or None)] = int(n)
            return [found.get(k, 0) for k in keys]
        for start in range(0, len(pairs), 200):
            chunk = pairs[start : start + 200]
            counts = [
                select(literal(n), func.count()).select_from(Submission).where(self._queue_filter(g, v))
                for n, (g, v) in enumerate(chunk)
            ]
            statement = union_all(*counts) if len(counts) > 1 else counts[0]
            for n, count in await self.store.all(statement):
                found[chunk[int(n)]] = int(count)
        return [found.get(k, 0) for k in keys]

    async def latest_on_step(self, user_id: int, step_id: int) -> Submission | None:
        """The learner's latest submission on a step (ingestion announces the step, not the new row's id)."""
        row = await self.latest_on_steps.load((user_id, step_id))
        if row is not None:
            self.by_id.prime(row.id, row)
        return row

    async def _latest_on_steps(self, keys: Sequence[tuple[int, int]]) -> list[Submission | None]:
        """(learner, step) -> the latest submission: one statement for the batch (the learners' submissions on
        those steps, newest first; the first of each pair wins)."""
        users, steps = sorted({u for u, _ in keys}), sorted({s for _, s in keys})
        if self.store.dialect == "postgresql":
            rows = await self.store.scalars(_LATEST_ON_STEPS, {"users": users, "steps": steps})
        else:
            rows = await self.store.scalars(
                select(Submission).where(Submission.user_id.in_(users), Submission.step_id.in_(steps)).order_by(*_NEWEST)
            )
        latest: dict[tuple[int, int], Submission] = {}
        for row in rows:
            latest.setdefault((row.user_id, row.step_id), row)
        return [latest.get(k) for k in keys]


_NEWEST = (Submission.submitted_at.desc(), Submission.id.desc())
# PostgreSQL: the learners' submissions on the steps, newest first (parameters `users` and `steps`, arrays),
# built once: a statement built per call cost SQLAlchemy more than its round trip
_LATEST_ON_STEPS = (
    select(Submission)
    .where(ids_in(Submission.user_id, True, "users"), ids_in(Submission.step_id, True, "steps"))
    .order_by(*_NEWEST)
)


def red_dots(groups: Any, viewers: Any) -> Any:
    """PostgreSQL: the red dots of the (group, viewer) pairs of the arrays `groups` and `viewers`, as one array
    in their order (NULL for no pairs): a scalar subquery, for a statement that reads them along the way."""
    pairs = func.unnest(groups, viewers).table_valued("g", "v", with_ordinality="n").render_derived()
    count = select(func.count()).select_from(Submission).where(ReviewLoaders._queue_filter(pairs.c.g, pairs.c.v))
    return select(func.array_agg(aggregate_order_by(count.scalar_subquery(), pairs.c.n))).select_from(pairs).scalar_subquery()


@cache
def _queue_counts_statement() -> Any:
    """PostgreSQL: (group, viewer, count) for each pair of the arrays `groups` and `viewers` (0: no viewer),
    built once."""
    asked = select(
        func.unnest(bindparam("groups", type_=ARRAY(Integer))).label("g"),
        func.unnest(bindparam("viewers", type_=ARRAY(Integer))).label("v"),
    ).subquery("asked")
    count = select(func.count()).select_from(Submission).where(ReviewLoaders._queue_filter(asked.c.g, asked.c.v))
    return select(asked.c.g, asked.c.v, count.scalar_subquery())
