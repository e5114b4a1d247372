"""Courses with their steps, by id: cached for the whole request (two statements per batch)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from strawberry.dataloader import DataLoader

from app.store.models import Course, Step
from dataloaders.store import Store


@dataclass(frozen=True)
class CourseBundle:
    """A course and its steps in position order."""

    course: Course
    steps: tuple[Step, ...]


class CourseLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._by_id)
        self.step_by_id = DataLoader(load_fn=self._step_by_id)

    async def _by_id(self, ids: Sequence[int]) -> list[CourseBundle | None]:
        wanted = list(set(ids))
        courses = await self.store.scalars(select(Course).where(Course.id.in_(wanted)))
        steps: dict[int, list[Step]] = defaultdict(list)
        if courses:
            for step in await self.store.scalars(
                select(Step).where(Step.course_id.in_([c.id for c in courses])).order_by(Step.course_id, Step.position)
            ):
                steps[step.course_id].append(step)
        found = {c.id: CourseBundle(c, tuple(steps.get(c.id, ()))) for c in courses}  # type: ignore[arg-type]
        return [found.get(i) for i in ids]

    async def _step_by_id(self, ids: Sequence[int]) -> list[Step | None]:
        rows = await self.store.scalars(select(Step).where(Step.id.in_(list(set(ids)))))
        found = {s.id: s for s in rows}
        return [found.get(i) for i in ids]

    def prime(self, bundles: Sequence[CourseBundle]) -> None:
        for bundle in bundles:
            self.by_id.prime(bundle.course.id, bundle)
