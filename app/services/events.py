"""Live updates: the events mutations publish, and the broker that hands them to subscriptions.

An event is a small dict of ids (`{"k": kind, ...}`), never personal data. A mutation publishes with
`store.publish(event)` inside its transaction; the Store hands the events over after the commit (never
after a rollback). On PostgreSQL every worker keeps ONE asyncpg connection that LISTENs on one channel and
also sends the NOTIFYs (batched), so a subscription on any worker, on any host, hears a mutation handled
anywhere; on SQLite (one process) the broker passes events in-process through the same dispatcher.

Routing to subscriptions happens once per worker, not per subscriber: by user (access requests, changes
of someone's permissions), or for review and progress events by every group whose subtree holds the
learner (one query per batch of events, run only while this worker has such subscriptions). Each
subscription has a bounded queue; one that falls further behind is ended (SUBSCRIBER_TOO_SLOW) rather
than allowed to grow.

The events of one routing are decided together, as a batch: every subscriber's sign-in and Reach are read
afresh in one statement (app.services.viewers), then each subscription decides each of its events for
itself (its `decide`: the permission re-checked on its own Reach, what it may see built) over loaders the
batch shares, which hold data only, never a decision. So an event's submission, learner and course are
read once for all its subscribers, and a batch costs the same few statements for one subscriber or a
thousand. What a batch cannot decide (an unexpected error) the subscription decides alone, as a new
operation would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, Integer, and_, bindparam, null, select
from sqlalchemy import event as sql_event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.runtime.admission import Admission
from app.runtime.errors import AppError, LimitReached, Unauthenticated
from app.runtime.lifecycle import stopping
from app.runtime.logs import log
from app.runtime.metrics import LIVE_PUBLISHED, LIVE_RECEIVED
from app.services.viewers import Viewer, viewers_now
from app.settings import Settings
from app.store import instants
from app.store.db import Database
from app.store.models import Group, GroupClosure, Membership, Submission, User
from dataloaders.loaders import Loaders
from dataloaders.records import GroupRecord, SubmissionRecord, UserRecord, columns_as_read, ids_in
from dataloaders.reviews import red_dots
from dataloaders.store import Store
from dataloaders.users import own_groups_of

REVIEW = "review"  # a submission arrived or was graded: {"u": submitter, "s": submission?, "st": step?, "g": groups?}
PROGRESS = "progress"  # a learner made progress in a course: {"u": learner, "c": course, "g": groups?}
ACCESS = "access"  # an access request changed: {"r": request, "u": [requester, subject?]}
REACH = "reach"  # someone's permissions or credentials changed: {"u": [users]}: re-check at once
RESYNC = "resync"  # the LISTEN connection came back after a gap: events may have been missed

TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
SUBSCRIBER_TOO_SLOW = "SUBSCRIBER_TOO_SLOW"
USERS_PER_EVENT = 500  # a NOTIFY payload holds at most 8000 bytes
GROUPS_PER_EVENT = 200  # the learner's groups a review or progress event carries at most (else none)
SIGN_IN_ENDED = "The sign-in ended (signed out, token revoked or expired, or account not active)."


def _with_groups(event: dict[str, Any], groups: Iterable[int] | None) -> dict[str, Any]:
    """`groups`: every group whose subtree held the learner when the change was made (consent or not), as the
    publisher read them; at most GROUPS_PER_EVENT go with the event. A worker none of whose subscriptions
    follows one of them routes the event to nobody without a statement; the others route it as always, on the
    memberships as they are then."""
    if groups is not None:
        listed = sorted(set(groups))
        if len(listed) <= GROUPS_PER_EVENT:
            event["g"] = listed
    return event


def review_changed(
    user_id: int, submission_id: int | None = None, step_id: int | None = None, groups: Iterable[int] | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {"k": REVIEW, "u": user_id}
    if submission_id is not None:
        event["s"] = submission_id
    if step_id is not None:
        event["st"] = step_id
    return _with_groups(event, groups)


def progress_changed(user_id: int, course_id: int, groups: Iterable[int] | None = None) -> dict[str, Any]:
    return _with_groups({"k": PROGRESS, "u": user_id, "c": course_id}, groups)


def access_request_changed(request_id: int, user_ids: Iterable[int | None]) -> dict[str, Any]:
    return {"k": ACCESS, "r": request_id, "u": sorted({u for u in user_ids if u is not None})}


def reach_changed(user_ids: Iterable[int | None]) -> dict[str, Any]:
    """Someone lost (or may have lost) a permission, a membership or a credential: their subscriptions
    re-check now instead of at their next event."""
    return {"k": REACH, "u": sorted({u for u in user_ids if u is not None})}


# How a subscription decides one event for itself, given its sign-in and Reach as just read and the batch's
# loaders (data only, shared by the batch; every decision rests on the subscriber's own Reach): what to send,
# None for nothing, or an AppError that ends the subscription.
Decide = Callable[[Viewer, Loaders, dict[str, Any]], Awaitable[Any]]


@dataclass(eq=False, slots=True)
class Decided:
    """A subscriber's decision about one event: the sign-in and Reach it rests on, and what to send (None:
    nothing) or the error that ends the subscription."""

    viewer: Viewer
    value: Any = None
    error: BaseException | None = None


class _Batch:
    """The events that one routing handed out, decided together; subscribers wait for `done`."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = asyncio.Event()


