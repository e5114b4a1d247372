"""Live-update benchmark: N mentors subscribed to their group's red dot across 2 app processes on PostgreSQL,
then a burst of N submissions, each handled by the OTHER process than its mentor's subscription (every
delivery crosses processes through LISTEN/NOTIFY).

Reports delivery latency (client side: from the submission's request, and after its answer; server side:
the groupgraph_live_delivery_seconds histogram, publication after commit to the event sent), events/s,
each worker's RSS after a warm-up, with the subscribers and after the burst, the workers' CPU time per
submission, per subscription and per delivery (from /proc: the burst's CPU less what its submissions cost
alone, measured first on learners nobody follows), each worker's live gauges from /metrics, and the events
lost (a mentor who never heard of their learner's submission) and unauthorised (an event about anyone
else's learner). The workers run without the access log, at WARNING.

    ./scripts/bench-live [--subscribers 1000] [--concurrency 50] [--deliveries 2]
    ./scripts/bench-live --in-process [--subscribers 100] [--fanout 20]
    ./scripts/bench-live --in-process --submissions 300 [--profile FILE]

`--in-process` measures statements and CPU time per delivery in this one process instead (no HTTP server):
one event at a time to one subscriber, a burst of N events, one event to `fanout` + 1 subscribers of a group;
with `--submissions N`, statements and CPU time per recordProgress (one submission, the ASGI app called directly).

Needs PostgreSQL (GROUPGRAPH_TEST_PG_ADMIN, default postgresql://postgres@127.0.0.1:5432/postgres); creates
and drops its own database; the app processes listen on ephemeral ports of 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import websockets  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.runtime.ids import to_global_id  # noqa: E402
from app.services.auth import SESSION_PREFIX, hash_password, new_token, token_hash  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store.db import Database  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402
from app.store.models import (  # noqa: E402
    Course,
    Enrollment,
    Group,
    GroupClosure,
    Membership,
    Session,
    Step,
    User,
    utcnow,
)
from tests.live import workers  # noqa: E402

ADMIN_DSN = os.environ.get("GROUPGRAPH_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
URL_BASE = os.environ.get("GROUPGRAPH_TEST_PG_BASE", "postgresql+asyncpg://postgres@127.0.0.1:5432/")
RED_DOT = """subscription($g: ID!) { reviewQueueChanged(groupId: $g) {
  pendingCount submission { user { databaseId } } } }"""
WAVE = 50
SUBMIT = "mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }"


async def seed(url: str, n: int, warm: int = 0) -> dict[str, Any]:
    """A school of n classes, each with a mentor and a learner enrolled in a course with an assignment; `warm`
    more learners in the school itself (whose submissions no subscriber hears: the cost of a submission alone)."""
    database = Database(Settings(database_url=url))
    await upgrade(database.engine)
    password = hash_password("bench-password")
    now = utcnow()

    def person(name: str, kind: str = "LEARNER", roles: str = "") -> User:
        email = f"{name.lower()}@bench.example"
        return User(email=email, email_normalized=email, first_name=name, last_name="Bench",
                    last_name_normalized="bench", kind=kind, site_roles=roles, status="ACTIVE", password_hash=password)

    async with database.transaction() as session:
        admin = person("Admin", "STAFF", "ADMIN")
        mentors = [person(f"Mentor{i}", "STAFF") for i in range(n)]
        learners = [person(f"Learner{i}") for i in range(n)]
        warmers = [person(f"Warm{i}") for i in range(warm)]
        session.add_all([admin, *mentors, *learners, *warmers])
        school = Group(name="School", name_normalized="school", slug="school")
        session.add(school)
        await session.flush()
        classes = [Group(name=f"Class {i}", name_normalized=f"class {i}", slug=f"class-{i}", parent_id=school.id, depth=1)
                   for i in range(n)]
        session.add_all(classes)
        course = Course(name="Essays")
        session.add(course)
        await session.flush()
        step = Step(course_id=course.id, title="Essay", position=1, kind="ASSIGNMENT", max_points=10)  # type: ignore[arg-type]
        session.add(step)
        closure = [GroupClosure(ancestor_id=school.id, descendant_id=school.id, depth=0)]  # type: ignore[arg-type]
        for g in classes:
            closure += [GroupClosure(ancestor_id=g.id, descendant_id=g.id, depth=0),  # type: ignore[arg-type]
                        GroupClosure(ancestor_id=school.id, descendant_id=g.id, depth=1)]  # type: ignore[arg-type]
        session.add_all(closure)
        session.add_all([Membership(user_id=m.id, group_id=g.id, role="MENTOR") for m, g in zip(mentors, classes, strict=True)])  # type: ignore[arg-type]
        session.add_all([Membership(user_id=x.id, group_id=g.id, role="MEMBER") for x, g in zip(learners, classes, strict=True)])  # type: ignore[arg-type]
        session.add_all([Membership(user_id=x.id, group_id=school.id, role="MEMBER") for x in warmers])  # type: ignore[arg-type]
        session.add_all([Enrollment(user_id=x.id, course_id=course.id) for x in [*learners, *warmers]])  # type: ignore[arg-type]
        tokens: list[str] = []
        for user in [admin, *mentors]:
            token = new_token(SESSION_PREFIX)
            tokens.append(token)
            session.add(Session(user_id=user.id, token_hash=token_hash(token), expires_at=now + timedelta(hours=2)))  # type: ignore[arg-type]
        await session.flush()
        out = {
            "admin": tokens[0], "mentors": tokens[1:], "classes": [to_global_id("Group", g.id) for g in classes],  # type: ignore[arg-type]
            "learners": [x.id for x in learners], "learner_gids": [to_global_id("User", x.id) for x in learners],  # type: ignore[arg-type]
            "step": to_global_id("Step", step.id),  # type: ignore[arg-type]
            "step_id": step.id, "course_id": course.id, "class_ids": [g.id for g in classes],
            "warm_gids": [to_global_id("User", x.id) for x in warmers],  # type: ignore[arg-type]
            "school_id": school.id,
        }
    async with database.engine.begin() as connection:  # statistics, as autovacuum would gather in a while
        await connection.execute(text("ANALYZE"))
    await database.dispose()
    return out


class KeptAlive:
    """POSTs over kept-alive HTTP/1.1 connections to one worker, at most `size` open: the submissions' client.
    httpx cost the bench process ~3.3 ms of CPU per request, on the same two cores as the workers and PostgreSQL;
    this costs a fraction of that, so the burst measures the server rather than its client."""

    def __init__(self, address: str, size: int) -> None:
        self.host, port = address.split(":")
        self.port = int(port)
        self.size = size
        self.opened = 0
        self.resent = 0  # requests sent again on a new connection after the server had closed the kept one
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def _connection(self, fresh: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if fresh or (self.idle.empty() and self.opened < self.size):
            self.opened += 1
            return await asyncio.open_connection(self.host, self.port)
        return await self.idle.get()

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body); a kept connection the server had closed (its keep-alive timeout) is replaced by a new
        one and the request sent again."""
        payload = json.dumps(body).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n{head}"
                   f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
        for attempt in (0, 1):
            reader, writer = await self._connection(fresh=bool(attempt))
            try:
                writer.write(request)
                status_line = await reader.readline()
                if not status_line:
                    raise ConnectionResetError("closed by the server")
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                answer = await reader.readexactly(length)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                self.opened -= 1
                if attempt:
                    raise
                self.resent += 1
                continue
            if close:
                writer.close()
                self.opened -= 1
            else:
                self.idle.put_nowait((reader, writer))
            return int(status_line.split()[1]), answer
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the idle connections (the next requests open new ones)."""
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()
            self.opened -= 1


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(port: str) -> int:
    """The pid of the app process listening on 127.0.0.1:port (from /proc, no extra tools)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"app.cli" in cmdline and port.encode() in cmdline:
                return int(proc.name)
    raise RuntimeError(f"no worker on port {port}")


