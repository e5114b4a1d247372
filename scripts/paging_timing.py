"""Timing of keyset pages both ways (not a test: prints numbers): users(orderBy:) first page, a page far
forwards, the last page and a page far backwards, as a site admin, medians of 15 runs.

    .venv/bin/groupgraph migrate && .venv/bin/groupgraph seed --preset medium   # 21,500 users
    .venv/bin/python scripts/paging_timing.py [DATABASE_URL]                     # default: the setting's
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app.server import create_app
from app.services.auth import SESSION_PREFIX, new_token, token_hash
from app.settings import Settings, get_settings
from app.store.db import Database
from app.store.models import Session, User, utcnow

USERS = """query($o: UserOrder, $f: Int, $a: String, $l: Int, $b: String) {
  users(orderBy: $o, first: $f, after: $a, last: $l, before: $b) {
    totalCount edges { cursor node { id lastName } } pageInfo { startCursor } } }"""


async def main(url: str) -> None:
    settings = Settings(database_url=url)
    database = Database(settings)
    async with database.session() as session:
        admin = (await session.scalars(select(User).where(User.site_roles.like("%ADMIN%")))).first()
    if admin is None:
        raise SystemExit("no site admin: seed a preset first")
    token = new_token(SESSION_PREFIX)
    async with database.transaction() as session:
        session.add(Session(user_id=admin.id, token_hash=token_hash(token), expires_at=utcnow() + timedelta(hours=1)))
    transport = httpx.ASGITransport(app=create_app(settings, database))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers={"authorization": f"Bearer {token}"}) as client:

        async def timed(variables: dict[str, Any]) -> tuple[dict[str, Any], float]:
            started = time.perf_counter()
            body = (await client.post("/graphql", json={"query": USERS, "variables": variables})).json()
            assert "errors" not in body, body
            return body["data"]["users"], time.perf_counter() - started

        for field in ("LAST_NAME", "CREATED_AT", "LAST_LOGIN_AT"):
            order = {"field": field, "direction": "DESC"}
            last, _ = await timed({"o": order, "f": None, "l": 50})
            far = last["pageInfo"]["startCursor"]  # 50 users before the end
            cases = {
                "first page": {"o": order, "f": 50},
                "far forwards": {"o": order, "f": 50, "a": far},
                "last page": {"o": order, "f": None, "l": 50},
                "far backwards": {"o": order, "f": None, "l": 50, "b": far},
            }
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(15):
                for name, variables in cases.items():
                    samples[name].append((await timed(variables))[1])
            medians = ", ".join(f"{name} {statistics.median(s) * 1000:.1f} ms" for name, s in samples.items())
            print(f"{database.dialect} users(orderBy: {field} DESC), {last['totalCount']} users: {medians}")
    await database.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else get_settings().database_url))
