"""Users by id, and the groups each user belongs to (for "over" decisions)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from strawberry.dataloader import DataLoader

from app.models import Membership, User
from dataloaders.store import Store


class UserLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._users_by_id)
        self.group_ids = DataLoader(load_fn=self._group_ids_by_user)

    async def _users_by_id(self, ids: Sequence[int]) -> list[User | None]:
        rows = await self.store.scalars(select(User).where(User.id.in_(list(set(ids)))))
        found = {u.id: u for u in rows}
        return [found.get(i) for i in ids]

    async def _group_ids_by_user(self, ids: Sequence[int]) -> list[frozenset[int]]:
        """Groups of each user's own memberships; consent-based ones give nobody reach over the user."""
        rows = await self.store.all(
            select(Membership.user_id, Membership.group_id).where(
                Membership.user_id.in_(list(set(ids))), Membership.access_request_id.is_(None)
            )
        )
        groups: dict[int, set[int]] = defaultdict(set)
        for user_id, group_id in rows:
            groups[user_id].add(group_id)
        return [frozenset(groups.get(i, ())) for i in ids]

    async def many(self, ids: Sequence[int]) -> list[User | None]:
        return list(await self.by_id.load_many(list(ids)))

    def prime(self, users: Sequence[User]) -> None:
        for user in users:
            self.by_id.prime(user.id, user)
