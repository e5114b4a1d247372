"""Values remembered per operation: keyed by objects' identity (a cached document, a schema) and a hashable
rest, the newest `size` kept. An entry holds its objects, so no other object can take their ids meanwhile."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class IdentityMemo(Generic[T]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[tuple[int, ...], Hashable], tuple[tuple[object, ...], T]] = OrderedDict()

    def get(self, objects: tuple[object, ...], rest: Hashable) -> T | None:
        key = (tuple(map(id, objects)), rest)
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, objects: tuple[object, ...], rest: Hashable, value: T) -> T:
        self._entries[(tuple(map(id, objects)), rest)] = (objects, value)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value
