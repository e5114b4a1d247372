"""The benchmark scenarios, timed over HTTP against the live server."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.runtime.ids import to_global_id

COURSE_PROGRESS = (
    "course { name } activatedAt expiresAt completedAt percentViewed percentCompleted gradePercent "
    "stepsCompleted stepCount"
)
STEPS = "steps { step { position kind } viewedAt completedAt points }"


def dashboard(first: int, steps: bool) -> str:
    progress = COURSE_PROGRESS + (" " + STEPS if steps else "")
    return (
        "query Dashboard($id: ID!) { group(id: $id) { name depth ancestors { name } "
        "children { name memberCount(includeNested: true) } viewerRole viewerPermissions "
        "memberCount(includeNested: true) progressSummary(includeNested: true) { learnerCount "
        "courses { course { name } enrolledCount completedCount averagePercentCompleted } } "
        f"members(includeNested: true, roles: [MEMBER], first: {first}) {{ totalCount "
        "pageInfo { hasNextPage endCursor } edges { node { role group { name } user { firstName lastName email "
        f"courseProgress {{ {progress} }} }} }} }} }} }} }}"
    )


D1 = dashboard(100, steps=False)
D2 = dashboard(500, steps=True)
D3 = (
    "query Report($id: ID!, $after: String) { group(id: $id) { progressReport(first: 500, after: $after) { "
    "totalCount pageInfo { hasNextPage endCursor } edges { cursor node { firstName lastName email company "
    "groupName courseName activatedAt percentViewed percentCompleted completedAt expiresAt } } } } }"
)
D3_WALK = (
    "query Walk($id: ID!, $after: String) { group(id: $id) { progressReport(first: 500, after: $after) { "
    "pageInfo { hasNextPage endCursor } } } }"
)
VIEWER = "{ viewer { email } }"
NEEDS = {
    "D1": ("Group.members", "Group.memberCount", "Group.progressSummary", "User.courseProgress"),
    "D2": ("Group.members", "Group.memberCount", "Group.progressSummary", "User.courseProgress"),
    "D3": ("Group.progressReport",),
}


def gid(group_id: int) -> str:
    return to_global_id("Group", group_id)


@dataclass
class Sample:
    seconds: float
    statements: int
    db_ms: float
    server_ms: float
    size: int
    error: str | None = None


@dataclass
class Result:
    scenario: str
    viewer: str
    target: str
    workers: int = 1
    samples: list[Sample] = field(default_factory=list)
    note: str = ""
    peak_rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        times = sorted(s.seconds * 1000 for s in self.samples)
        out: dict[str, Any] = {"scenario": self.scenario, "viewer": self.viewer, "target": self.target,
                               "workers": self.workers, "note": self.note, **self.extra}
        if times:
            statements = sorted({s.statements for s in self.samples})
            server = sum(s.server_ms for s in self.samples)
            out.update(
                n=len(times), p50_ms=round(percentile(times, 50), 2), p95_ms=round(percentile(times, 95), 2),
                p99_ms=round(percentile(times, 99), 2),
                statements=statements[0] if len(statements) == 1 else statements,
                db_share=round(sum(s.db_ms for s in self.samples) / server, 3) if server else None,
                bytes=int(statistics.median(s.size for s in self.samples)),
            )
        if self.peak_rss_mb is not None:
            out["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        return out


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * pct / 100
    low, high = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (k - low)


def error_of(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "not JSON"
    if body.get("errors"):
        first = body["errors"][0]
        return f"{first.get('extensions', {}).get('code')}: {first.get('message', '')[:80]}"
    return None


async def post(client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]) -> tuple[Sample, Any]:
    started = time.perf_counter()
    response = await client.post("/graphql", json={"query": query, "variables": variables},
                                 headers={"Authorization": f"Bearer {token}"})
    content = response.content
    seconds = time.perf_counter() - started
    try:
        body = response.json()
    except ValueError:
        body = None
    sample = Sample(
        seconds, int(response.headers.get("x-bench-statements", -1)), float(response.headers.get("x-bench-db-ms", 0)),
        float(response.headers.get("x-bench-server-ms", 0)), len(content),
        error_of(body) if response.status_code == 200 else f"HTTP {response.status_code}",
    )
    return sample, body


async def schema_fields(client: httpx.AsyncClient, token: str) -> set[str]:
    names: set[str] = set()
    for type_name in ("Group", "User", "Query"):
        _, body = await post(client, token, "query($n: String!) { __type(name: $n) { fields { name } } }",
                             {"n": type_name})
        for item in ((body or {}).get("data") or {}).get("__type", {}).get("fields") or []:
            names.add(f"{type_name}.{item['name']}")
    return names


def missing(scenario: str, fields: set[str]) -> list[str]:
    return [name for name in NEEDS.get(scenario, ()) if name not in fields]


async def repeat(client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any], times: int,
                 warmup: int = 2) -> tuple[list[Sample], Any]:
    body = None
    for _ in range(warmup):
        _, body = await post(client, token, query, variables)
    samples = []
    for _ in range(times):
        sample, body = await post(client, token, query, variables)
        samples.append(sample)
    return samples, body


async def walk_pages(client: httpx.AsyncClient, token: str, group: int, pages: int) -> tuple[str | None, int]:
    """The `after` cursor of page `pages` (or of the last page), and that page's number."""
    after: str | None = None
    page = 1
    while page < pages:
        _, body = await post(client, token, D3_WALK, {"id": gid(group), "after": after})
        report = (((body or {}).get("data") or {}).get("group") or {}).get("progressReport")
        if not report or not report["pageInfo"]["hasNextPage"]:
            break
        after = report["pageInfo"]["endCursor"]
        page += 1
    return after, page


async def load(base: str, mix: list[tuple[str, str, dict[str, Any]]], concurrency: int, seconds: float,
               warmup: float) -> dict[str, Any]:
    """An httpx-based closed-loop loader: `concurrency` clients, each sending the next request of the mix."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        cycle = itertools.cycle(mix)
        latencies: list[float] = []
        errors = 0
        warmup_requests = 0
        recording = False

        async def one_client(stop_at: float) -> None:
            nonlocal errors, warmup_requests
            while time.perf_counter() < stop_at:
                token, query, variables = next(cycle)
                sample, _ = await post(client, token, query, variables)
                warmup_requests += not recording
                if recording:
                    latencies.append(sample.seconds * 1000)
                    errors += sample.error is not None

        await asyncio.gather(*(one_client(time.perf_counter() + warmup) for _ in range(concurrency)))
        recording = True
        started = time.perf_counter()
        await asyncio.gather(*(one_client(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies), "warmup_requests": warmup_requests, "errors": errors, "seconds": round(elapsed, 2),
        "req_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2), "p99_ms": round(percentile(latencies, 99), 2),
    }
