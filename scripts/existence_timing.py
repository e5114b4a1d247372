"""How long `user(id:)` takes for a user the caller may not see and for an id that does not exist (they
should cost the same). Usage: .venv/bin/python scripts/existence_timing.py [DATABASE_URL] [ROUNDS]"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time

import httpx

from app.runtime.ids import to_global_id
from app.server import create_app
from app.services.auth import SESSION_PREFIX, new_token, token_hash
from app.settings import Settings
from app.store.db import Database
from app.store.migrate import upgrade
from app.store.models import Session, User, utcnow

QUERY = "query($id: ID!) { user(id: $id) { firstName } }"


def person(n: int, kind: str = "LEARNER") -> User:
    email = f"p{n}@example.com"
    return User(email=email, email_normalized=email, first_name="P", last_name="Q", last_name_normalized="q", kind=kind)


async def main(url: str, rounds: int) -> None:
    settings = Settings(database_url=url)
    database = Database(settings)
    await upgrade(database.engine)
    viewer, hidden = person(1, "STAFF"), person(2)
    token = new_token(SESSION_PREFIX)
    async with database.transaction() as session:
        session.add_all([viewer, hidden])
        await session.flush()
        session.add(Session(user_id=viewer.id, token_hash=token_hash(token), expires_at=utcnow().replace(year=2999)))
    ids = {"hidden": to_global_id("User", hidden.id), "missing": to_global_id("User", hidden.id + 10_000)}  # type: ignore[operator]
    took: dict[str, list[float]] = {name: [] for name in ids}
    app = create_app(settings, database)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        for n in range(rounds + 50):
            for name, user_id in (ids.items() if n % 2 else reversed(ids.items())):
                started = time.perf_counter()
                response = await client.post("/graphql", json={"query": QUERY, "variables": {"id": user_id}}, headers=headers)
                if n >= 50:  # warmed up
                    took[name].append(time.perf_counter() - started)
                assert response.json() == {"data": {"user": None}}
    await database.dispose()
    for name, values in took.items():
        print(f"{name:8} median {statistics.median(values) * 1000:.3f} ms  mean {statistics.mean(values) * 1000:.3f} ms")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/timing.db"
    asyncio.run(main(target, int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
