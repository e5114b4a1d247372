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


@strawberry.type
class Query:
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
