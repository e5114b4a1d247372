"""A seeded database per (engine, preset), cached in .bench/, and uvicorn started as a subprocess."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CACHE = Path(".bench")
PG_SERVER = os.environ.get("GROUPGRAPH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def database_url(engine: str, preset: str) -> str:
    """The bench database of this checkout: PostgreSQL names carry a hash of the checkout's path, so two
    checkouts sharing one server never reseed each other's database."""
    if engine == "sqlite":
        return f"sqlite+aiosqlite:///{(CACHE / f'sqlite-{preset}.db').resolve()}"
    checkout = hashlib.sha1(str(Path.cwd().resolve()).encode()).hexdigest()[:8]
    return f"{PG_SERVER.replace('postgresql://', 'postgresql+asyncpg://', 1)}/groupgraph_bench_{preset}_{checkout}"


def driver_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _sqlite_holds(path: str, digest: str) -> bool:
    import sqlite3

    if not Path(path).exists():
        return False
    with sqlite3.connect(path) as conn:
        try:
            return conn.execute("SELECT 1 FROM api_token WHERE token_hash = ?", (digest,)).fetchone() is not None
        except sqlite3.OperationalError:
            return False


async def _holds_token(url: str, token: str) -> bool:
    """The seeded database still holds the admin token of the viewers file (no one reseeded it since)."""
    from app.services.auth import token_hash

    if url.startswith("sqlite"):
        return _sqlite_holds(url.split("///", 1)[1], token_hash(token))
    import asyncpg

    try:
        conn = await asyncpg.connect(driver_dsn(url))
    except asyncpg.InvalidCatalogNameError:
        return False
    try:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_token WHERE token_hash = $1)", token_hash(token)))
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()


async def _pg_recreate(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _migrate(url: str) -> None:
    from app.settings import Settings
    from app.store.db import Database
    from app.store.migrate import upgrade

    database = Database(Settings(database_url=url))
    try:
        await upgrade(database.engine)
    finally:
        await database.dispose()


def ensure_seeded(engine: str, preset: str, reseed: bool = False) -> dict[str, Any]:
    """Seed once per (engine, preset); the viewers file marks a finished seed."""
    from app.demo.presets import seed_preset, write_viewers

    CACHE.mkdir(exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    url = database_url(engine, preset)
    marker = CACHE / f"viewers-{engine}-{preset}.json"
    if marker.exists() and not reseed:
        cached = json.loads(marker.read_text())
        if asyncio.run(_holds_token(url, cached["viewers"]["admin"]["token"])):
            asyncio.run(_migrate(url))  # a cached database gets the indexes of newer migrations
            return cached
    marker.unlink(missing_ok=True)
    if engine == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(url.split("///", 1)[1] + suffix).unlink(missing_ok=True)
    else:
        asyncio.run(_pg_recreate(url))
    print(f"seeding {preset} on {engine} ...", flush=True)
    result = asyncio.run(seed_preset(url, preset))
    assert result is not None
    write_viewers(marker, result)
    print(f"seeded in {result['seconds']:.1f}s", flush=True)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _status(pid: int, key: str) -> int:
    """A /proc/<pid>/status value in kB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Server:
    url: str
    workers: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    base: str = ""

    def start(self) -> None:
        port = free_port()
        quiet = {"GROUPGRAPH_ACCESS_LOG": "false", "GROUPGRAPH_LOG_LEVEL": "WARNING"}  # as before the access log
        env = {**quiet, **os.environ, **self.env, "GROUPGRAPH_DATABASE_URL": self.url, "GROUPGRAPH_BENCH": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(self.workers)],
            env=env,
        )
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200 and len(self.worker_pids()) >= 1:
                    if self.workers == 1 or len(self.worker_pids()) >= self.workers:
                        return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}")
            time.sleep(0.3)
        raise RuntimeError("uvicorn did not become ready in 60 s")

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn itself with one worker, its children with more."""
        assert self.process is not None
        if self.workers == 1:
            return [self.process.pid]
        return [pid for pid in _children(self.process.pid) if "spawn_main" in _cmdline(pid)]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the serving processes have used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return total / ticks

    def reset_peak_rss(self) -> None:
        for pid in self.worker_pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM (Linux 4.0+)
            except OSError:
                pass

    def peak_rss_mb(self) -> float:
        return max((_status(pid, "VmHWM") for pid in self.worker_pids()), default=0) / 1024

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
