"""Admission of GraphQL operations over HTTP: a bounded number run at once per worker, the rest wait first come
first served, and a live-update delivery under way is sent before waiting operations start."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from app.runtime.admission import Admission
from app.runtime.ids import require_id
from app.services.events import review_changed
from app.settings import Settings
from app.store.models import Submission
from tests.live import WAIT, Socket, until
from tests.site import Site, gid
from tests.test_live import RED_DOT, school


async def test_operations_past_the_limit_wait_first_come_first_served() -> None:
    gate = Admission(limit=2, hold_seconds=60)
    order: list[int] = []

    async def operation(n: int, leave: asyncio.Event) -> None:
        async with gate:
            order.append(n)
            await leave.wait()

    leaves = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.create_task(operation(n, leaves[n])) for n in range(5)]
    await until(lambda: gate.running == 2 and gate.waiting == 3)
    assert order == [0, 1]
    leaves[1].set()
    await until(lambda: order == [0, 1, 2])
    cancelled = tasks[3]
    cancelled.cancel()  # one that gives up waiting takes no place
    leaves[0].set()
    await until(lambda: order == [0, 1, 2, 4])
    assert gate.running == 2 and gate.waiting == 0
    leaves[2].set()
    leaves[4].set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert gate.running == 0


async def test_deliveries_under_way_hold_operations_not_yet_started() -> None:
    gate = Admission(limit=4, hold_seconds=60)
    async with gate:  # one running: it carries on whatever arrives
        gate.deliveries_begin(2)
        waiting = asyncio.create_task(gate.acquire())
        await until(lambda: gate.waiting == 1)
        gate.deliveries_end(1)
        await asyncio.sleep(0)
        assert not waiting.done() and gate.running == 1  # one delivery still on its way
        gate.deliveries_end(1)
        await asyncio.wait_for(waiting, WAIT)
        assert gate.running == 2
        gate.release()


async def test_deliveries_that_keep_the_gate_shut_do_not_starve_operations() -> None:
    gate = Admission(limit=4, hold_seconds=0.01)
    gate.deliveries_begin(1)  # and never ends
    await asyncio.wait_for(asyncio.gather(gate.acquire(), gate.acquire(), gate.acquire()), WAIT)
    assert gate.running == 3 and gate.outstanding == 1  # each went ahead once it had waited its hold
    no_precedence = Admission(limit=1, hold_seconds=0)
    no_precedence.deliveries_begin(5)
    await asyncio.wait_for(no_precedence.acquire(), WAIT)
    assert no_precedence.outstanding == 0


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [("http_concurrent_operations", 0, "at least 1"), ("http_concurrent_operations", -3, "at least 1"),
     ("live_delivery_precedence_seconds", -1, "between 0"), ("live_delivery_precedence_seconds", 600, "between 0")],
)
def test_bad_admission_settings_are_refused(setting: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{setting: value})
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0, 1.0)


class Watched(Socket):
    """A WebSocket that notes, as the server sends each message, how many operations run and wait."""

    def __init__(self, app: Any, gate: Admission) -> None:
        super().__init__(app)
        self.gate = gate
        self.seen: list[tuple[str, int, int]] = []

    async def _send(self, message: dict[str, Any]) -> None:
        self.seen.append((message.get("text") or "", self.gate.running, self.gate.waiting))
        await super()._send(message)


@pytest.mark.parametrize("settings_overrides", [{"http_concurrent_operations": 1, "live_delivery_precedence_seconds": 60}])
async def test_a_delivery_under_way_is_sent_before_waiting_operations_start(site: Site) -> None:
    room = await school(site)
    gate: Admission = site.app.state.broker.admission
    mentor = Watched(site.app, gate)
    await mentor.init(await site.token(room["mentor"]))
    mentor.subscribe("1", RED_DOT, {"g": gid("Group", room["class"])})
    assert (await mentor.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 0
    await site.token(room["admin"])

    await gate.acquire()  # an operation running: the only place
    queries = [asyncio.create_task(site.gql("{ viewer { firstName } }", as_user=room["admin"])) for _ in range(5)]
    await until(lambda: gate.waiting == 5, "five operations waiting")
    async with site.database.transaction() as session:  # a learner's submission, announced after its commit
        row = Submission(user_id=room["learner"].id, step_id=require_id(room["course"]["steps"][1]["id"], "Step", "step"),
                         course_id=require_id(room["course"]["id"], "Course", "course"), body="essay", status="NEEDS_REVIEW")
        session.add(row)
    await site.app.state.broker.publish([review_changed(room["learner"].id, row.id)])
    await until(lambda: gate.outstanding > 0, "the event heard")
    gate.release()  # the running operation ends while the delivery is on its way

    change = (await mentor.next("1"))["data"]["reviewQueueChanged"]
    assert change["pendingCount"] == 1 and change["submission"]["body"] == "essay"
    _, running, waiting = next(s for s in mentor.seen if '"essay"' in s[0])
    assert (running, waiting) == (0, 5)  # sent before any of them started
    answers = await asyncio.wait_for(asyncio.gather(*queries), WAIT)  # then they all run
    assert [a["data"]["viewer"]["firstName"] for a in answers] == ["Ada"] * 5
    assert gate.running == 0 and gate.waiting == 0 and gate.outstanding == 0
    metrics = (await site.client.get("/metrics")).text
    assert "groupgraph_http_admission_wait_seconds_bucket" in metrics
    await mentor.close()


async def test_a_subscriber_that_does_not_read_holds_no_request_back(site: Site) -> None:
    room = await school(site)
    gate: Admission = site.app.state.broker.admission
    mentor = Socket(site.app)
    await mentor.init(await site.token(room["mentor"]))
    mentor.subscribe("1", RED_DOT, {"g": gid("Group", room["class"])})
    assert (await mentor.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 0
    mentor.flowing.clear()  # its connection takes nothing more
    async with site.database.transaction() as session:
        row = Submission(user_id=room["learner"].id, step_id=require_id(room["course"]["steps"][1]["id"], "Step", "step"),
                         course_id=require_id(room["course"]["id"], "Course", "course"), body="essay", status="NEEDS_REVIEW")
        session.add(row)
    await site.app.state.broker.publish([review_changed(room["learner"].id, row.id)])
    await until(lambda: site.app.state.broker.batches >= 1 and gate.outstanding == 0, "the delivery no longer held")
    answer = await site.gql("{ viewer { firstName } }", as_user=room["admin"])
    assert answer == {"data": {"viewer": {"firstName": "Ada"}}}
    mentor.flowing.set()
    assert (await mentor.next("1"))["data"]["reviewQueueChanged"]["submission"]["body"] == "essay"  # still sent
    await mentor.close()
