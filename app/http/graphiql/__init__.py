"""GraphiQL (with the explorer plugin) served from files installed with groupgraph: it works offline."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from app.services.cookies import SESSION_COOKIE

HERE = Path(__file__).resolve().parent
ASSETS = {p.name: p for p in HERE.iterdir() if p.suffix in (".js", ".css")}
MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def graphiql_page(request: Request) -> HTMLResponse:
    """The page; the headers editor starts with 'Authorization: Bearer ' unless a session cookie signs in."""
    signed_in = bool(request.cookies.get(SESSION_COOKIE))
    headers = {} if signed_in else {"Authorization": "Bearer "}
    html = (HERE / "index.html").read_text().replace("__DEFAULT_HEADERS__", json.dumps(json.dumps(headers)))
    return HTMLResponse(html, headers={"cache-control": "no-store"})


async def asset(request: Request) -> Response:
    path = ASSETS.get(request.path_params["name"])
    if path is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    # the names carry their versions: a browser keeps them
    return FileResponse(path, media_type=MEDIA[path.suffix], headers={"cache-control": "public, max-age=31536000, immutable"})


routes = [Route("/graphiql/{name}", asset)]
