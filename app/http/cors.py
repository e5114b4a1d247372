"""Cross-origin access for single-page apps: exact origins only, in front of /graphql, /exports and /imports."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from app.settings import Settings

CORS_PATHS = ("/graphql", "/exports/", "/imports/")
ALLOWED_HEADERS = (
    "authorization", "content-type", "accept", "apollo-require-preflight", "x-apollo-operation-name",
    "x-requested-with", "graphql-preflight", "x-csrf-token",
)
EXPOSED_HEADERS = ("x-request-id", "retry-after", "www-authenticate", "content-disposition")


class PathCors:
    """Starlette's CORS middleware, applied only to the API's paths; the rest (health, metrics) stay
    same-origin. With no origins configured nothing is added: the browser's own policy refuses everyone."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_credentials=True,  # Starlette echoes the exact origin, never '*'
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=list(ALLOWED_HEADERS),
            expose_headers=list(EXPOSED_HEADERS),
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/graphql" or path.startswith(CORS_PATHS[1:]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def cors_origins(settings: Settings) -> list[str]:
    origins = [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]
    if "*" in origins:
        raise ValueError("GROUPGRAPH_CORS_ORIGINS takes exact origins (https://app.example.com), never '*'")
    return origins
