"""Loaders answer what a request has already loaded or primed without waiting a turn of the event loop: under
load each turn waits behind everything else ready to run, and a live event's decision made four of them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.store.models import Course
from dataloaders.batch import Loader
from dataloaders.courses import CourseBundle, CourseLoaders
from dataloaders.store import Store
from tests.progress_helpers import course
from tests.site import Site


async def test_keys_loaded_or_primed_answer_at_once() -> None:
    asked: list[list[int]] = []

    async def load(keys: Sequence[int]) -> list[str]:
        asked.append(list(keys))
        return [f"row {k}" for k in keys]

    loader: Loader[int] = Loader(load)
    loader.prime(1, "primed 1")
    assert await loader.load(2) == "row 2"
    answered = loader.load_many([1, 2])
    assert isinstance(answered, asyncio.Future) and answered.done()  # nothing to wait for
    assert await answered == ["primed 1", "row 2"]
    pending = loader.load_many([2, 3])
    assert not pending.done()  # key 3 waits for the loader's batch, once
    assert await pending == ["row 2", "row 3"]
    assert asked == [[2], [3]]


async def test_courses_are_at_hand_once_the_catalogue_is_read(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    await course(site, admin, "Algebra", [("LESSON", None)])
    store = Store(site.database)
    try:
        courses = CourseLoaders(store)
        assert courses.at_hand([1]) is None  # the catalogue not read yet in this request
        catalogue = await courses.catalogue()
        (known,) = catalogue.courses
        assert courses.at_hand([known, 999_999]) == [catalogue.courses[known], None]
        made = CourseBundle(Course(id=999_999, name="Made in this request"), ())
        courses.prime([made])  # a course created in this request, not in the catalogue read before
        assert courses.at_hand([999_999]) == [made]
    finally:
        await store.close()
