"""What the outermost layer (request id, metrics, access log: app.http.observe) costs per request, measured
in process on GET /healthz (no SQL), with and without it: `.venv/bin/python scripts/observe_overhead.py`."""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stderr
from typing import Any

from starlette.applications import Starlette

from app.server import create_app
from app.settings import Settings

N = 5000


async def timed(asgi: Any) -> float:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/healthz", "raw_path": b"/healthz", "query_string": b"", "root_path": "", "headers": [],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(N):
        await asgi(dict(scope), receive, send)
    return (time.perf_counter() - started) / N * 1e6


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        results: dict[str, list[float]] = {"plain": [], "observed": [], "observed, no access log": []}
        for access_log in (True, False):
            settings = Settings(database_url=f"sqlite+aiosqlite:///{directory}/o.db", access_log=access_log)
            app = create_app(settings)
            observed = app.build_middleware_stack()
            plain = Starlette.build_middleware_stack(app)
            with redirect_stderr(io.StringIO()):  # the access lines are formatted and written, into memory
                for _ in range(5):
                    if access_log:
                        results["plain"].append(await timed(plain))
                        results["observed"].append(await timed(observed))
                    else:
                        results["observed, no access log"].append(await timed(observed))
    for name, values in results.items():
        print(f"{name:>24}: {statistics.median(values):7.1f} us per request (median of {len(values)} x {N})")


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