@dataclass(eq=False, slots=True)
class Delivery:
    """One event in one subscriber's queue, and the decision its batch makes about it (None until made, or
    when the batch could not decide it: the subscription then decides alone, as for a new operation)."""

    subscriber: Subscriber
    event: dict[str, Any]
    batch: _Batch | None = None
    decided: Decided | None = None
    gate: Admission | None = None  # counts this delivery as outstanding until `finish`

    def finish(self) -> None:
        """Sent, or nothing to send, or dropped: operations over HTTP need no longer wait for it."""
        if self.gate is not None:
            self.gate.deliveries_end(1)
            self.gate = None

    async def decision(self) -> Decided | None:
        if self.batch is not None:
            await self.batch.done.wait()
            self.batch = None
        return self.decided


@dataclass(eq=False, slots=True)
class Subscriber:
    """One subscription's place in the broker: what it listens to, its bounded queue of deliveries, and how it
    decides. The queue is a deque made when something waits in it and a future while the subscription waits
    (an asyncio.Queue per subscription cost ~3 kB more, for a thousand subscribers 3 MB)."""

    kind: str  # REVIEW, PROGRESS (key: a group id) or ACCESS (key: the user id)
    key: int
    user_id: int
    limit: int  # deliveries waiting at most; one more ends the subscription (SUBSCRIBER_TOO_SLOW)
    token: str | None = None
    decide: Decide | None = None
    too_slow: bool = False
    closed: bool = False
    stopped: bool = False  # the worker is stopping: the subscription ends (complete), as a stream of its own would
    waiting: deque[Delivery] | None = None
    wakeup: asyncio.Future[None] | None = None

    def stop(self) -> None:
        self.stopped = True
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def offer(self, delivery: Delivery) -> bool:
        """Queue a delivery; False (and too slow from now on) when the queue is full."""
        if self.waiting is None:
            self.waiting = deque()
        if len(self.waiting) >= self.limit:
            self.too_slow = True  # ended with SUBSCRIBER_TOO_SLOW when it next looks
            return False
        self.waiting.append(delivery)
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)
        return True

    async def next(self, wait: float | None) -> Delivery | None:
        """The next event; None when `wait` seconds pass first (time to re-check anyway)."""
        if self.too_slow:
            raise LimitReached(
                SUBSCRIBER_TOO_SLOW, "Events came faster than this subscription took them; subscribe again."
            )
        if self.stopped:
            return None
        if not self.waiting:
            self.wakeup = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.wakeup, wait)
            except TimeoutError:
                return None
            finally:
                self.wakeup = None
        if self.stopped:
            return None
        delivery = self.waiting.popleft()  # type: ignore[union-attr]
        if not self.waiting:
            self.waiting = None
        return delivery


