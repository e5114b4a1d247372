"""The course catalogue (courses with their steps), kept in memory per worker process and per database.

A request reads the one-row `catalogue_version` once (with the Reach, in the same statement; alone when the
request has no Reach); while that number is the one the process loaded the catalogue at, courses and steps come from memory.
Every write to `course` or `step`, from any process, raises the number (triggers of the migration), so the
next request in every worker reloads the catalogue (two statements). The number is read before the
catalogue: a write committed in between makes the next request reload again, never keeps stale rows.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import select
from strawberry.dataloader import DataLoader

from app.store.models import CatalogueVersion, Step
from dataloaders.batch import answered
from dataloaders.records import CourseRecord, CourseStepRecord, records
from dataloaders.store import Store


@dataclass(frozen=True)
class CourseBundle:
    """A course and its steps in position order (records, or ORM rows right after createCourse).
    `built`: what the layers above build from it once (resolvers.courses keeps its Course view there), which
    lives as long as this version of the catalogue."""

    course: Any
    steps: tuple[Any, ...]
    built: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Catalogue:
    version: int | None
    courses: dict[int, CourseBundle]
    steps: dict[int, Any]


_VERSION = select(CatalogueVersion.__table__.c.version).where(CatalogueVersion.__table__.c.id == 1)  # type: ignore[attr-defined]
_COURSES = select(*CourseRecord.columns)
_STEPS = select(*CourseStepRecord.columns).order_by(Step.__table__.c.course_id, Step.__table__.c.position)  # type: ignore[attr-defined]

# per Database object (tests run many databases in one process): the catalogue last loaded
_LOADED: WeakKeyDictionary[Any, Catalogue] = WeakKeyDictionary()


async def load_catalogue(store: Store) -> Catalogue:
    """The catalogue as of now: from memory when the version row says it has not changed."""
    if store.catalogue_version is not None and not store.write:  # read with the Reach, in this request
        version: int | None = store.catalogue_version
    else:
        version = await store.scalar(_VERSION)
    cached = _LOADED.get(store.database)
    if cached is not None and version is not None and cached.version == version:
        return cached
    courses = records(CourseRecord, await store.all(_COURSES))
    steps = records(CourseStepRecord, await store.all(_STEPS))
    by_course: dict[int, list[Any]] = defaultdict(list)
    for step in steps:
        by_course[step.course_id].append(step)
    catalogue = Catalogue(
        version, {c.id: CourseBundle(c, tuple(by_course.get(c.id, ()))) for c in courses}, {s.id: s for s in steps}
    )
    if version is not None and not store.write:  # a mutation's transaction may still roll back
        _LOADED[store.database] = catalogue
    return catalogue


def forget_catalogues() -> None:
    """Tests: behave as a fresh process."""
    _LOADED.clear()


class CourseLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._by_id)
        self.step_by_id = DataLoader(load_fn=self._step_by_id)
        self._catalogue: Catalogue | None = None
        self._lock = asyncio.Lock()

    async def catalogue(self) -> Catalogue:
        """Checked once per request."""
        if self._catalogue is None:
            async with self._lock:
                if self._catalogue is None:
                    self._catalogue = await load_catalogue(self.store)
        return self._catalogue

    async def _by_id(self, ids: Sequence[int]) -> list[CourseBundle | None]:
        courses = (await self.catalogue()).courses
        return [courses.get(i) for i in ids]

    async def _step_by_id(self, ids: Sequence[int]) -> list[Any]:
        steps = (await self.catalogue()).steps
        return [steps.get(i) for i in ids]

    def at_hand(self, ids: Sequence[int]) -> list[CourseBundle | None] | None:
        """The courses, once this request has its catalogue, without a turn of the event loop (a loader's batch
        takes one): primed ones (a course created in this request) first. None before the catalogue is read or
        while a load of one of them is under way."""
        if self._catalogue is None:
            return None
        found: list[CourseBundle | None] = []
        for course_id in ids:
            future = self.by_id.cache_map.get(course_id)
            if future is None:
                found.append(self._catalogue.courses.get(course_id))
            elif answered(future):
                found.append(future.result())
            else:
                return None
        return found

    def prime(self, bundles: Sequence[CourseBundle]) -> None:
        for bundle in bundles:
            self.by_id.prime(bundle.course.id, bundle)
            for step in bundle.steps:
                self.step_by_id.prime(step.id, step)
