"""Whole-page loads through a DataLoader with one future per page, not one per key."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

K = TypeVar("K", bound=Hashable)


def _pages_of(loader: DataLoader[K, Any]) -> DataLoader[tuple[K, ...], list[Any]]:
    """A companion loader whose keys are whole pages of `loader`'s keys: the pages asked in the same tick
    (the member pages of every group of a dashboard) still make one call of `loader`'s batch function."""
    pages: DataLoader[tuple[K, ...], list[Any]] | None = getattr(loader, "_whole_pages", None)
    if pages is None:

        async def load(asked: Sequence[tuple[K, ...]]) -> list[list[Any]]:
            keys = list(dict.fromkeys(key for page in asked for key in page))
            values = dict(zip(keys, await loader.load_fn(keys), strict=True))
            return [[values[key] for key in page] for page in asked]

        pages = DataLoader(load_fn=load, cache=False)
        loader._whole_pages = pages  # type: ignore[attr-defined]
    return pages


async def load_all(loader: DataLoader[K, Any], keys: Sequence[K]) -> list[Any]:
    """What `loader.load_many(keys)` answers, for a list resolver holding a whole page of keys: the keys the
    request has loaded already come from the loader's cache, the others in one batch with the other pages
    asked at the same time (one statement, no future and no gather per key), and are cached for the fields
    that ask later."""
    found: dict[K, Any] = {}
    missing: list[K] = []
    waiting: list[tuple[K, Any]] = []
    cache = loader.cache_map
    for key in dict.fromkeys(keys):
        future = cache.get(key)
        if future is None or future.cancelled():
            missing.append(key)
        elif not future.done():
            waiting.append((key, future))
        elif future.exception() is not None:
            missing.append(key)
        else:
            found[key] = future.result()
    if missing:
        for key, value in zip(missing, await _pages_of(loader).load(tuple(missing)), strict=True):
            if isinstance(value, BaseException):
                raise value
            found[key] = value
            loader.prime(key, value, force=True)
    for key, future in waiting:
        found[key] = await future
    return [found[key] for key in keys]
