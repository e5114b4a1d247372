"""Measure export jobs (not a test).

    .venv/bin/python -m bench.export_jobs --engine postgres --rows 100000,1000000 --format XLSX

For each row count: the data set of bench/exports.py (a school of rows/10 learners x 10 courses), a fresh
uvicorn worker running the export worker (so its peak RSS, VmHWM, is that of the process that ran the job),
then: the time the `startProgressExport` request takes to answer (the job only queued), the job polled
with `exportJobs`-style node queries until DONE (the time of each poll is recorded too: the server answers
while it writes), rows/s over the job's own start and finish times, the worker's peak RSS, and the file
downloaded through its signed link (no header).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime

import httpx

from bench.exports import _drop, _free_port, _rss_mib, _start_worker, prepare

START = 'mutation($f: ExportFormat) { startProgressExport(groupId: "R3JvdXA6MQ==", format: $f) { id status } }'
SMALL = "mutation { startGroupsExport { id } }"
POLL = """query($id: ID!) { node(id: $id) { ... on ExportJob {
  status rowsWritten rowsTotal progressPercent startedAt finishedAt downloadUrl error } } }"""


@dataclass
class JobResult:
    engine: str
    rows: int
    format: str
    viewer_query_ms_p50: float
    small_start_ms_idle_p50: float
    small_start_ms_idle_max: float
    start_request_ms: float
    small_start_ms_while_running_p50: float
    small_start_ms_while_running_max: float
    poll_ms_p50: float
    poll_ms_max: float
    job_seconds: float
    rows_per_second: float
    file_bytes: int
    worker_rss_before_mib: float
    worker_peak_rss_mib: float
    load_average_1m_before: float
    load_average_1m_after: float


def _load() -> float:
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


def _gql(client: httpx.Client, query: str, variables: dict | None = None) -> tuple[dict, float]:
    started = time.perf_counter()
    response = client.post("/graphql", json={"query": query, "variables": variables or {}})
    elapsed = (time.perf_counter() - started) * 1000
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"], elapsed


def measure(url: str, engine: str, rows: int, format: str, token: str) -> JobResult:
    port = _free_port()
    directory = tempfile.mkdtemp(prefix="groupgraph-bench-jobs-")
    worker = _start_worker(
        url, port, export_worker="true", export_dir=directory, export_poll_seconds="0.5", export_max_active_jobs="100"
    )
    load_before = _load()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            _gql(client, "{ viewer { id } }")  # a warm connection, and the first request's imports done
            viewer = [_gql(client, "{ viewer { id } }")[1] for _ in range(10)]  # the machine's pace, for scale
            idle = []
            for _ in range(5):  # tiny jobs, each run at once by the idle worker
                idle.append(_gql(client, SMALL)[1])
                time.sleep(0.5)
            before = _rss_mib(worker.pid, "VmRSS")
            data, start_ms = _gql(client, START, {"f": format})
            job_id = data["startProgressExport"]["id"]
            polls: list[float] = []
            small: list[float] = []
            while True:
                data, ms = _gql(client, POLL, {"id": job_id})
                polls.append(ms)
                job = data["node"]
                if job["status"] in ("DONE", "FAILED"):
                    break
                if job["status"] == "RUNNING" and len(small) < 4:
                    small.append(_gql(client, SMALL)[1])
                time.sleep(0.5)
            if job["status"] != "DONE":
                raise RuntimeError(job["error"])
            peak = _rss_mib(worker.pid, "VmHWM")
            seconds = (datetime.fromisoformat(job["finishedAt"]) - datetime.fromisoformat(job["startedAt"])).total_seconds()
            size = 0
            link = f"http://127.0.0.1:{port}{job['downloadUrl']}"
            with httpx.stream("GET", link, timeout=600) as response:  # the signed link alone, no header
                if response.status_code != 200:
                    raise RuntimeError(f"download: HTTP {response.status_code}")
                for chunk in response.iter_raw():
                    size += len(chunk)
            if job["rowsWritten"] != rows:  # the file itself: opened and counted by tests and LibreOffice
                raise RuntimeError(f"expected {rows} rows, the job wrote {job['rowsWritten']}")
    finally:
        worker.terminate()
        worker.wait(30)
    return JobResult(
        engine, rows, format, round(statistics.median(viewer), 1), round(statistics.median(idle), 1),
        round(max(idle), 1), round(start_ms, 1), round(statistics.median(small or [0]), 1), round(max(small or [0]), 1),
        round(statistics.median(polls), 1), round(max(polls), 1), round(seconds, 2), round(rows / seconds),
        size, round(before, 1), round(peak, 1), load_before, _load(),
    )


def kill_and_retry(url: str, rows: int, token: str) -> dict:
    """A worker process killed (SIGKILL) in the middle of a job; a second one takes the job over once the
    lease has run out, and writes it whole."""
    directory = tempfile.mkdtemp(prefix="groupgraph-bench-jobs-")
    common = {"export_dir": directory, "export_poll_seconds": "0.5", "export_lease_seconds": "10",
              "export_heartbeat_seconds": "1", "export_worker": "true"}
    headers = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    first = _start_worker(url, port, **common)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            job_id = _gql(client, START, {"f": "XLSX"})[0]["startProgressExport"]["id"]
            while (job := _gql(client, POLL, {"id": job_id})[0]["node"])["rowsWritten"] < rows // 10:
                time.sleep(0.5)
            at_kill = job["rowsWritten"]
    finally:
        first.kill()  # SIGKILL: no clean-up, the job stays RUNNING with the dead worker's heartbeat
        first.wait(30)
    killed_at = time.perf_counter()
    port = _free_port()
    second = _start_worker(url, port, **common)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            while (job := _gql(client, POLL, {"id": job_id})[0]["node"])["status"] not in ("DONE", "FAILED"):
                time.sleep(1)
            size = len(httpx.get(f"http://127.0.0.1:{port}{job['downloadUrl']}", timeout=600).content)
    finally:
        second.terminate()
        second.wait(30)
    return {"rows_written_when_killed": at_kill, "status": job["status"], "rows_written": job["rowsWritten"],
            "seconds_from_kill_to_done": round(time.perf_counter() - killed_at, 1), "file_bytes": size,
            "error": job["error"]}


def main(argv: list[str] | None = None) -> list[JobResult]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--rows", default="100000", help="comma-separated report row counts (multiples of 10)")
    parser.add_argument("--format", default="XLSX")
    parser.add_argument("--kill", action="store_true", help="kill a worker mid-job and watch another take it over")
    args = parser.parse_args(argv)
    results = []
    if args.kill:
        rows = int(args.rows.split(",")[0])
        url, token, path, name, _ = asyncio.run(prepare(args.engine, rows))
        try:
            print(json.dumps(kill_and_retry(url, rows, token)))
        finally:
            asyncio.run(_drop(path, name))
        return []
    for rows in (int(r) for r in args.rows.split(",")):
        url, token, path, name, fill_seconds = asyncio.run(prepare(args.engine, rows))
        print(f"# {args.engine}: {rows} report rows filled in {fill_seconds:.1f}s", file=sys.stderr)
        try:
            result = measure(url, args.engine, rows, args.format.upper(), token)
        finally:
            asyncio.run(_drop(path, name))
        print(json.dumps(asdict(result)))
        sys.stdout.flush()
        results.append(result)
    return results


if __name__ == "__main__":
    main()
