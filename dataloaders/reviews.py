"""Submissions by id, pending-review counts per user, and the review queue of a group's subtree."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, select
from strawberry.dataloader import DataLoader

from app.store import keyset
from app.store.bulk import one_of
from app.store.keyset import Key, Window
from app.store.models import GroupClosure, Membership, Submission
from dataloaders.store import Store

NEEDS_REVIEW = "NEEDS_REVIEW"
REVIEWED = "REVIEWED"


QUEUE_ORDER = (Key(Submission.submitted_at), Key(Submission.id))


class ReviewLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._by_id)
        self.pending_count = DataLoader(load_fn=self._pending_count)

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

    def _queue_filter(self, group_id: int, viewer_id: int | None):  # type: ignore[no-untyped-def]
        """Waiting submissions of users with a (not consent-based) membership in the group's subtree, the
        viewer's own work left out."""
        members = (
            select(Membership.user_id)
            .join(GroupClosure, GroupClosure.descendant_id == Membership.group_id)
            .where(GroupClosure.ancestor_id == group_id, Membership.access_request_id.is_(None))
        )
        conditions = [Submission.status == NEEDS_REVIEW, Submission.user_id.in_(members)]
        if viewer_id is not None:
            conditions.append(Submission.user_id != viewer_id)
        return and_(*conditions)

    async def queue(self, group_id: int, viewer_id: int | None, window: Window) -> tuple[list[Submission], int]:
        """Oldest first, one keyset window over (submitted_at, id) in fetch order, and the total count."""
        condition = self._queue_filter(group_id, viewer_id)
        query = select(Submission).where(condition, *keyset.conditions(QUEUE_ORDER, window))
        rows = list(await self.store.scalars(query.order_by(*keyset.ordering(QUEUE_ORDER, window)).limit(window.fetch)))
        total = int(await self.store.scalar(select(func.count()).select_from(Submission).where(condition)))
        for row in rows:
            self.by_id.prime(row.id, row)
        return rows, total

    async def queue_count(self, group_id: int, viewer_id: int | None) -> int:
        """The red dot: how many submissions wait in the group's subtree (one statement)."""
        condition = self._queue_filter(group_id, viewer_id)
        return int(await self.store.scalar(select(func.count()).select_from(Submission).where(condition)))

    async def latest_on_step(self, user_id: int, step_id: int) -> Submission | None:
        """The learner's latest submission on a step (ingestion announces the step, not the new row's id)."""
        row = await self.store.scalar(
            select(Submission)
            .where(Submission.user_id == user_id, Submission.step_id == step_id)
            .order_by(Submission.submitted_at.desc(), Submission.id.desc())
            .limit(1)
        )
        if row is not None:
            self.by_id.prime(row.id, row)
        return row
