"""Run uvicorn; with several workers, on a listening socket that asyncio recognises as TCP.

uvicorn's `Config.bind_socket()` leaves `proto` at 0 and asyncio only sets TCP_NODELAY on accepted sockets
whose proto is IPPROTO_TCP, so with `--workers N` every keep-alive response after the first waited ~40 ms
for the client's delayed ACK (reported upstream to uvicorn as #3149; measured by scripts/bench: 48 ms instead of 4 ms).
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess


class TcpConfig(uvicorn.Config):
    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return sock
        fixed = socket.socket(sock.family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())
        fixed.set_inheritable(True)
        return fixed


def run(app: str, host: str, port: int, workers: int, log_level: str = "warning", ws_max_size: int = 1_000_000) -> None:
    # WebSocket (live updates): no per-message compression, whose zlib state per connection costs more memory
    # than the small JSON events save; frames over ws_max_size are refused by the protocol itself
    config = TcpConfig(
        app, host=host, port=port, workers=workers, log_level=log_level, ws_per_message_deflate=False,
        ws_max_size=ws_max_size,
    )
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
