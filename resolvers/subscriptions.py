"""Live updates: reviewQueueChanged, accessRequestChanged and groupProgressChanged.

Subscribing is checked like a query (NOT_FOUND for a group the caller cannot see, FORBIDDEN without the
permission). Then every event is decided afresh: the token is authenticated again and the Reach reloaded
(for all the subscribers of a batch of events in one statement: app.services.events), the permission
checked again; when it is gone the subscription ends with UNAUTHENTICATED or FORBIDDEN. An event about
something the subscriber may not see is never sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.context import EventView, LiveContext
from app.runtime.errors import AppError, BadInput, Forbidden, LimitReached
from app.runtime.ids import require_id
from app.runtime.metrics import LIVE_DELIVERED, LIVE_DELIVERY, LIVE_ENDED, LIVE_SUBSCRIPTIONS
from app.services.events import ACCESS, PROGRESS, REACH, RESYNC, REVIEW, TOO_MANY_SUBSCRIPTIONS
from app.services.viewers import Viewer
from dataloaders.loaders import Loaders
from dataloaders.progress import CARD_COMPLETED, CARD_COURSE
from permissions.classes import Subjects, authenticated, requires
from permissions.reach import Permission
from resolvers.consent import AccessRequest, visible_access_request
from resolvers.courses import Course, course_views
from resolvers.progress import percent
from resolvers.reviews import Submission, visible_submission
from resolvers.views import (
    GroupType,
    GroupView,
    UserType,
    require_visible_group,
    visible_group,
    visible_users,
)


@strawberry.type(description="A change to a group's review queue, and the red dot as it is now.")
class ReviewQueueChange:
    group: GroupType = strawberry.field(description="The group followed.")
    pending_count: int = strawberry.field(description="Submissions now waiting in the group's subtree (the red dot).")
    submission: Submission | None = strawberry.field(
        description="The submission that arrived or was graded; null on the first event (the count when "
        "subscribing) and after a reconnection of the server's event feed."
    )


@strawberry.type(description="Progress a member of the group (its subtree) made.")
class GroupProgressChange:
    user: UserType = strawberry.field(description="The member who made progress.")
    course: Course = strawberry.field(description="The course they made progress in.")
    percent_completed: float = strawberry.field(description="The member's share of the course's steps completed now, 0..100.")
    occurred_at: datetime = strawberry.field(description="When the progress was recorded.")


def _live(info: Info) -> LiveContext:
    context = info.context
    if not isinstance(context, LiveContext):
        raise BadInput("Subscriptions run over a WebSocket (graphql-transport-ws) or an SSE stream at /graphql.")
    return context


async def _group_argument(info: Info, kwargs: dict[str, Any]) -> Subjects:
    return Subjects(groups=[(await require_visible_group(info, kwargs["group_id"], "groupId")).row.id])  # type: ignore[list-item]


async def _still_allowed(info: Info, group_id: int, permission: Permission) -> GroupView:
    """With the event's fresh Reach: the group, or FORBIDDEN when the subscriber lost it."""
    group = await visible_group(info, group_id)
    reach = await info.context.load_reach()
    if group is None or not reach.may_on_group(permission, group_id):
        raise Forbidden("You no longer have permission to follow this group.")
    return group


Check = Callable[[Any], Awaitable[Any]]
Build = Callable[[Any, dict[str, Any] | None], Awaitable[Any]]


class _EventInfo:
    """What check and build read of `info` while the broker decides a batch: the subscriber's EventView."""

    __slots__ = ("context",)

    def __init__(self, context: EventView) -> None:
        self.context = context


async def _stream(
    info: Info, field: str, kind: str, key: int | None, check: Check, build: Build, snapshot: bool = False,
) -> AsyncGenerator[Any, None]:
    """The loop every subscription shares: register, then for each event re-check and build (None: nothing
    this subscriber may see, nothing sent) with the subscriber's sign-in and Reach read afresh, and yield; end
    on the first refusal. Events are decided in the broker's batches (`decide`, on the batch's shared
    loaders); one the batch could not decide, and the re-check on the timer, renew the scope and decide
    alone, as a new operation would."""
    live = _live(info)
    cap = live.settings.live_max_subscriptions_per_connection
    if live.subscriptions >= cap:
        raise LimitReached(TOO_MANY_SUBSCRIPTIONS, f"At most {cap} subscriptions per connection.", limit=cap)
    user_id: int = live.viewer_id  # type: ignore[assignment]

    async def decide(viewer: Viewer, loaders: Loaders, event: dict[str, Any]) -> Any:
        event_info = _EventInfo(live.event_view(viewer, loaders))
        await check(event_info)
        if event["k"] == REACH or (event["k"] == RESYNC and not snapshot):
            return None  # a re-check only
        return await build(event_info, None if event["k"] == RESYNC else event)

    subscriber = await live.broker.open(kind, key if key is not None else user_id, user_id, live.token, decide)
    live.subscriptions += 1
    LIVE_SUBSCRIPTIONS.labels(field=field).inc()
    try:
        if snapshot:
            live.event_published_at = None
            yield await build(info, None)
            _sent_on_a_stream(live, field, None)
        while True:
            await live.end_scope()  # no database connection is held while waiting
            delivery = decided = payload = None  # nor the last event's objects (a few kB each, per subscription)
            delivery = await subscriber.next(live.settings.live_recheck_seconds)
            try:
                if subscriber.stopped:
                    return  # the worker is stopping: the stream completes rather than being cut
                decided = await delivery.decision() if delivery is not None else None
                if decided is not None:
                    live.adopt(decided.viewer)  # what the result's fields read: this event's sign-in and Reach
                    if decided.error is not None:
                        raise decided.error
                    payload = decided.value
                else:
                    await live.renew(for_event=True)
                    await check(info)
                    event = delivery.event if delivery is not None else None
                    if event is None or event["k"] == REACH or (event["k"] == RESYNC and not snapshot):
                        continue  # a re-check only
                    payload = await build(info, None if event["k"] == RESYNC else event)
                if payload is None:
                    continue
                published = live.event_published_at = delivery.event.get("at")  # type: ignore[union-attr]
                yield payload  # resumed once the event is sent
                _sent_on_a_stream(live, field, published)
            finally:
                if delivery is not None:
                    delivery.finish()  # requests waiting for admission need not wait for it any more
    except AppError as error:
        LIVE_ENDED.labels(code=error.code).inc()
        raise
    finally:
        live.broker.close(subscriber)
        live.subscriptions -= 1
        LIVE_SUBSCRIPTIONS.labels(field=field).dec()
        await live.end_scope()