@dataclass
class _Outgoing:
    payloads: list[str]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class _EventStore(Store):
    """The store a batch of events is routed and decided through. On PostgreSQL it reads without a
    transaction of its own (no BEGIN and ROLLBACK round trips): each statement sees the database as it is
    when it runs, as each statement of a READ COMMITTED transaction does anyway."""

    def __init__(self, database: Database, engine: Any) -> None:
        super().__init__(database)
        self._engine = engine

    def _get(self) -> AsyncSession:
        if self._session is None and self._engine is not None and not getattr(self, "_closed", False):
            self._session = AsyncSession(self._engine, expire_on_commit=False)
        return super()._get()


class Broker:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.channel = settings.live_channel
        self.postgres = not database.is_sqlite
        self._by_key: dict[tuple[str, int], set[Subscriber]] = defaultdict(set)
        self._by_user: dict[int, set[Subscriber]] = defaultdict(set)
        self._per_kind: Counter[str] = Counter()
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._stop_watch: asyncio.Task[None] | None = None
        self._outbox: list[_Outgoing] = []
        self._sender: asyncio.Task[None] | None = None
        self._connection: Any = None  # asyncpg.Connection, LISTENing
        self._connect_lock = asyncio.Lock()
        self._closed = False
        self.received = 0
        self.batches = 0  # batches decided (tests wait on it)
        # batches of events decided at once (each holds one pooled connection while it is decided)
        self.deliveries = asyncio.Semaphore(max(1, settings.live_concurrent_deliveries))
        # GraphQL operations over HTTP wait here (app.http.graphql_view): deliveries go first
        self.admission = Admission(settings.http_concurrent_operations, settings.live_delivery_precedence_seconds)
        self._deciding: set[asyncio.Task[None]] = set()
        # PostgreSQL: the batches read through connections of their own (one per slot, kept open), outside a
        # transaction and without the pool's ping: a batch costs its statements' round trips and no more. A
        # connection that died fails one batch, whose subscriptions then decide alone; the next gets a new one.
        self._reading: AsyncEngine | None = None
        if not database.is_sqlite:
            self._reading = create_async_engine(
                database.url, pool_size=max(1, settings.live_concurrent_deliveries), max_overflow=0,
                isolation_level="AUTOCOMMIT",
            )
            instants.decode_once(self._reading)
            sql_event.listen(self._reading.sync_engine, "before_cursor_execute", database.counter)

    # --- subscriptions -----------------------------------------------------------------------------------

    async def open(
        self, kind: str, key: int, user_id: int, token: str | None = None, decide: Decide | None = None
    ) -> Subscriber:
        """Register a subscription; the LISTEN is in place when this returns, so nothing committed after it
        is missed. With its `token` and `decide`, its events are decided in the broker's batches.
        TOO_MANY_SUBSCRIPTIONS past the per-user cap (per worker)."""
        cap = self.settings.live_max_subscriptions_per_user
        if len(self._by_user[user_id]) >= cap:
            raise LimitReached(
                TOO_MANY_SUBSCRIPTIONS, f"At most {cap} subscriptions per user at a time.", limit=cap
            )
        await self._start()
        subscriber = Subscriber(kind, key, user_id, self.settings.live_queue_size, token, decide)
        if stopping().is_set():
            subscriber.stopped = True
        self._by_key[(kind, key)].add(subscriber)
        self._by_user[user_id].add(subscriber)
        self._per_kind[kind] += 1
        return subscriber

    def close(self, subscriber: Subscriber) -> None:
        if subscriber.closed:
            return
        subscriber.closed = True
        self._by_key[(subscriber.kind, subscriber.key)].discard(subscriber)
        if not self._by_key[(subscriber.kind, subscriber.key)]:
            del self._by_key[(subscriber.kind, subscriber.key)]
        self._by_user[subscriber.user_id].discard(subscriber)
        if not self._by_user[subscriber.user_id]:
            del self._by_user[subscriber.user_id]
        self._per_kind[subscriber.kind] -= 1
        for delivery in subscriber.waiting or ():
            delivery.finish()
        subscriber.waiting = None

    @property
    def subscriber_count(self) -> int:
        return sum(self._per_kind.values())

    # --- publishing ----------------------------------------------------------------------------------------

    async def publish(self, events: list[dict[str, Any]]) -> None:
        """After a commit (Database.after_commit): to every worker. Never raises: the change is committed;
        a failure to announce it is logged (subscribers re-check on their own timer)."""
        now = round(time.time(), 4)
        stamped: list[dict[str, Any]] = []
        for event in events:
            users = event.get("u")
            if isinstance(users, list) and len(users) > USERS_PER_EVENT:
                for start in range(0, len(users), USERS_PER_EVENT):
                    stamped.append({**event, "u": users[start : start + USERS_PER_EVENT], "at": now})
            else:
                stamped.append({**event, "at": now})
        for event in stamped:
            LIVE_PUBLISHED.labels(kind=event["k"]).inc()
        if not self.postgres:
            await self._start()
            for event in stamped:
                self._enqueue(event)
            return
        outgoing = _Outgoing([json.dumps(e, separators=(",", ":")) for e in stamped])
        self._outbox.append(outgoing)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
        try:
            await asyncio.wait_for(asyncio.shield(outgoing.done), 10)
        except Exception as exc:  # logged, never raised: the mutation has committed
            log.warning("live_publish_failed", error=type(exc).__name__)

    async def _send(self) -> None:
        """NOTIFY everything queued, one statement per round: a burst of commits becomes a few round trips."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            payloads = [p for o in batch for p in o.payloads]
            try:
                connection = await self._connect()
                await connection.execute(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", self.channel, payloads
                )
            except Exception as exc:  # the next batch tries a new connection
                log.warning("live_notify_failed", error=type(exc).__name__, events=len(payloads))
                await self._drop_connection()
                for o in batch:
                    if not o.done.done():
                        o.done.set_exception(exc)
                continue
            for o in batch:
                if not o.done.done():
                    o.done.set_result(None)

    # --- the listening side ----------------------------------------------------------------------------------

    async def warm(self) -> None:
        """At start-up: connect now rather than on the first event (a failure is logged and retried later)."""
        try:
            await self._start()
        except Exception as exc:  # the database may come up after the app
            log.warning("live_listen_unavailable", error=type(exc).__name__)

    async def _start(self) -> None:
        if self._closed:
            raise RuntimeError("the broker is closed")
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        if self._stop_watch is None or self._stop_watch.done():
            self._stop_watch = asyncio.create_task(self._end_on_stop())
        if self.postgres:
            await self._connect()

    def _dsn(self) -> str:
        url = make_url(self.database.url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def _connect(self) -> Any:
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        async with self._connect_lock:
            if self._connection is not None and not self._connection.is_closed():
                return self._connection
            import asyncpg

            connection = await asyncpg.connect(self._dsn())
            await connection.add_listener(self.channel, self._heard)
            connection.add_termination_listener(self._lost)
            had_one = self._connection is not None
            self._connection = connection
            if had_one:  # events may have gone by while there was no LISTEN
                self._enqueue({"k": RESYNC, "at": round(time.time(), 4)})
            return connection

    def _heard(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if isinstance(event, dict) and "k" in event:
            self._enqueue(event)

    def _enqueue(self, event: dict[str, Any]) -> None:
        """An event heard: operations over HTTP not yet started wait until it is routed (and then until what
        it was routed to is sent), while this worker has subscriptions. A review or progress event that names
        the learner's groups, none of which a subscription here follows, is routed to nobody at once."""
        groups = event.get("g")
        if isinstance(groups, list) and event["k"] in (REVIEW, PROGRESS):
            kind = event["k"]
            if not any((kind, group) in self._by_key for group in groups):
                self._count_received(event)
                return
        self._incoming.put_nowait(event)
        if self.subscriber_count:
            self.admission.deliveries_begin(1)
            event["_held"] = True

    def _lost(self, _connection: Any) -> None:
        if self._closed or not self.subscriber_count:
            return
        log.warning("live_listen_lost")
        asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.5
        while not self._closed and self.subscriber_count:
            try:
                await self._connect()
                return
            except Exception as exc:  # the database is away: try again, more slowly
                log.warning("live_listen_reconnect_failed", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15)

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    async def _end_on_stop(self) -> None:
        """When the worker stops (app.runtime.lifecycle), every subscription ends at once and cleanly (an SSE
        stream sends `complete` rather than being cut after the grace period)."""
        await stopping().wait()
        for subscribers in list(self._by_user.values()):
            for subscriber in list(subscribers):
                subscriber.stop()

    async def _dispatch(self) -> None:
        """Route what arrived, a batch at a time. At most `deliveries` batches are decided at once: while they
        are, what arrives meanwhile waits and makes the next batch (a burst costs a few batches, not an
        event each)."""
        while True:
            batch = [await self._incoming.get()]
            await self.deliveries.acquire()
            while not self._incoming.empty() and len(batch) < 1000:
                batch.append(self._incoming.get_nowait())
            store = _EventStore(self.database, self._reading)
            loaders = Loaders(store)  # shared by the batch: data only, never a decision
            group = _Batch()
            deliveries: list[Delivery] = []
            try:
                await self._route(batch, loaders, group, deliveries)
            except Exception as exc:  # one bad batch must not stop live updates
                log.error("live_dispatch_failed", error=type(exc).__name__, exc_info=exc)
            finally:  # the events are routed: what they were handed to is now outstanding instead
                self.admission.deliveries_end(sum(1 for e in batch if e.pop("_held", False)))
            if deliveries and self.admission.hold_seconds > 0:  # a subscriber that does not read holds no one back
                asyncio.get_running_loop().call_later(self.admission.hold_seconds, _finish_all, deliveries)
            if deliveries:  # what was handed out is decided even when routing failed half way
                task = asyncio.create_task(self._decide(group, deliveries, loaders))
                self._deciding.add(task)
                task.add_done_callback(self._deciding.discard)
            else:
                group.done.set()
                self.deliveries.release()
                await store.close()

    def _count_received(self, event: dict[str, Any]) -> None:
        """An event counted as received (routed, or dropped at once by `_enqueue`)."""
        self.received += 1
        LIVE_RECEIVED.labels(kind=str(event.get("k"))[:16]).inc()

    async def _route(self, batch: list[dict[str, Any]], loaders: Loaders, group: _Batch, handed: list[Delivery]) -> None:
        """Hand each event to the subscriptions it concerns (queued in order, decided by `group`)."""
        for event in batch:
            self._count_received(event)
        routed = [e for e in batch if e["k"] in (REVIEW, PROGRESS) and self._per_kind[e["k"]] > 0]
        learners = {int(e["u"]) for e in routed}
        submissions = {int(e["s"]) for e in routed if e["k"] == REVIEW and e.get("s") is not None}
        dots = sorted({  # the followers of the groups the review events name, whose counts the decisions show
            (group, s.user_id) for e in routed if e["k"] == REVIEW and isinstance(e.get("g"), list)
            for group in e["g"] for s in self._by_key.get((REVIEW, group), ())
        }) if self.postgres else []
        groups = await self._groups_of(learners, submissions, loaders, dots) if learners else {}
        for event in batch:
            kind = event["k"]
            if kind in (REVIEW, PROGRESS):
                consent_too = kind == PROGRESS  # the review queue counts members placed without a consent only
                for group_id, on_consent in groups.get(int(event["u"]), ()):
                    if consent_too or not on_consent:
                        self._offer(self._by_key.get((kind, group_id), ()), event, group, handed)
            elif kind == ACCESS:
                for user_id in event.get("u", ()):
                    self._offer(self._by_key.get((ACCESS, int(user_id)), ()), event, group, handed)
            elif kind == REACH:
                for user_id in event.get("u", ()):
                    self._offer(self._by_user.get(int(user_id), ()), event, group, handed)
            elif kind == RESYNC:
                for subscribers in list(self._by_user.values()):
                    self._offer(subscribers, event, group, handed)

    async def _groups_of(
        self, user_ids: set[int], submission_ids: set[int], loaders: Loaders, dots: Sequence[tuple[int, int]] = ()
    ) -> dict[int, set[tuple[int, bool]]]:
        """Every group whose subtree holds each learner (a current membership), and whether that placement
        rests on a consent: one query for the batch. The same rows hold what the decisions will ask about the
        learners, the followed groups and the submissions the events name (the learner's row and own groups,
        the group's row, the submission's row): the batch's loaders get them here rather than in statements
        of their own. On PostgreSQL so do the red dots asked (`dots`: (group, viewer) pairs): the review queue counts
        the decisions will show (reviewQueueChanged's pendingCount)."""
        out: dict[int, set[tuple[int, bool]]] = defaultdict(set)
        own: set[tuple[int, int, str]] = set()
        params: dict[str, Any] = {"learners": sorted(user_ids), "submissions": sorted(submission_ids)}
        if self.postgres:
            params["dot_groups"], params["dot_viewers"] = [g for g, _ in dots], [v for _, v in dots]
        rows = await loaders.store.rows(_routing(self.postgres), params)
        followed = {key for kind, key in self._by_key if kind in (REVIEW, PROGRESS)}
        submission_at = _USER_AT + UserRecord.width
        primed_groups: set[int] = set()
        primed_users: set[int] = set()
        if rows and rows[0][5] is not None:  # the red dots asked, read along (the same on every row)
            loaders.reviews.counted.update(zip(dots, map(int, rows[0][5]), strict=True))
        for row in rows:
            user_id, group_id, on_consent, depth, role = row[:5]
            out[user_id].add((group_id, bool(on_consent)))
            if depth == 0 and not on_consent:
                own.add((user_id, group_id, role))
            if group_id in followed and group_id not in primed_groups:
                primed_groups.add(group_id)
                loaders.groups.by_id.prime(group_id, GroupRecord(*row[_GROUP_AT:_USER_AT]))
            if user_id not in primed_users:
                primed_users.add(user_id)
                loaders.users.by_id.prime(user_id, UserRecord(*row[_USER_AT:submission_at]))
            if row[submission_at] is not None:
                loaders.reviews.by_id.prime(row[submission_at], SubmissionRecord(*row[submission_at:]))
        for user_id, groups in own_groups_of(own, out).items():  # users.own_groups' rule
            loaders.users.own_groups.prime(user_id, groups)
        # a group reached both ways counts as reached without a consent
        for user_id, pairs in out.items():
            plain = {g for g, c in pairs if not c}
            out[user_id] = {(g, c) for g, c in pairs if not c or g not in plain}
        return out

    def _offer(
        self, subscribers: Iterable[Subscriber], event: dict[str, Any], group: _Batch, handed: list[Delivery]
    ) -> None:
        for subscriber in list(subscribers):
            if subscriber.too_slow:
                continue
            delivery = Delivery(subscriber, event, group)
            if subscriber.offer(delivery):
                handed.append(delivery)
                if self.admission.hold_seconds > 0:
                    delivery.gate = self.admission
                    self.admission.deliveries_begin(1)

    async def _decide(self, group: _Batch, deliveries: list[Delivery], loaders: Loaders) -> None:
        """Decide every delivery of a routed batch together: every subscriber's sign-in and Reach in one
        statement, then each subscription's own decision, all at once, over loaders shared by the batch (so
        that the event's submission, learner and course are read once, and the counts in one statement).
        Holds one of the broker's delivery slots (and one pooled connection) until done."""
        try:
            deciding = [
                d for d in deliveries
                if d.subscriber.decide is not None and d.subscriber.token is not None and not d.subscriber.closed
            ]
            tokens = {d.subscriber.token for d in deciding}
            viewers = await viewers_now(loaders.store, tokens, self.settings.members_see_groups) if tokens else {}  # type: ignore[arg-type]

            async def one(delivery: Delivery) -> None:
                subscriber = delivery.subscriber
                viewer = viewers.get(subscriber.token)  # type: ignore[arg-type]
                if viewer is None or subscriber.decide is None:
                    return
                if viewer.credential is None:
                    delivery.decided = Decided(viewer, error=Unauthenticated(SIGN_IN_ENDED))
                    return
                try:
                    delivery.decided = Decided(viewer, await subscriber.decide(viewer, loaders, delivery.event))
                except AppError as refused:
                    delivery.decided = Decided(viewer, error=refused)
                except Exception as exc:  # left undecided: the subscription decides it alone
                    log.warning("live_decide_failed", error=type(exc).__name__, exc_info=exc)

            await asyncio.gather(*(one(d) for d in deciding))
        except Exception as exc:  # undecided: each subscription decides alone
            log.warning("live_batch_failed", error=type(exc).__name__, exc_info=exc)
        finally:
            group.done.set()
            self.deliveries.release()
            self.batches += 1
            await loaders.store.close()

    async def aclose(self) -> None:
        self._closed = True
        for task in (self._dispatcher, self._sender, self._stop_watch, *self._deciding):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self._drop_connection()
        if self._reading is not None:
            await self._reading.dispose()


