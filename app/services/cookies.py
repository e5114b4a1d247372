"""The opt-in cookie session mode: an HttpOnly session cookie that page scripts cannot read, and the CSRF
rule that goes with it (a cookie-authenticated POST must carry a header that a browser sends cross-site
only after a CORS preflight that this server approved)."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request

SESSION_COOKIE = "groupgraph_session"
CSRF_HEADERS = ("x-csrf-token", "apollo-require-preflight", "x-requested-with", "graphql-preflight")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def session_cookie(request: Request | None) -> str | None:
    if request is None or request.headers.get("authorization"):
        return None  # a bearer token always wins
    return request.cookies.get(SESSION_COOKIE) or None


def has_csrf_header(request: Request) -> bool:
    return any(request.headers.get(h) for h in CSRF_HEADERS)


def set_session_cookie(request: Request | None, token: str, expires: datetime) -> str:
    """Set-Cookie for a new session: HttpOnly, SameSite=Lax, Secure unless served on localhost."""
    parts = [f"{SESSION_COOKIE}={token}", "Path=/", "HttpOnly", "SameSite=Lax",
             f"Expires={expires.strftime('%a, %d %b %Y %H:%M:%S GMT')}"]
    host = request.url.hostname if request is not None else None
    if host not in LOCAL_HOSTS:
        parts.append("Secure")
    return "; ".join(parts)


def clear_session_cookie(request: Request | None) -> str:
    return set_session_cookie(request, "", datetime(1970, 1, 1)).replace("HttpOnly; ", "HttpOnly; Max-Age=0; ")
