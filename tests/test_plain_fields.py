"""The short cut for plain leaf attributes (app.runtime.plain_fields) answers and fails exactly as graphql-core
does, and never skips a field that carries an extension (a permission)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.permission import BasePermission, PermissionExtension

from app.runtime.plain_fields import PlainFieldsExecutionContext


class Never(BasePermission):
    message = "no"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Thing:
    name: str
    count: int
    note: str | None
    secret: str | None = strawberry.field(default=None, extensions=[PermissionExtension([Never()])])


class Always(BasePermission):
    message = "yes"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return kwargs.get("times") != 13


@strawberry.type
class Item:
    label: str

    @strawberry.field(extensions=[PermissionExtension([Never()])])
    def hidden(self, info: strawberry.Info) -> str | None:
        return "never shown"

    @strawberry.field(extensions=[PermissionExtension([Always()])])
    def repeated(self, info: strawberry.Info, times: int, sep: str | None = "-") -> str | None:
        assert info.context["seen"] is not None
        info.context["seen"].append(times)
        return (sep or "").join([self.label] * times)

    @strawberry.field
    def shout(self) -> str:
        if self.label == "boom":
            raise ValueError("boom")
        return self.label.upper()


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return [Item(label="a"), Item(label="boom")]

    @strawberry.field
    def things(self) -> list[Thing | None]:
        return [
            Thing(name="a", count=1, note=None, secret="s"),
            Thing(name=None, count=2, note="n", secret="s"),  # type: ignore[arg-type]
            Thing(name="c", count="three", note="n", secret="s"),  # type: ignore[arg-type]
        ]


def run(execution_context_class: Any) -> Any:
    schema = strawberry.Schema(query=Query, execution_context_class=execution_context_class)
    return schema.execute_sync("{ things { name count note secret } }")


def test_plain_fields_answer_and_fail_as_graphql_core_does() -> None:
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    fast, ordinary = run(PlainFieldsExecutionContext), run(StrawberryGraphQLCoreExecutionContext)
    assert fast.data == ordinary.data
    assert sorted((e.message, tuple(e.path)) for e in fast.errors) == sorted(
        (e.message, tuple(e.path)) for e in ordinary.errors
    )
    assert fast.data == {"things": [{"name": "a", "count": 1, "note": None, "secret": None}, None, None]}
    assert {tuple(e.path) for e in fast.errors} >= {("things", 0, "secret"), ("things", 1, "name"), ("things", 2, "count")}


def test_direct_resolvers_check_and_fail_as_strawberry_does() -> None:
    from app.runtime.plain_fields import direct_resolvers

    query = "{ items { label hidden repeated(times: 2) again: repeated(times: 13, sep: null) shout } }"
    ordinary = strawberry.Schema(query=Query)
    direct = strawberry.Schema(query=Query, execution_context_class=PlainFieldsExecutionContext)
    assert direct_resolvers(direct) >= 3  # hidden, repeated, shout
    results = []
    for schema in (ordinary, direct):
        seen: list[int] = []
        result = schema.execute_sync(query, context_value={"seen": seen})
        results.append((result.data, sorted((e.message, tuple(e.path)) for e in result.errors or []), seen))
    assert results[0] == results[1]
    data, errors, seen = results[1]
    assert data == {"items": [{"label": "a", "hidden": None, "repeated": "a-a", "again": None, "shout": "A"}, None]}
    assert ("no", ("items", 0, "hidden")) in errors and ("yes", ("items", 0, "again")) in errors
    assert ("boom", ("items", 1, "shout")) in errors
    assert seen == [2, 2]  # the method ran only where the permission allowed it
