"""The per-request `Loaders`: one attribute per loader family."""

from __future__ import annotations

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
