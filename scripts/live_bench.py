"""Live-update benchmark: N mentors subscribed to their group's red dot across 2 app processes on PostgreSQL,
then a burst of N submissions, each handled by the OTHER process than its mentor's subscription (every
delivery crosses processes through LISTEN/NOTIFY).

Reports delivery latency (client side: from the submission's request, and after its answer; server side:
the groupgraph_live_delivery_seconds histogram, publication after commit to the event sent), events/s,
each worker's RSS before and after the subscribers and after the burst, and the events lost (a mentor who
never heard of their learner's submission) and unauthorised (an event about anyone else's learner).

    ./scripts/bench-live [--subscribers 1000] [--concurrency 50]

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


async def seed(url: str, n: int) -> dict[str, Any]:
    """A school of n classes, each with a mentor and a learner enrolled in a course with an assignment."""
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
        session.add_all([admin, *mentors, *learners])
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
        session.add_all([Enrollment(user_id=x.id, course_id=course.id) for x in learners])  # type: ignore[arg-type]
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
        }
    await database.dispose()
    return out


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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


async def run(n: int, concurrency: int) -> dict[str, Any]:
    name = f"groupgraph_bench_live_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = URL_BASE + name
    load_before = os.getloadavg()
    try:
        data = await seed(url, n)
        say("seeded")
        async with workers(
            url, 2, database_pool_size="20", live_concurrent_deliveries="12", access_log="false"
        ) as addresses:
            pids = [worker_pid(w.split(":")[1]) for w in addresses]
            clients = [httpx.AsyncClient(base_url=f"http://{w}", limits=httpx.Limits(max_connections=concurrency), timeout=120)
                       for w in addresses]
            # warm both workers: a query each, one submission through each (the listen connection, the pools)
            for client in clients:
                await client.post("/graphql", json={"query": "{ viewer { id } }"}, headers={"Authorization": f"Bearer {data['admin']}"})
            rss_start = [rss_mb(p) for p in pids]

            arrivals: dict[int, list[tuple[float, dict[str, Any]]]] = {i: [] for i in range(n)}
            ready = [asyncio.Event() for _ in range(n)]
            stop = asyncio.Event()

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
                    receiving = asyncio.ensure_future(ws.recv())
                    stopping = asyncio.ensure_future(stop.wait())
                    while True:
                        done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                        if receiving in done:
                            message = json.loads(receiving.result())
                            if message.get("type") == "ping":
                                await ws.send(json.dumps({"type": "pong"}))
                            else:
                                arrivals[i].append((time.perf_counter(), message))
                            receiving = asyncio.ensure_future(ws.recv())
                        if stopping in done:
                            receiving.cancel()
                            return

            opening = time.perf_counter()
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
            await asyncio.sleep(1)
            rss_subscribed = [rss_mb(p) for p in pids]
            metrics_before = [histogram((await c.get("/metrics")).text) for c in clients]

            sent: dict[int, tuple[float, float]] = {}
            retried: list[int] = []
            gate = asyncio.Semaphore(concurrency)

            async def submit(i: int) -> None:
                client = clients[(i + 1) % 2]  # the other worker than the mentor's subscription
                async with gate:
                    started = time.perf_counter()
                    body = {"query": SUBMIT, "variables": {"e": [
                        {"userId": data["learner_gids"][i], "kind": "SUBMITTED", "stepId": data["step"], "body": "essay"}]}}
                    try:
                        response = await client.post("/graphql", headers={"Authorization": f"Bearer {data['admin']}"}, json=body)
                    except httpx.TransportError:  # a kept-alive connection the server had just closed: send again
                        retried.append(i)
                        response = await client.post("/graphql", headers={"Authorization": f"Bearer {data['admin']}"}, json=body)
                    sent[i] = (started, time.perf_counter())
                    assert response.json() == {"data": {"recordProgress": 1}}, response.text

            say(f"subscribed in {subscribed_in:.1f} s; the burst")
            burst_start = time.perf_counter()
            await asyncio.gather(*(submit(i) for i in range(n)))
            burst_sent = time.perf_counter() - burst_start
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline and any(not arrivals[i] for i in range(n)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.sleep(1)  # anything else that would still come
            last_arrival = max((a[0][0] for a in arrivals.values() if a), default=burst_start)
            rss_after = [rss_mb(p) for p in pids]
            metrics_after = [histogram((await c.get("/metrics")).text) for c in clients]
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients:
                await client.aclose()

        lost = sum(1 for i in range(n) if not arrivals[i])
        unauthorised = 0
        from_sent: list[float] = []
        after_answer: list[float] = []
        for i in range(n):
            for _, message in arrivals[i]:
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
            "subscribers": n, "workers": 2, "concurrency": concurrency, "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "subscribed_in_s": round(subscribed_in, 2),
            "burst_sent_in_s": round(burst_sent, 2),
            "events_per_s": round(delivered / max(last_arrival - burst_start, 1e-9), 1),
            "server_delivery_ms": {f"p{int(q * 100)}": round(quantile_from_buckets(server, q) * 1000, 1) for q in (0.5, 0.95, 0.99)},
            "from_submission_sent_ms": {f"p{int(q * 100)}": round(pct(from_sent, q), 1) for q in (0.5, 0.95, 0.99)},
            "after_submission_answered_ms": {f"p{int(q * 100)}": round(pct(after_answer, q), 1) for q in (0.5, 0.95, 0.99)},
            "mutation_ms_p50": round(statistics.median((b - a) * 1000 for a, b in sent.values()), 1),
            "rss_mb": {"start": [round(x, 1) for x in rss_start], "subscribed": [round(x, 1) for x in rss_subscribed],
                       "after_burst": [round(x, 1) for x in rss_after]},
            "rss_growth_mb": round(sum(rss_after) - sum(rss_start), 1),
            "lost": lost, "unauthorised": unauthorised, "submissions_sent_twice_after_a_reset": len(retried),
        }
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50, help="submissions in flight at once")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.subscribers, args.concurrency)), indent=2))


if __name__ == "__main__":
    main()