@cache
def _routing(postgres: bool) -> Any:
    """The routing's rows, built once per dialect (parameters: the arrays `learners` and `submissions`): each
    learner's current memberships, every group whose subtree holds them (the ancestors, with the depth), whether
    the placement rests on a consent, the membership's role, on PostgreSQL the red dots asked (the arrays
    `dot_groups` and `dot_viewers`: dataloaders.reviews.red_dots), then the group's columns, the learner's columns
    and, on the rows of the learner's own groups (depth 0), the columns of the learner's submissions the events
    name (else NULLs). Plain columns, read lean (no ORM entities): the batch's loaders get records."""
    submission_named = ids_in(Submission.__table__.c.id, postgres, "submissions")  # type: ignore[attr-defined]
    dots = (
        red_dots(bindparam("dot_groups", type_=ARRAY(Integer)), bindparam("dot_viewers", type_=ARRAY(Integer)))
        if postgres else null()
    )
    return (
        select(Membership.user_id, GroupClosure.ancestor_id, Membership.access_request_id.is_not(None),
               GroupClosure.depth, Membership.role, dots, *columns_as_read(GroupRecord, postgres),
               *columns_as_read(UserRecord, postgres), *columns_as_read(SubmissionRecord, postgres))
        .join(GroupClosure, GroupClosure.descendant_id == Membership.group_id)
        .join(Group, Group.id == GroupClosure.ancestor_id)
        .join(User, User.id == Membership.user_id)
        .outerjoin(Submission, and_(Submission.user_id == Membership.user_id, GroupClosure.depth == 0, submission_named))
        .where(Membership.ended_at.is_(None), ids_in(Membership.__table__.c.user_id, postgres, "learners"))  # type: ignore[attr-defined]
    )


_GROUP_AT = 6  # where a routing row's group columns start, then the user's, then the submission's
_USER_AT = _GROUP_AT + GroupRecord.width


def _finish_all(deliveries: list[Delivery]) -> None:
    """A batch's deliveries stop holding operations back once the precedence has run out, sent or not (a
    subscriber whose connection does not take its messages would otherwise hold them back for as long)."""
    for delivery in deliveries:
        delivery.finish()


def attach(database: Database, settings: Settings) -> Broker:
    """One broker per process and database: committed transactions publish through it."""
    broker = Broker(database, settings)
    database.after_commit = broker.publish
    database.closers.append(broker.aclose)
    return broker