def histogram(metrics: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for match in re.finditer(r'groupgraph_live_delivery_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)', metrics):
        out[float(match.group(1))] = float(match.group(2))
    return out


def live_gauges(metrics: str) -> dict[str, float]:
    """The live-update gauges of one scrape: open connections and subscriptions per field."""
    out: dict[str, float] = {}
    for match in re.finditer(r'^(groupgraph_live_(?:connections|subscriptions)(?:\{[^}]*\})?) ([0-9.e+]+)$', metrics, re.M):
        out[match.group(1)] = float(match.group(2))
    return out


def quantile_from_buckets(buckets: dict[float, float], q: float) -> float:
    """Linear interpolation inside the bucket that holds the q-th observation (Prometheus' histogram_quantile)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if not total:
        return float("nan")
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(count - previous_count, 1e-9)
        previous_bound, previous_count = bound, count
    return bounds[-1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(n: int, concurrency: int, deliveries: int = 2, warm: int = 200) -> dict[str, Any]:
    name = f"groupgraph_bench_live_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = URL_BASE + name
    load_before = os.getloadavg()
    try:
        data = await seed(url, n, warm)
        say("seeded")
        # no access log, warnings only: the workers' time goes to the requests and the events
        async with workers(url, 2, database_pool_size="20", live_concurrent_deliveries=str(deliveries),
                           access_log="false", log_level="WARNING") as addresses:
            pids = [worker_pid(w.split(":")[1]) for w in addresses]
            clients = [httpx.AsyncClient(base_url=f"http://{w}", limits=httpx.Limits(max_connections=concurrency), timeout=120)
                       for w in addresses]
            admin_auth = {"Authorization": f"Bearer {data['admin']}"}
            for client in clients:  # a query each: the pools, the caches
                await client.post("/graphql", json={"query": "{ viewer { id } }"}, headers=admin_auth)
            gate = asyncio.Semaphore(concurrency)
            posters = [KeptAlive(w, concurrency) for w in addresses]

            async def submit(client: KeptAlive, learner: str) -> tuple[float, float]:
                """recordProgress for one learner's assignment: (sent, answered) on the perf_counter clock."""
                async with gate:
                    body = {"query": SUBMIT, "variables": {"e": [
                        {"userId": learner, "kind": "SUBMITTED", "stepId": data["step"], "body": "essay"}]}}
                    started = time.perf_counter()
                    status, answer = await client.post("/graphql", body, admin_auth)
                    answered = time.perf_counter()
                    assert status == 200 and json.loads(answer) == {"data": {"recordProgress": 1}}, answer
                    return started, answered

            def cpu() -> list[float]:
                return [cpu_seconds(p) for p in pids]

            # the cost of a submission alone: learners no subscriber follows, half through each worker
            before = cpu()
            await asyncio.gather(*(submit(posters[k % 2], gid) for k, gid in enumerate(data["warm_gids"])))
            mutation_cpu_ms = (sum(cpu()) - sum(before)) * 1000 / max(warm, 1)
            rss_start = [rss_mb(p) for p in pids]

            arrivals: dict[int, list[tuple[float, str]]] = {i: [] for i in range(n)}
            ready = [asyncio.Event() for _ in range(n)]

            async def subscriber(i: int) -> None:
                address = addresses[i % 2]
                async with websockets.connect(f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                              max_queue=None, open_timeout=120) as ws:
                    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {data['mentors'][i]}"}}))
                    assert json.loads(await ws.recv())["type"] == "connection_ack"
                    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": RED_DOT, "variables": {"g": data["classes"][i]}}}))
                    first = json.loads(await ws.recv())
                    while first["type"] == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
                        first = json.loads(await ws.recv())
                    assert first["type"] == "next", first
                    ready[i].set()
                    async for raw in ws:  # the time first, the JSON later: the client's own load adds the least
                        at = time.perf_counter()
                        if '"ping"' in raw and json.loads(raw).get("type") == "ping":
                            await ws.send(json.dumps({"type": "pong"}))
                            continue
                        arrivals[i].append((at, str(raw)))

            opening = time.perf_counter()
            before = cpu()
            tasks = []
            say(f"{n} subscribers connecting, {WAVE} at a time")
            for start in range(0, n, WAVE):  # connections open in waves, as browsers do
                wave = range(start, min(n, start + WAVE))
                tasks.extend(asyncio.create_task(subscriber(i)) for i in wave)
                waiting = asyncio.ensure_future(asyncio.gather(*(ready[i].wait() for i in wave)))
                while not waiting.done():
                    await asyncio.wait({waiting, *tasks}, timeout=300, return_when=asyncio.FIRST_COMPLETED)
                    failed = [t for t in tasks if t.done() and t.exception() is not None]
                    if failed:
                        raise RuntimeError(f"{len(failed)} subscribers failed") from failed[0].exception()
            subscribed_in = time.perf_counter() - opening
            subscribe_cpu_ms = (sum(cpu()) - sum(before)) * 1000 / n
            await asyncio.sleep(1)
            rss_subscribed = [rss_mb(p) for p in pids]
            scraped = [(await c.get("/metrics")).text for c in clients]
            metrics_before = [histogram(text) for text in scraped]
            gauges = [live_gauges(text) for text in scraped]

            for poster in posters:  # kept since the warm-up, past the server's keep-alive timeout
                await poster.aclose()
            say(f"subscribed in {subscribed_in:.1f} s; the burst")
            before = cpu()
            client_before = time.process_time()
            burst_start = time.perf_counter()
            # each through the other worker than the mentor's subscription
            answers = await asyncio.gather(*(submit(posters[(i + 1) % 2], data["learner_gids"][i]) for i in range(n)))
            sent = dict(enumerate(answers))
            burst_sent = time.perf_counter() - burst_start
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline and any(not arrivals[i] for i in range(n)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            burst_cpu = sum(cpu()) - sum(before)
            client_cpu = time.process_time() - client_before
            await asyncio.sleep(1)  # anything else that would still come
            last_arrival = max((a[0][0] for a in arrivals.values() if a), default=burst_start)
            rss_after = [rss_mb(p) for p in pids]
            metrics_after = [histogram((await c.get("/metrics")).text) for c in clients]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients:
                await client.aclose()
            for poster in posters:
                await poster.aclose()

        lost = sum(1 for i in range(n) if not arrivals[i])
        unauthorised = 0
        from_sent: list[float] = []
        after_answer: list[float] = []
        for i in range(n):
            for _, raw in arrivals[i]:
                message = json.loads(raw)
                change = ((message.get("payload") or {}).get("data") or {}).get("reviewQueueChanged") or {}
                submission = change.get("submission") or {}
                if (submission.get("user") or {}).get("databaseId") != data["learners"][i]:
                    unauthorised += 1
            if arrivals[i]:
                arrived_at = arrivals[i][0][0]
                started, answered = sent[i]
                from_sent.append((arrived_at - started) * 1000)
                after_answer.append((arrived_at - answered) * 1000)
        server = {le: sum(m[1].get(le, 0) - m[0].get(le, 0) for m in zip(metrics_before, metrics_after, strict=True))
                  for le in metrics_after[0]}
        delivered = n - lost
        return {
            "subscribers": n, "workers": 2, "concurrency": concurrency, "concurrent_deliveries": deliveries,
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "subscribed_in_s": round(subscribed_in, 2),
            "burst_sent_in_s": round(burst_sent, 2),
            "events_per_s": round(delivered / max(last_arrival - burst_start, 1e-9), 1),
            "server_delivery_ms": {f"p{int(q * 100)}": round(quantile_from_buckets(server, q) * 1000, 1) for q in (0.5, 0.95, 0.99)},
            "from_submission_sent_ms": {f"p{int(q * 100)}": round(pct(from_sent, q), 1) for q in (0.5, 0.95, 0.99)},
            "after_submission_answered_ms": {f"p{int(q * 100)}": round(pct(after_answer, q), 1) for q in (0.5, 0.95, 0.99)},
            "mutation_ms_p50": round(statistics.median((b - a) * 1000 for a, b in sent.values()), 1),
            # worker CPU (both workers, /proc): a submission alone (measured first, with no subscriber), a
            # subscription's set-up, and a delivery (the burst's CPU less its submissions', per event)
            "cpu_ms": {"per_submission": round(mutation_cpu_ms, 2), "per_subscription": round(subscribe_cpu_ms, 2),
                       "per_delivery": round((burst_cpu * 1000 - n * mutation_cpu_ms) / max(delivered, 1), 2),
                       "burst_workers_s": round(burst_cpu, 2), "burst_bench_client_s": round(client_cpu, 2)},
            "rss_mb": {"start": [round(x, 1) for x in rss_start], "subscribed": [round(x, 1) for x in rss_subscribed],
                       "after_burst": [round(x, 1) for x in rss_after]},
            "rss_growth_mb": round(sum(rss_after) - sum(rss_start), 1),
            "lost": lost, "unauthorised": unauthorised, "submissions_sent_twice_after_a_reset": sum(p.resent for p in posters),
            "live_gauges_subscribed": gauges,  # each worker's /metrics: n/2 connections and subscriptions each
        }
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def in_process(url: str, data: dict[str, Any], subscribers: int, fanout: int, rounds: int = 50,
                     profile: str | None = None) -> dict[str, Any]:
    """Statements and CPU time per delivery, machine-independent-ish: the app in this process (no HTTP server,
    in-memory WebSockets), `subscribers` mentors on their classes and `fanout` more on the first class. Each
    submission row is written by another engine (not counted) and its event published as recordProgress
    publishes it after its commit (NOTIFY, LISTEN, routing, the decision, the message), so what is counted is
    the delivery alone, client side JSON included. `profile`: a cProfile file of the one-event deliveries."""
    from app.server import create_app
    from app.services.events import review_changed
    from app.store.models import Submission
    from tests.live import Socket

    settings = Settings(database_url=url, access_log=False, log_level="WARNING", database_pool_size=20)
    database = Database(settings)
    writer = Database(Settings(database_url=url))
    app = create_app(settings, database)
    tokens = list(data["mentors"][:subscribers])
    async with writer.transaction() as session:  # more mentors of the first class
        extra = [User(email=f"fan{i}@bench.example", email_normalized=f"fan{i}@bench.example", first_name=f"Fan{i}",
                      last_name="Bench", last_name_normalized="bench", kind="STAFF", status="ACTIVE") for i in range(fanout)]
        session.add_all(extra)
        await session.flush()
        session.add_all([Membership(user_id=u.id, group_id=data["class_ids"][0], role="MENTOR") for u in extra])  # type: ignore[arg-type]
        fans: list[str] = []
        for u in extra:
            token = new_token(SESSION_PREFIX)
            fans.append(token)
            session.add(Session(user_id=u.id, token_hash=token_hash(token), expires_at=utcnow() + timedelta(hours=2)))  # type: ignore[arg-type]
    sockets: list[Socket] = []
    groups = [data["classes"][i] for i in range(subscribers)] + [data["classes"][0]] * fanout
    for token, group in zip(tokens + fans, groups, strict=True):
        sock = await Socket(app).init(token)
        sock.subscribe("1", RED_DOT, {"g": group})
        assert "data" in await sock.next("1")
        sockets.append(sock)
    broker = app.state.broker

    async def submit(learners: list[int]) -> list[dict[str, Any]]:
        """As recordProgress announces them on PostgreSQL: the learner, the new submission's id and the learner's
        groups (the class and the school)."""
        async with writer.transaction() as session:
            rows = [Submission(user_id=data["learners"][i], step_id=data["step_id"], course_id=data["course_id"],
                               body="essay") for i in learners]
            session.add_all(rows)
            await session.flush()
        return [review_changed(row.user_id, row.id, groups=[data["class_ids"][i], data["school_id"]])  # type: ignore[arg-type]
                for i, row in zip(learners, rows, strict=True)]

    profiling: list[Any] = []

    async def deliver(learners: list[int], receivers: list[Socket]) -> tuple[int, float, float]:
        events = await submit(learners)
        statements, cpu, wall = database.counter.count, time.process_time(), time.perf_counter()
        for profiler in profiling:
            profiler.enable()
        await broker.publish(events)
        for message in await asyncio.gather(*(sock.next("1") for sock in receivers)):
            assert "data" in message, message
        for profiler in profiling:
            profiler.disable()
        return database.counter.count - statements, time.process_time() - cpu, time.perf_counter() - wall

    def per_delivery(results: list[tuple[int, float, float]], deliveries: int) -> dict[str, float]:
        return {"statements": round(sum(r[0] for r in results) / deliveries, 2),
                "cpu_ms": round(sum(r[1] for r in results) * 1000 / deliveries, 2),
                "wall_ms_per_round": round(statistics.median(r[2] for r in results) * 1000, 2)}

    out: dict[str, Any] = {"subscribers": subscribers, "fanout": fanout}
    await deliver([0], sockets[:1] + sockets[subscribers:])  # warm
    if profile:
        import cProfile

        profiling.append(cProfile.Profile(time.process_time))
    singles = [await deliver([i % subscribers], [sockets[i % subscribers]]) for i in range(1, rounds + 1)]
    if profiling:
        profiling.pop().dump_stats(profile)  # type: ignore[arg-type]
    out["one_event_one_subscriber"] = per_delivery(singles, rounds)
    burst = await deliver(list(range(subscribers)), sockets[:subscribers] + sockets[subscribers:])
    out[f"burst_of_{subscribers}_events"] = per_delivery([burst], subscribers + fanout)
    fanned = [await deliver([0], sockets[:1] + sockets[subscribers:]) for _ in range(10)]
    out[f"one_event_{fanout + 1}_subscribers"] = per_delivery(fanned, 10 * (fanout + 1))
    for sock in sockets:
        await sock.close()
    await database.dispose()
    await writer.dispose()
    return out


async def submissions_in_process(url: str, data: dict[str, Any], runs: int = 300, warm: int = 20,
                                 profile: str | None = None) -> dict[str, Any]:
    """Statements and CPU time per submission in this process: recordProgress (one SUBMITTED event, as the
    site admin) through the whole ASGI app, called directly (no HTTP client, no server), `warm` first, then
    `runs` measured, with nobody subscribed (the NOTIFY is sent). `profile`: a cProfile file (CPU time)."""
    from app.server import create_app

    settings = Settings(database_url=url, access_log=False, log_level="WARNING", database_pool_size=20)
    database = Database(settings)
    app = create_app(settings, database)
    authorization = f"Bearer {data['admin']}".encode()
    step, learners = data["step"], data["learner_gids"]

    async def one(k: int) -> None:
        body = json.dumps({"query": SUBMIT, "variables": {"e": [
            {"userId": learners[k % len(learners)], "kind": "SUBMITTED", "stepId": step, "body": "essay"}]}}).encode()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/graphql", "raw_path": b"/graphql", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"bench"), (b"content-type", b"application/json"), (b"accept", b"application/json"),
                        (b"authorization", authorization), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 5000), "server": ("bench", 80),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        assert json.loads(b"".join(chunks)) == {"data": {"recordProgress": 1}}, chunks

    for k in range(warm):
        await one(k)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
    statements, cpu = database.counter.count, time.process_time()
    if profiler is not None:
        profiler.enable()
    for k in range(runs):
        await one(warm + k)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    statements, cpu = database.counter.count - statements, time.process_time() - cpu
    await database.dispose()
    return {"submissions": runs, "statements": round(statements / runs, 2), "cpu_ms": round(cpu * 1000 / runs, 2)}


async def measure(subscribers: int, fanout: int, submissions: int = 0, profile: str | None = None) -> dict[str, Any]:
    name = f"groupgraph_bench_live_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        url = URL_BASE + name
        data = await seed(url, subscribers)
        if submissions:
            return await submissions_in_process(url, data, submissions, profile=profile)
        return await in_process(url, data, subscribers, fanout, profile=profile)
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50, help="submissions in flight at once")
    parser.add_argument("--deliveries", type=int, default=2,
                        help="LIVE_CONCURRENT_DELIVERIES of each app process (batches of events decided at once)")
    parser.add_argument("--in-process", action="store_true",
                        help="only the statements and CPU time per delivery, in this process (--subscribers of them)")
    parser.add_argument("--fanout", type=int, default=20, help="with --in-process: more subscribers of one group")
    parser.add_argument("--submissions", type=int, default=0,
                        help="with --in-process: CPU and statements per recordProgress instead (this many measured)")
    parser.add_argument("--profile", help="with --in-process: write a cProfile (CPU time) of the measured submissions, or of "
                        "the deliveries one event to one subscriber, here")
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps(asyncio.run(measure(args.subscribers, args.fanout, args.submissions, args.profile)), indent=2))
        return
    print(json.dumps(asyncio.run(run(args.subscribers, args.concurrency, args.deliveries)), indent=2))


if __name__ == "__main__":
    main()
