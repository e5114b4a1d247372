"""API tokens end: a default and a maximum lifetime, listed and revoked by their owner, ended with the account's
other credentials (end_credentials); and the site always keeps an ACTIVE owner."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.services.auth import end_credentials
from app.store.models import ApiToken, utcnow
from tests.site import Site, errors_of, gid

CREATE = "mutation($n: String!, $d: Int) { createApiToken(name: $n, expiresInDays: $d) { id token name expiresAt } }"
LIST = "query($e: Boolean) { apiTokens(includeEnded: $e) { id name expiresAt revokedAt } }"
REVOKE = "mutation($id: ID!) { revokeApiToken(id: $id) { id revokedAt } }"
VIEWER = "{ viewer { firstName } }"


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_api_tokens_end_and_are_listed_and_revoked_by_their_owner(site: Site) -> None:
    owner = await site.user("Olga", kind="STAFF")
    other = await site.user("Otto", kind="STAFF")
    made = (await site.gql(CREATE, {"n": "reports"}, as_user=owner))["data"]["createApiToken"]
    expires = parse(made["expiresAt"])
    default = timedelta(days=site.settings.api_token_default_days)
    assert utcnow() + default - timedelta(minutes=1) < expires <= utcnow() + default
    too_long = await site.gql(CREATE, {"n": "x", "d": site.settings.api_token_max_days + 1}, as_user=owner)
    assert errors_of(too_long) == ["BAD_USER_INPUT"]
    second = (await site.gql(CREATE, {"n": "sync", "d": 7}, as_user=owner))["data"]["createApiToken"]
    theirs = (await site.gql(CREATE, {"n": "theirs"}, as_user=other))["data"]["createApiToken"]

    listed = (await site.gql(LIST, as_user=owner))["data"]["apiTokens"]
    assert [t["name"] for t in listed] == ["sync", "reports"] and {t["id"] for t in listed} == {made["id"], second["id"]}
    # another user's token is NOT_FOUND, as a missing one, and keeps working
    for token_id in (theirs["id"], gid("ApiToken", 10**6)):
        assert errors_of(await site.gql(REVOKE, {"id": token_id}, as_user=owner)) == ["NOT_FOUND"]
    assert "errors" not in await site.gql(VIEWER, token=theirs["token"])

    assert "errors" not in await site.gql(VIEWER, token=made["token"])
    revoked = (await site.gql(REVOKE, {"id": made["id"]}, as_user=owner))["data"]["revokeApiToken"]
    assert revoked["revokedAt"] is not None
    response = await site.client.post("/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {made['token']}"})
    assert response.status_code == 401
    assert [t["name"] for t in (await site.gql(LIST, as_user=owner))["data"]["apiTokens"]] == ["sync"]
    assert len((await site.gql(LIST, {"e": True}, as_user=owner))["data"]["apiTokens"]) == 2


async def test_a_users_credentials_all_end_together(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    user = await site.user("Uma", kind="STAFF")
    tokens = [(await site.gql(CREATE, {"n": f"t{i}"}, as_user=user))["data"]["createApiToken"]["token"] for i in range(2)]
    session_token = await site.token(user)
    async with site.database.transaction() as session:
        await end_credentials(session, user.id)  # what a new password does
    for token in [*tokens, session_token]:
        response = await site.client.post("/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    assert await site.count(ApiToken, ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)) == 0

    # DENIED ends them too
    site.tokens.pop(user.id)
    fresh = (await site.gql(CREATE, {"n": "again"}, as_user=user))["data"]["createApiToken"]["token"]
    body = await site.gql(
        "mutation($u: [ID!]!) { setAccountStatus(userIds: $u, status: DENIED) { status } }",
        {"u": [gid("User", user)]}, as_user=admin,
    )
    assert "errors" not in body, body
    response = await site.client.post("/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {fresh}"})
    assert response.status_code == 401


SET_ROLES = "mutation($u: ID!, $r: [SiteRole!]!) { setSiteRoles(userId: $u, roles: $r) { roles } }"


async def test_the_last_owner_stays(site: Site) -> None:
    first = await site.user("Fay", kind="STAFF", roles="OWNER")
    # the only owner cannot drop OWNER
    body = await site.gql(SET_ROLES, {"u": gid("User", first), "r": ["ADMIN"]}, as_user=first)
    assert errors_of(body) == ["CONFLICT"], body
    assert (await site.gql("{ viewer { roles } }", as_user=first))["data"]["viewer"]["roles"] == ["OWNER"]
    # a DENIED owner does not count
    second = await site.user("Sid", kind="STAFF", roles="OWNER", status="DENIED")
    body = await site.gql(SET_ROLES, {"u": gid("User", first), "r": ["ADMIN"]}, as_user=first)
    assert errors_of(body) == ["CONFLICT"], body
    # with a second active owner, one may step down; the other then may not
    body = await site.gql(
        "mutation($u: [ID!]!) { setAccountStatus(userIds: $u, status: ACTIVE) { status } }",
        {"u": [gid("User", second)]}, as_user=first,
    )
    assert "errors" not in body, body
    assert "errors" not in await site.gql(SET_ROLES, {"u": gid("User", first), "r": ["ADMIN"]}, as_user=first)
    body = await site.gql(SET_ROLES, {"u": gid("User", second), "r": []}, as_user=second)
    assert errors_of(body) == ["CONFLICT"], body
    # nor be denied or deleted by anyone (an ADMIN may not touch an owner at all)
    for mutation in (
        "mutation($u: [ID!]!) { setAccountStatus(userIds: $u, status: DENIED) { status } }",
        "mutation($u: [ID!]!) { deleteUsers(userIds: $u) }",
    ):
        body = await site.gql(mutation, {"u": [gid("User", second)]}, as_user=first)
        assert errors_of(body) in (["CONFLICT"], ["FORBIDDEN"]), body
    assert (await site.gql("{ viewer { roles status } }", as_user=second))["data"]["viewer"] == {
        "roles": ["OWNER"], "status": "ACTIVE"
    }
