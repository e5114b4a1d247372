"""Many sign-ins checked at once, each with its Reach rows: one statement for every subscriber an event goes to
(the course catalogue's version rides along, as it does with a request's Reach).

The same rules as `authenticate` (a session token: not revoked, not expired; an API token: not revoked, not
expired when it has an expiry; only ACTIVE accounts) and the same rows as `load_reach_rows`, read together
so that the decision about an event rests on one snapshot of both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Integer,
    Select,
    String,
    bindparam,
    inspect,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
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
from dataloaders.reach import reach_parts, reach_rows_of
from dataloaders.records import UserRecord, columns_as_read, ids_in
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
    one this size): its parameters are `sessions`, `api_tokens` (token digests) and `now`. Rows: the digest, the
    session or API token id, a Reach row (kind, id, role; NULL when none), the catalogue's version, then the
    user's columns (read lean: no ORM entity)."""
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
        select(signed_in.c.digest, signed_in.c.session_id, signed_in.c.api_token_id, kind, ident, role, catalogue,
               *columns_as_read(UserRecord, postgres))
        .join_from(signed_in, User, User.id == signed_in.c.user_id)
        .outerjoin(reach, viewer == signed_in.c.user_id)
        .where(User.status == "ACTIVE")
    )


@cache
def _sign_in_statement(prefix: str, members_see_groups: bool) -> CompoundSelect:
    """One token's sign-in with its Reach and the course catalogue's version, in one statement built once per
    token kind and site default: (kind, id, role, the user's columns, the session or API token id) rows, the
    first ("signin") holding the user and the token's id, the others a Reach row (kind, id, role) or the
    catalogue's version, their other columns NULL. Parameters: `digest` and `now`. The Reach's parts find the
    viewer through the token (a subquery each), so an unknown or ended token reads no Reach."""
    digest, now = bindparam("digest"), bindparam("now")
    table, live = (Session, session_live(now)) if prefix == SESSION_PREFIX else (ApiToken, api_token_live(now))
    token = table.__table__.c  # type: ignore[attr-defined]
    users = User.__table__  # type: ignore[attr-defined]
    found = (token.token_hash == digest, live)
    viewer = select(token.user_id).where(*found).scalar_subquery()
    blank = [cast(null(), c.type) for c in (*UserRecord.columns, token.id)]
    signin = (
        select(literal("signin"), users.c.id, cast(null(), String), *UserRecord.columns, token.id)
        .join_from(table.__table__, users, users.c.id == token.user_id)  # type: ignore[attr-defined]
        .where(*found)
    )
    return union_all(signin, *(part.add_columns(*blank) for part in reach_parts(viewer, members_see_groups, now)))


def _detached_user(values: Sequence[Any]) -> User:
    """A User from its columns, as the ORM would have loaded and then expunged it (the sign-in's user is never
    attached to the request's session: a rollback there cannot expire it)."""
    user = _USER_CLASS.new_instance()
    for column, value in zip(UserRecord.columns, values, strict=True):
        set_committed_value(user, column.key, value)
    make_transient_to_detached(user)
    return user


_USER_CLASS = inspect(User).class_manager


async def signed_in_with_reach(
    store: Store, token: str, members_see_groups: bool
) -> tuple[Credential | None, Reach | None]:
    """`authenticate` and `load_reach_rows` in one statement through the request's store (it also sets
    `store.catalogue_version`): the credential (None for an unknown, ended or not ACTIVE sign-in) and the
    viewer's Reach."""
    if token.startswith(SESSION_PREFIX):
        prefix = SESSION_PREFIX
    elif token.startswith(API_TOKEN_PREFIX):
        prefix = API_TOKEN_PREFIX
    else:
        return None, None
    rows = await store.rows(_sign_in_statement(prefix, members_see_groups), {"digest": token_hash(token), "now": utcnow()})
    user: User | None = None
    token_id = None
    reach_rows: list[tuple[str, int, str | None]] = []
    for row in rows:
        kind = row[0]
        if kind == "signin":
            user, token_id = _detached_user(row[3:-1]), row[-1]
        elif kind == "catalogue":
            store.catalogue_version = int(row[1])
        else:
            reach_rows.append((kind, int(row[1]), row[2]))
    if user is None or user.status != "ACTIVE":
        return None, None
    credential = Credential(user, session_id=token_id) if prefix == SESSION_PREFIX else Credential(user, api_token_id=token_id)
    return credential, Reach.of_user(user, reach_rows, members_see_groups)


async def viewers_now(store: Store, tokens: Iterable[str], members_see_groups: bool = True) -> dict[str, Viewer]:
    """token -> Viewer for every token, in one statement (none when no token has a known prefix). One token
    goes through a request's sign-in statement: its digest is bound as one value, so PostgreSQL plans it once
    per connection, where the arrays of this statement have it planned again on every call (~0.9 ms)."""
    tokens = set(tokens)
    if len(tokens) == 1:
        (token,) = tokens
        credential, reach = await signed_in_with_reach(store, token, members_see_groups)
        return {token: Viewer(credential, reach) if credential is not None and reach is not None else Viewer(None)}
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
    rows = await store.rows(statement, params)
    found: dict[str, tuple[Credential, list[tuple[str, int, str | None]]]] = {}
    for row in rows:
        digest, session_id, api_token_id, k, i, r, version = row[:7]
        if version is not None:  # the batch's course loader needs no statement of its own (dataloaders.courses)
            store.catalogue_version = int(version)
        token = sessions.get(digest) or api_tokens[digest]
        if token not in found:
            found[token] = (Credential(_detached_user(row[7:]), session_id=session_id, api_token_id=api_token_id), [])
        if k is not None:
            found[token][1].append((k, int(i), r))
    for token, (credential, reach_rows) in found.items():
        out[token] = Viewer(credential, Reach.of_user(credential.user, reach_rows, members_see_groups))
    return out
