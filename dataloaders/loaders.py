"""The per-request `Loaders`: one attribute per loader family."""

from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from dataloaders.consent import ConsentLoaders
from dataloaders.courses import CourseLoaders
from dataloaders.groups import GroupLoaders
from dataloaders.guardians import GuardianLoaders
from dataloaders.memberships import MembershipLoaders
from dataloaders.progress import ProgressLoaders
from dataloaders.reviews import ReviewLoaders
from dataloaders.store import Store
from dataloaders.users import UserLoaders


class Loaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.users = UserLoaders(store)
        self.groups = GroupLoaders(store)
        self.consent = ConsentLoaders(store)
        self.guardians = GuardianLoaders(store)
        # member lists and counts, batched over groups
        self.memberships = MembershipLoaders(store, self.users, self.groups)

        self.courses = CourseLoaders(store)
        self.progress = ProgressLoaders(store, self.groups.rolled_up_summaries)
        self.reviews = ReviewLoaders(store)

    def forget(self) -> None:
        """Drops what the loaders hold, once the request's answer is written. A loader and its family refer to
        each other (its batch function is one of the family's methods), so what it holds (a members page: ~1,000
        records and cards) would wait for the cyclic collector, which walks it generation after generation."""
        for family in vars(self).values():
            for value in getattr(family, "__dict__", {}).values():
                for loader in value.values() if isinstance(value, dict) else (value,):
                    if isinstance(loader, DataLoader):
                        _forget(loader)
                        pages = getattr(loader, "_whole_pages", None)  # dataloaders.batch.load_all's companion
                        if isinstance(pages, DataLoader):
                            _forget(pages)


def _forget(loader: DataLoader[Any, Any]) -> None:
    """Its cache, and its last batch (whose futures hold what the batch function returned)."""
    loader.clear_all()
    loader.batch = None
