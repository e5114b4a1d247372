"""The per-request `Loaders`: one attribute per loader family."""

from __future__ import annotations

from dataloaders.consent import ConsentLoaders
from dataloaders.groups import GroupLoaders
from dataloaders.guardians import GuardianLoaders
from dataloaders.store import Store
from dataloaders.users import UserLoaders


class Loaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.users = UserLoaders(store)
        self.groups = GroupLoaders(store)
        self.consent = ConsentLoaders(store)
        self.guardians = GuardianLoaders(store)
