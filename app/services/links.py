"""Signed download links: a URL that works as a plain <a href> (no Authorization header), bound to one user,
valid until its expiry, and refused (403) when anything in it was changed.

The link is the path and its query parameters plus `u` (the user id), `exp` (Unix seconds) and `sig`: an
HMAC-SHA256 over the path and every other parameter, sorted. The key is GROUPGRAPH_EXPORT_LINK_KEY, or else
one random key made once and kept in the database (signing_key), so that every worker and host signs and
checks alike. A link grants nothing by itself: at download the user's account must still be active and
the user must still hold the export's permission (the same decision as a download with a bearer token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.runtime.errors import ConcurrentChange
from app.settings import Settings
from app.store.db import Database
from app.store.models import SigningKey

PURPOSE = "export_link"
SIGNED_PARAMS = ("u", "exp", "sig")
_keys: dict[str, bytes] = {}


class BadLink(Exception):
    """A link that was changed, or that has expired."""


async def link_key(database: Database, settings: Settings) -> bytes:
    """The signing key: the setting, or the database's (made on first use; kept in memory after)."""
    if settings.export_link_key:
        return settings.export_link_key.encode()
    cached = _keys.get(database.url)
    if cached is not None:
        return cached
    async with database.session() as session:
        secret = await session.scalar(select(SigningKey.secret).where(SigningKey.purpose == PURPOSE))
    if secret is None:
        try:
            async with database.transaction() as session:
                session.add(SigningKey(purpose=PURPOSE, secret=secrets.token_urlsafe(48)))
        except (IntegrityError, ConcurrentChange):  # another request or worker made it first: use theirs
            pass
        async with database.session() as session:
            secret = await session.scalar(select(SigningKey.secret).where(SigningKey.purpose == PURPOSE))
    assert secret is not None
    _keys[database.url] = secret.encode()
    return _keys[database.url]


def _signature(key: bytes, path: str, params: Iterable[tuple[str, str]]) -> str:
    message = path + "?" + urlencode(sorted(params))
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(key: bytes, path: str, params: dict[str, str], user_id: int, expires_at: int) -> str:
    """The relative URL `path?params&u=..&exp=..&sig=..`."""
    pairs = [(k, v) for k, v in params.items() if v is not None] + [("u", str(user_id)), ("exp", str(expires_at))]
    return path + "?" + urlencode([*sorted(pairs), ("sig", _signature(key, path, pairs))])


def link_seconds_from_now(settings: Settings) -> int:
    return int(time.time()) + settings.export_link_seconds


def is_signed(params: Iterable[tuple[str, str]]) -> bool:
    return any(k == "sig" for k, _ in params)


def verify(key: bytes, path: str, params: list[tuple[str, str]], now: float | None = None) -> int:
    """The user id the link was given to. BadLink when it was changed (any parameter added, removed or
    altered) or has expired."""
    signatures = [v for k, v in params if k == "sig"]
    users = [v for k, v in params if k == "u"]
    expiries = [v for k, v in params if k == "exp"]
    if len(signatures) != 1 or len(users) != 1 or len(expiries) != 1:
        raise BadLink("This link is not valid.")
    rest = [(k, v) for k, v in params if k != "sig"]
    if not hmac.compare_digest(_signature(key, path, rest), signatures[0]):
        raise BadLink("This link is not valid.")
    if not (users[0].isdigit() and expiries[0].isdigit()):
        raise BadLink("This link is not valid.")
    if int(expiries[0]) < (time.time() if now is None else now):
        raise BadLink("This link has expired: ask for a new one.")
    return int(users[0])
