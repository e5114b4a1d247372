"""What a platform team reads: JSON logs with an access line per request, metrics right across workers with
bounded labels, traces of a request, migrations safe from several hosts, and a graceful stop on SIGTERM
(real `groupgraph serve` processes where the behaviour is the server's)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.runtime import metrics
from app.server import create_app
from app.settings import Settings
from app.store.db import Database
from bench.scenarios import D1, gid
from tests.site import Site

ROOT = Path(__file__).resolve().parent.parent
GROUPGRAPH = str(Path(sys.executable).parent / "groupgraph")


def log_lines(err: str) -> list[dict[str, Any]]:
    """Every line of stderr, each of which must be one JSON object."""
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


# --- in process: access log, labels, statements ----------------------------------------------------------


async def test_access_log_and_metrics_of_every_request(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    metrics.allow_operations_of(["query KnownOperation { viewer { id } } fragment F on User { id }"])
    assert "KnownOperation" in metrics.KNOWN_OPERATIONS and "F" not in metrics.KNOWN_OPERATIONS
    ann = await site.user("Ann", kind="STAFF")
    token = await site.token(ann)
    headers = {"Authorization": f"Bearer {token}"}
    before = (await site.client.get("/metrics")).text
    capsys.readouterr()

    with site.statements() as counted:
        known = await site.client.post("/graphql", json={"query": "query KnownOperation { viewer { id } }"}, headers=headers)
    statements_with_log = counted.count
    for n in range(3):  # client-chosen names create no series
        await site.client.post("/graphql", json={"query": f"query Random{n}x {{ viewer {{ id }} }}"}, headers=headers)
    await site.client.get("/exports/groups.csv?token=secret-in-query", headers=headers)  # 403: not an admin
    await site.client.get("/no/such/path")
    logged = [line for line in log_lines(capsys.readouterr().err) if line.get("logger") != "httpx"]  # the client's

    access = [line for line in logged if line["event"] == "request"]
    assert [(a["method"], a["path"], a["route"], a["status"]) for a in access] == [
        ("POST", "/graphql", "/graphql", 200), ("POST", "/graphql", "/graphql", 200),
        ("POST", "/graphql", "/graphql", 200), ("POST", "/graphql", "/graphql", 200),
        ("GET", "/exports/groups.csv", "/exports/groups.csv", 403), ("GET", "/no/such/path", "other", 404),
    ]
    first = access[0]
    assert first["request_id"] == known.headers["x-request-id"]
    assert first["operation"] == "KnownOperation" and first["user_id"] == ann.id and first["duration_ms"] >= 0
    assert [a["operation"] for a in access[1:4]] == ["Random0x", "Random1x", "Random2x"]  # the log has the name
    everything = json.dumps(logged)
    assert token not in everything and "secret-in-query" not in everything  # no token, no query string

    after = (await site.client.get("/metrics")).text
    assert "Random0x" not in after  # ... the metrics only a bounded value
    rises = {
        (name, tuple(sorted(labels.items()))): sample(after, name, **labels) - sample(before, name, **labels)
        for name, labels in [
            ("groupgraph_http_requests_total", {"route": "/graphql", "method": "POST", "status": "200"}),
            ("groupgraph_http_requests_total", {"route": "/exports/groups.csv", "status": "403"}),
            ("groupgraph_http_requests_total", {"route": "other", "status": "404"}),
            ("groupgraph_graphql_operation_seconds_count", {"operation": "KnownOperation", "type": "query"}),
            ("groupgraph_graphql_operation_seconds_count", {"operation": "other", "type": "query"}),
        ]
    }
    assert list(rises.values()) == [4, 1, 1, 1, 3], rises
    assert sample(after, "groupgraph_db_pool_checked_out") == 0
    assert sample(after, "groupgraph_email_outbox_waiting") == 0

    # the access log off; the log and the metrics cost no SQL statement either way
    quiet = create_app(site.settings.model_copy(update={"access_log": False}), site.database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=quiet), base_url="http://testserver") as client:
        capsys.readouterr()
        with site.statements() as counted:
            await client.post("/graphql", json={"query": "query KnownOperation { viewer { id } }"}, headers=headers)
        assert [line["event"] for line in log_lines(capsys.readouterr().err)].count("request") == 0
    assert counted.count == statements_with_log


def test_library_logs_and_tracebacks_are_single_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from app.runtime.logs import configure_logging

    configure_logging("INFO")
    capsys.readouterr()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    logging.getLogger("uvicorn.error").debug("below the level")
    err = capsys.readouterr().err
    (line,) = log_lines(err)  # one line, the traceback inside it
    assert line["logger"] == "uvicorn.error" and line["level"] == "error" and line["pid"] == os.getpid()
    assert "Traceback" in line["exception"] and "RuntimeError: boom" in line["exception"]


# --- tracing ---------------------------------------------------------------------------------------------


async def test_the_spans_of_one_dashboard_request(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    leader = await site.user("Lea", kind="STAFF")
    pupil = await site.user("Pia", kind="LEARNER")
    school = await site.group("School")
    await site.member(leader, school, "LEADER")
    await site.member(pupil, school)
    token = await site.token(leader)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced = create_app(site.settings, site.database, tracer_provider=provider)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=traced), base_url="http://testserver") as client:
            await client.get("/readyz")  # not traced
            with site.statements() as counted:
                response = await client.post(
                    "/graphql", json={"query": D1, "variables": {"id": gid(school.id)}},  # type: ignore[arg-type]
                    headers={"Authorization": f"Bearer {token}"},
                )
    finally:
        traced.state.tracing.stop()
    assert response.status_code == 200 and "errors" not in response.json()
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.parent is None]
    (operation,) = [s for s in spans if s.name == "query Dashboard"]
    assert server.name == "POST /graphql" and len({s.context.trace_id for s in spans}) == 1
    assert server.attributes["groupgraph.request_id"] == response.headers["x-request-id"]
    assert operation.parent.span_id == server.context.span_id  # type: ignore[union-attr]
    assert operation.attributes["graphql.operation.name"] == "Dashboard"
    # a span per SQL statement: the token lookup under the request, the operation's under the operation
    sql = [s for s in spans if s.attributes.get("db.statement") and not s.name.startswith(("BEGIN", "COMMIT"))]
    assert len(sql) == counted.count > 4
    parents = [s.parent.span_id for s in sql]  # type: ignore[union-attr]
    assert parents.count(server.context.span_id) == 1  # the bearer token's session
    assert parents.count(operation.context.span_id) == counted.count - 1
    (logged,) = [e for e in log_lines(capsys.readouterr().err) if e["event"] == "request" and e["path"] == "/graphql"]
    assert logged["trace_id"] == format(server.context.trace_id, "032x")  # logs and traces meet
    ids = {s.context.span_id for s in spans}
    assert all(s.parent.span_id in ids for s in spans if s is not server)  # type: ignore[union-attr]


# --- migrations from several hosts at once ---------------------------------------------------------------


@pytest.mark.engines("postgres")
async def test_concurrent_migrations_wait_for_each_other(engine: str) -> None:
    import asyncpg

    from app.store.migrate import upgrade
    from tests.conftest import PG_ADMIN_DSN, PG_URL_BASE

    name = f"groupgraph_migrate_{os.getpid()}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    databases = [Database(Settings(database_url=PG_URL_BASE + name)) for _ in range(3)]
    try:
        results = await asyncio.gather(*(upgrade(d.engine) for d in databases), return_exceptions=True)
        assert [r for r in results if r is not None] == []  # without the lock: duplicate key on pg_type
        async with databases[0].engine.connect() as connection:
            versions = (await connection.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
    finally:
        for database in databases:
            await database.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- real servers ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _migrate(url: str) -> None:
    from app.store.migrate import upgrade

    database = Database(Settings(database_url=url))
    try:
        await upgrade(database.engine)
    finally:
        await database.dispose()


@contextmanager
def serving(tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`groupgraph serve` on a migrated SQLite file and a free port; stopped (and reaped) at the end."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'served.db'}"
    environment = {**os.environ, "GROUPGRAPH_DATABASE_URL": url, "GROUPGRAPH_GRAPHIQL": "false", **env}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if not (tmp_path / "served.db").exists():
        asyncio.run(_migrate(url))
    port = free_port()
    err = tmp_path / f"serve-{port}.log"
    with err.open("wb") as sink:
        process = subprocess.Popen(
            [GROUPGRAPH, "serve", "--port", str(port), *args], env=environment, stderr=sink, stdout=sink, cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.2)
        yield process, base, err
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


QUERY = {"query": "query Ping { __typename }"}


def test_two_workers_count_every_request_once(tmp_path: Path) -> None:
    """Whichever worker answers, a scrape counts every request; proxy headers are honoured from a trusted
    address; SIGTERM to the parent stops both workers and removes the run's metrics directory."""
    with serving(tmp_path, "--workers", "2", "--forwarded-allow-ips", "127.0.0.1") as (process, base, err):

        def ask(_: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as client:  # a connection per request
                assert client.post("/graphql", json=QUERY, headers={"x-forwarded-for": "203.0.113.7"}).status_code == 200

        sent = 0
        with ThreadPoolExecutor(4) as pool:
            while sent < 200:
                list(pool.map(ask, range(20)))
                sent += 20
                served_by = {e["pid"] for e in log_lines(err.read_text()) if e["event"] == "request" and e["path"] == "/graphql"}
                if len(served_by) == 2:
                    break
        assert len(served_by) == 2, "one worker answered everything"
        scrape = httpx.get(f"{base}/metrics").text
        assert sample(scrape, "groupgraph_http_requests_total", route="/graphql") == sent
        assert sample(scrape, "groupgraph_graphql_operation_seconds_count") == sent
        access = [e for e in log_lines(err.read_text()) if e["event"] == "request" and e["path"] == "/graphql"]
        assert len(access) == sent and {e["client"] for e in access} == {"203.0.113.7"}
        worker = next(iter(served_by))
        environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
        (directory,) = [Path(v.split(b"=", 1)[1].decode()) for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
        assert directory.is_dir() and directory.name.startswith("groupgraph-metrics-")

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        stopped = time.monotonic() - started
    events = [e["event"] for e in log_lines(err.read_text())]
    assert events.count("Application shutdown complete.") == 2, events[-12:]
    assert stopped < 15
    assert not directory.exists(), "the run's metrics directory was left behind"


def _start_request(base: str, body: bytes) -> socket.socket:
    """A POST /graphql whose headers and first half of the body are sent; the rest later."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def _response(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_sigterm_finishes_in_flight_requests_then_stops(tmp_path: Path) -> None:
    with serving(tmp_path, GROUPGRAPH_SHUTDOWN_GRACE_SECONDS="2") as (process, base, err):
        body = json.dumps(QUERY).encode()
        finishing = _start_request(base, body)
        stuck = _start_request(base, body)
        time.sleep(0.5)  # both requests are in the server's hands

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:  # no new connections once the worker stops
            try:
                socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.1)

        finishing.sendall(body[len(body) // 2 :])  # the in-flight request completes after the signal
        answer = _response(finishing)  # read until the server closes the connection
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"data":{"__typename":"Query"}}'), answer

        # the other one never sends the rest: cut after the grace period, and the worker exits
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert 1.5 < time.monotonic() - started < 15
        assert _response(stuck).startswith(b"HTTP/1.1 500 ")  # uvicorn's answer to a request it cut
        finishing.close()
        stuck.close()
    events = [e["event"] for e in log_lines(err.read_text())]
    assert any(e.startswith("Cancel 1 running task") for e in events), events[-10:]
    assert "Application shutdown complete." in events


def test_sigterm_closes_websockets_as_going_away_and_ends_streams(tmp_path: Path) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    port = free_port()
    err = tmp_path / "ws.log"
    code = f"from app.http.serving import run; run('tests.ws_app:app', host='127.0.0.1', port={port}, workers=1)"
    with err.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=sink, stdout=sink)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
            time.sleep(0.2)
        with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10) as ws, httpx.stream(
            "GET", f"http://127.0.0.1:{port}/stream", timeout=10
        ) as stream:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
            lines = stream.iter_lines()
            assert next(lines) == "tick"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert list(lines)[-1] == "bye"  # the endless stream ended by itself (app.runtime.lifecycle) ...
            assert time.monotonic() - started < 5  # ... well before the 30 s grace period
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # going away, not 1012
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    lines = log_lines(err.read_text())
    assert any(e["event"] == "websockets_closed" and e["count"] == 1 for e in lines), lines[-5:]


# --- the dashboard file ----------------------------------------------------------------------------------


def test_the_grafana_dashboard_shows_existing_metrics() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana" / "groupgraph.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"groupgraph_[a-z_]+", e)}
    declared = {
        name.removesuffix("_total") for collector in metrics.registry._collector_to_names for name in
        metrics.registry._collector_to_names[collector]
    } | {"groupgraph_email_outbox_waiting", "groupgraph_email_outbox_given_up"}
    declared = {re.sub(r"_(bucket|count|sum|created)$", "", n) for n in declared}
    assert used and {u.removesuffix("_total") for u in used} <= declared, sorted(used - declared)