def _sent_on_a_stream(live: LiveContext, field: str, published: float | None) -> None:
    """An SSE stream asks for the next event once it has sent this one: count it as the WebSocket handler
    counts what it sends (app.http.live)."""
    if live.websocket:
        return
    LIVE_DELIVERED.labels(field=field).inc()
    if published:
        LIVE_DELIVERY.observe(max(0.0, time.time() - published))


GroupArgument = Annotated[strawberry.ID, strawberry.argument(description="The group to follow (with its subtree).")]


@strawberry.type(
    name="Subscription",
    description="Live updates over WebSocket (graphql-transport-ws) at /graphql. Every event is checked against the\n"
    "subscriber's current permissions; a subscription whose permission is gone ends with an error.",
)
class LiveSubscriptions:
    @strawberry.subscription(
        extensions=[requires(Permission.REVIEW_WORK, target=_group_argument)],
        description="The group's review queue (its subtree) changed: a submission arrived or was graded. The "
        "first event is the queue as it is when subscribing (submission null). Ends with FORBIDDEN when the "
        "caller may no longer review there, UNAUTHENTICATED when the sign-in ends.",
    )
    async def review_queue_changed(self, info: Info, group_id: GroupArgument) -> AsyncGenerator[ReviewQueueChange, None]:
        database_id = require_id(group_id, "Group", "groupId")

        async def check(info: Any) -> None:
            await _still_allowed(info, database_id, Permission.REVIEW_WORK)

        async def build(info: Any, event: dict[str, Any] | None) -> ReviewQueueChange | None:
            group = await _still_allowed(info, database_id, Permission.REVIEW_WORK)
            submission = None
            if event is not None:
                submission_id = event.get("s")
                if submission_id is None and event.get("st") is not None:
                    row = await info.context.loaders.reviews.latest_on_step(int(event["u"]), int(event["st"]))
                    submission_id = row.id if row is not None else None
                submission = await visible_submission(info, int(submission_id)) if submission_id else None
                if submission is None:
                    return None  # nothing this subscriber may see
            count = await info.context.loaders.reviews.queue_count(database_id, info.context.viewer_id)
            return ReviewQueueChange(group=group, pending_count=count, submission=submission)  # type: ignore[arg-type]

        async with aclosing(_stream(info, "reviewQueueChanged", REVIEW, database_id, check, build, snapshot=True)) as changes:
            async for change in changes:
                yield change

    @strawberry.subscription(
        extensions=[authenticated()],
        description="A request to the caller arrived or changed, or one of the caller's requests was answered "
        "(or revoked). Ends with UNAUTHENTICATED when the sign-in ends.",
    )
    async def access_request_changed(self, info: Info) -> AsyncGenerator[AccessRequest, None]:
        async def check(info: Any) -> None:
            if info.context.viewer is None:
                raise Forbidden("Sign in first.")

        async def build(info: Any, event: dict[str, Any] | None) -> AccessRequest | None:
            if event is None:
                return None
            return await visible_access_request(info, int(event["r"]))

        async with aclosing(_stream(info, "accessRequestChanged", ACCESS, None, check, build)) as changes:
            async for change in changes:
                yield change

    @strawberry.subscription(
        extensions=[requires(Permission.VIEW_PROGRESS, target=_group_argument)],
        description="A member of the group (its subtree) made progress. Ends with FORBIDDEN when the caller may "
        "no longer see the group's progress, UNAUTHENTICATED when the sign-in ends.",
    )
    async def group_progress_changed(
        self, info: Info, group_id: GroupArgument
    ) -> AsyncGenerator[GroupProgressChange, None]:
        database_id = require_id(group_id, "Group", "groupId")

        async def check(info: Any) -> None:
            await _still_allowed(info, database_id, Permission.VIEW_PROGRESS)

        async def build(info: Any, event: dict[str, Any] | None) -> GroupProgressChange | None:
            if event is None:
                return None
            user_id, course_id = int(event["u"]), int(event["c"])
            user = (await visible_users(info, [user_id], Permission.VIEW_PROGRESS))[0]
            if user is None:
                return None
            cards = await info.context.loaders.progress.cards.load(user_id)
            card = next((c for c in cards if c[CARD_COURSE] == course_id), None)
            course = (await course_views(info, [course_id])).get(course_id)
            if card is None or course is None:
                return None
            return GroupProgressChange(
                user=user, course=course, percent_completed=percent(card[CARD_COMPLETED], course.step_count),
                occurred_at=datetime.fromtimestamp(float(event.get("at") or 0), UTC),
            )

        async with aclosing(_stream(info, "groupProgressChanged", PROGRESS, database_id, check, build)) as changes:
            async for change in changes:
                yield change
