"""Sign-in: login, logout and long-lived API tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import strawberry
from sqlalchemy import select, update
from strawberry.types import Info

from app.runtime.errors import BadInput, NotFound, Unauthenticated
from app.runtime.ids import require_id, to_global_id
from app.services.audit import audit
from app.services.auth import (
    API_TOKEN_PREFIX,
    SESSION_PREFIX,
    Credential,
    api_token_live,
    new_token,
    token_hash,
    verify_password,
)
from app.services.cookies import clear_session_cookie, set_session_cookie
from app.services.events import reach_changed
from app.services.throttle import check_login_allowed, slow_down
from app.store.models import ApiToken as ApiTokenRow
from app.store.models import LoginEvent, Session, utcnow
from app.store.models import User as UserRow
from permissions.classes import authenticated
from resolvers.common import clean_text
from resolvers.views import UserType, normalize_email, prepare_users

SIGN_IN_FAILED = "The email or password is not right."
MAX_LISTED_TOKENS = 500


@strawberry.type
class LoginPayload:
    token: str = strawberry.field(
        description="Send as 'Authorization: Bearer <token>'. Empty in cookie session mode (login(cookie: true))."
    )
    expires_at: datetime
    user: UserType


@strawberry.type
class ApiTokenPayload:
    token: str = strawberry.field(description="Shown once; only a hash is stored.")
    name: str
    expires_at: datetime | None
    id: strawberry.ID = strawberry.field(description="The token's id, for revokeApiToken and apiTokens.")


@strawberry.type(description="An API token of the caller's: its secret is never shown again, only these facts.")
class ApiToken:
    row: strawberry.Private[ApiTokenRow]

    @strawberry.field(description="Pass to revokeApiToken.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("ApiToken", self.row.id))  # type: ignore[arg-type]

    @strawberry.field(description="The name given at createApiToken.")
    def name(self) -> str:
        return self.row.name

    @strawberry.field(description="When it was made.")
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(
        description="When it stops working (every token ends: createApiToken's default and maximum lifetimes "
        "are settings)."
    )
    def expires_at(self) -> datetime | None:
        return self.row.expires_at

    @strawberry.field(
        description="When it was revoked: by revokeApiToken, by logout with it, or because the account's "
        "password changed or the account was DENIED. Null while it works."
    )
    def revoked_at(self) -> datetime | None:
        return self.row.revoked_at


@strawberry.type
class SessionQueries:
    @strawberry.field(
        extensions=[authenticated()],
        description="The caller's own API tokens, newest first. includeEnded: also revoked and expired ones.",
    )
    async def api_tokens(self, info: Info, include_ended: bool | None = False) -> list[ApiToken]:
        ctx = info.context
        query = select(ApiTokenRow).where(ApiTokenRow.user_id == ctx.viewer_id)
        if not include_ended:
            query = query.where(api_token_live(utcnow()))
        rows = await ctx.store.scalars(query.order_by(ApiTokenRow.id.desc()).limit(MAX_LISTED_TOKENS))
        return [ApiToken(row=r) for r in rows]


@strawberry.type
class SessionMutations:
    @strawberry.mutation(
        description="Unknown email, wrong password and DENIED account give the same error (UNAUTHENTICATED) "
        "in the same time."
    )
    async def login(
        self, info: Info,
        email: Annotated[str, strawberry.argument(description="The account's email (any case).")],
        password: Annotated[str, strawberry.argument(description="The account's password.")],
        cookie: Annotated[
            bool | None,
            strawberry.argument(
                description="Cookie session mode, for browsers: the session goes into an HttpOnly, SameSite=Lax "
                "cookie (Secure unless on localhost) that page scripts cannot read, and `token` is empty. "
                "Requests signed in by the cookie must send an 'X-CSRF-Token' (or 'Apollo-Require-Preflight') "
                "header on every POST."
            ),
        ] = False,
    ) -> LoginPayload:
        ctx = info.context
        normalized = normalize_email(email)[:320]
        address = ctx.client_address
        await slow_down(ctx.database, ctx.settings, normalized, address)
        async with ctx.store.transaction() as session:
            await check_login_allowed(session, ctx.settings, normalized, address)
            row = await session.scalar(select(UserRow).where(UserRow.email_normalized == normalized))
            usable = row if row is not None and row.status == "ACTIVE" else None
            ok = verify_password(usable.password_hash if usable else None, password)
            now = utcnow()
            session.add(
                LoginEvent(
                    user_id=row.id if row is not None else None,
                    email_normalized=normalized,
                    client_address=address,
                    success=ok,
                    at=now,
                )
            )
            if not ok or usable is None:
                failed = True
            else:
                failed = False
                token = new_token(SESSION_PREFIX)
                expires = now + timedelta(hours=ctx.settings.token_lifetime_hours)
                signed_in = Session(user_id=usable.id, token_hash=token_hash(token), expires_at=expires)
                session.add(signed_in)
                usable.last_login_at = now
                usable.login_count += 1
                session.add(usable)
        if failed:
            raise Unauthenticated(SIGN_IN_FAILED)
        ctx.credential = Credential(usable, session_id=signed_in.id)  # type: ignore[arg-type]
        ctx.forget_reach()
        user = (await prepare_users(info, [usable]))[0]  # type: ignore[list-item]
        if cookie:
            ctx.cookies.append(set_session_cookie(ctx.request, token, expires))
            token = ""
        return LoginPayload(token=token, expires_at=expires, user=user)

    @strawberry.mutation(extensions=[authenticated()])
    async def logout(self, info: Info) -> bool:
        ctx = info.context
        credential = ctx.credential
        now = utcnow()
        async with ctx.store.transaction() as session:
            if credential.session_id is not None:
                await session.execute(update(Session).where(Session.id == credential.session_id).values(revoked_at=now))
            if credential.api_token_id is not None:
                await session.execute(
                    update(ApiTokenRow).where(ApiTokenRow.id == credential.api_token_id).values(revoked_at=now)
                )
            if credential.session_id is not None:
                audit(session, ctx.viewer_id, "session.logout", "session", credential.session_id)
            else:
                audit(session, ctx.viewer_id, "api_token.revoke", "api_token", credential.api_token_id)
            ctx.store.publish(reach_changed([ctx.viewer_id]))  # subscriptions on this token end now
        if ctx.via_cookie:
            ctx.cookies.append(clear_session_cookie(ctx.request))
        return True

    @strawberry.mutation(extensions=[authenticated()])
    async def create_api_token(self, info: Info, name: str, expires_in_days: int | None = None) -> ApiTokenPayload:
        ctx = info.context
        name = clean_text(name, "name")  # type: ignore[assignment]
        limit = ctx.settings.api_token_max_days
        if expires_in_days is not None and not 1 <= expires_in_days <= limit:
            raise BadInput(f"expiresInDays must be between 1 and {limit}", field="expiresInDays")
        days = expires_in_days or min(ctx.settings.api_token_default_days, limit)
        expires = utcnow() + timedelta(days=days)
        token = new_token(API_TOKEN_PREFIX)
        async with ctx.store.transaction() as session:
            row = ApiTokenRow(user_id=ctx.viewer_id, name=name, token_hash=token_hash(token), expires_at=expires)
            session.add(row)
            await session.flush()
            audit(session, ctx.viewer_id, "api_token.create", "api_token", row.id, name=name, expires_at=expires)
        return ApiTokenPayload(
            token=token, name=name, expires_at=expires, id=strawberry.ID(to_global_id("ApiToken", row.id))  # type: ignore[arg-type]
        )

    @strawberry.mutation(
        extensions=[authenticated()],
        description="Ends one of the caller's API tokens at once. Another user's token, or an unknown id: "
        "NOT_FOUND. Revoking a token already ended changes nothing.",
    )
    async def revoke_api_token(self, info: Info, id: strawberry.ID) -> ApiToken:
        ctx = info.context
        token_id = require_id(id, "ApiToken")
        async with ctx.store.transaction() as session:
            row = await session.get(ApiTokenRow, token_id, with_for_update=True, populate_existing=True)
            if row is None or row.user_id != ctx.viewer_id:
                raise NotFound("No such API token.", field="id")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.add(row)
                audit(session, ctx.viewer_id, "api_token.revoke", "api_token", row.id, name=row.name)
                ctx.store.publish(reach_changed([ctx.viewer_id]))  # subscriptions on this token end now
        return ApiToken(row=row)
