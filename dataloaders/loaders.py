"""The per-request `Loaders`: one attribute per loader family."""

from __future__ import annotations

from dataloaders.groups import GroupLoaders
from dataloaders.guardians import GuardianLoaders
from dataloaders.store import Store
from dataloaders.users import UserLoaders


class Loaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.users = UserLoaders(store)
        self.groups = GroupLoaders(store)
        self.guardians = GuardianLoaders(store)
