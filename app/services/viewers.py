"""Many sign-ins checked at once, each with its Reach rows: one statement for every subscriber an event goes to
(the course catalogue's version rides along, as it does with a request's Reach).

The same rules as `authenticate` (a session token: not revoked, not expired; an API token: not revoked, not
expired when it has an expiry; only ACTIVE accounts) and the same rows as `load_reach_rows`, read together
so that the decision about an event rests on one snapshot of both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, bindparam, null, select, union_all
from sqlalchemy.sql.expression import cast

from app.services.auth import (
    API_TOKEN_PREFIX,
    SESSION_PREFIX,
    Credential,
    api_token_live,
    session_live,
    token_hash,
)
from app.store.models import ApiToken, CatalogueVersion, Session, User, utcnow
from dataloaders.reach import reach_rows_of
from dataloaders.records import ids_in
from dataloaders.store import Store
from permissions.reach import Reach


@dataclass
class Viewer:
    """A token's sign-in as the database says now, with its Reach (None: not signed in any more)."""

    credential: Credential | None
    reach: Reach = field(default_factory=Reach.anonymous)


@cache
def _statement(sessions: bool, api_tokens: bool, members_see_groups: bool, postgres: bool) -> Select[Any]:
    """The statement for sessions and/or API tokens, built once (SQLAlchemy takes a few milliseconds to build
    one this size): its parameters are `sessions`, `api_tokens` (token digests) and `now`."""
    now = bindparam("now")
    no_id = cast(null(), Integer)
    parts = []
    if sessions:
        parts.append(
            select(Session.token_hash.label("digest"), Session.user_id.label("user_id"), Session.id.label("session_id"),
                   no_id.label("api_token_id"))
            .where(ids_in(Session.token_hash, postgres, "sessions"), session_live(now))
        )
    if api_tokens:
        parts.append(
            select(ApiToken.token_hash, ApiToken.user_id, no_id, ApiToken.id)
            .where(ids_in(ApiToken.token_hash, postgres, "api_tokens"), api_token_live(now))
        )
    signed_in = (union_all(*parts) if len(parts) > 1 else parts[0]).cte("signed_in")
    reach = reach_rows_of(select(signed_in.c.user_id), members_see_groups, now).subquery("reach")
    viewer, kind, ident, role = reach.c
    version = CatalogueVersion.__table__.c  # type: ignore[attr-defined]
    catalogue = select(version.version).where(version.id == 1).scalar_subquery()  # rides along, as with a request's Reach
    return (
        select(User, signed_in.c.digest, signed_in.c.session_id, signed_in.c.api_token_id, kind, ident, role, catalogue)
        .join_from(signed_in, User, User.id == signed_in.c.user_id)
        .outerjoin(reach, viewer == signed_in.c.user_id)
        .where(User.status == "ACTIVE")
    )


async def viewers_now(store: Store, tokens: Iterable[str], members_see_groups: bool = True) -> dict[str, Viewer]:
    """token -> Viewer for every token, in one statement (none when no token has a known prefix)."""
    tokens = set(tokens)
    sessions = {token_hash(t): t for t in tokens if t.startswith(SESSION_PREFIX)}
    api_tokens = {token_hash(t): t for t in tokens if t.startswith(API_TOKEN_PREFIX)}
    out = {t: Viewer(None) for t in tokens}
    if not sessions and not api_tokens:
        return out
    params: dict[str, Any] = {"now": utcnow()}
    if sessions:
        params["sessions"] = sorted(sessions)
    if api_tokens:
        params["api_tokens"] = sorted(api_tokens)
    statement = _statement(bool(sessions), bool(api_tokens), members_see_groups, store.dialect == "postgresql")
    rows = await store.all(statement, params)
    found: dict[str, tuple[Credential, list[tuple[str, int, str | None]]]] = {}
    for user, digest, session_id, api_token_id, k, i, r, version in rows:
        if version is not None:  # the batch's course loader needs no statement of its own (dataloaders.courses)
            store.catalogue_version = int(version)
        token = sessions.get(digest) or api_tokens[digest]
        if token not in found:
            found[token] = (Credential(user, session_id=session_id, api_token_id=api_token_id), [])
        if k is not None:
            found[token][1].append((k, int(i), r))
    for token, (credential, reach_rows) in found.items():
        user = credential.user
        roles = [r for r in user.site_roles.split(",") if r]
        out[token] = Viewer(
            credential, Reach.from_rows(user.id, roles, reach_rows, members_see_groups=members_see_groups)  # type: ignore[arg-type]
        )
    return out
