"""Run uvicorn: JSON logs from the first line, proxy headers, metrics shared by the workers, graceful stop.

- Several workers share one listening socket that asyncio recognises as TCP: uvicorn's `Config.bind_socket()`
  leaves `proto` at 0 and asyncio only sets TCP_NODELAY on accepted sockets whose proto is IPPROTO_TCP, so
  with `--workers N` every keep-alive response after the first waited ~40 ms for the client's delayed ACK
  (reported upstream to uvicorn as #3149; measured by scripts/bench: 48 ms instead of 4 ms).
- Metrics: the workers write their values into one directory made empty for the run
  (PROMETHEUS_MULTIPROC_DIR; see app.runtime.metrics), so any worker's /metrics counts every request.
- SIGTERM (to the one process, or to the parent of the workers, which passes it on): a worker closes its
  listening socket, closes its open WebSockets with 1001 (going away), lets in-flight requests and streamed
  exports finish for up to `grace_seconds`, cuts what is left, runs the app's shutdown and exits.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from uvicorn.supervisors import Multiprocess, multiprocess

from app.runtime.logs import level_name, log, logging_config


class TcpConfig(uvicorn.Config):
    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return sock
        fixed = socket.socket(sock.family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())
        fixed.set_inheritable(True)
        return fixed


class GracefulServer(uvicorn.Server):
    """uvicorn's shutdown, after telling endless streams to end and closing WebSockets with 1001 (uvicorn
    itself would send 1012)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        from app.http.observe import close_websockets, open_websockets
        from app.runtime.lifecycle import begin_stop

        begin_stop()  # endless streams end by themselves (app.runtime.lifecycle)
        if open_websockets():
            closed = await close_websockets()
            log.info("websockets_closed", count=closed, code=1001)
        await super().shutdown(sockets)


class GracefulProcess(multiprocess.Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = GracefulServer(config=self.config)
        return self._server


@contextmanager
def metrics_directory() -> Iterator[str]:
    """PROMETHEUS_MULTIPROC_DIR for this run: the one given (emptied of old values), else a new one (removed
    at the end)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        yield given
        return
    made = tempfile.mkdtemp(prefix="groupgraph-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    try:
        yield made
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(made, ignore_errors=True)


def run(
    app: str,
    host: str,
    port: int,
    workers: int,
    log_level: str = "INFO",
    proxy_headers: bool = True,
    forwarded_allow_ips: str | None = None,
    grace_seconds: float = 30.0,
    ws_max_size: int = 1_000_000,
) -> None:
    # WebSocket (live updates): no per-message compression, whose zlib state per connection costs more memory
    # than the small JSON events save; frames over ws_max_size are refused by the protocol itself
    config = TcpConfig(
        app, host=host, port=port, workers=workers, log_config=logging_config(log_level), log_level=level_name(log_level).lower(),
        access_log=False, proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips,
        timeout_graceful_shutdown=grace_seconds,  # type: ignore[arg-type]  # asyncio.timeout takes a float
        ws_per_message_deflate=False, ws_max_size=ws_max_size,
    )
    if workers > 1:
        with metrics_directory():
            # uvicorn's supervisor makes its workers from the module's Process class: ours stop gracefully
            multiprocess.Process = GracefulProcess  # type: ignore[misc]
            Multiprocess(config, sockets=[config.bind_socket()]).run()
    elif os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # one worker, but the operator chose multiprocess mode
        with metrics_directory():
            GracefulServer(config).run()
    else:
        GracefulServer(config).run()
