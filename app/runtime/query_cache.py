"""Parse and validate a query text once per process, not once per request.

A dashboard sends the same query text again and again; validating it against the schema cost ~5 ms and
parsing it ~1 ms per request (the group dashboard). Only documents that passed validation are remembered, so every
limit (depth, aliases, tokens, introspection) still rejects a bad query every time it is sent. Rules that
depend on the request's variables (cost, page size, NUL; marked `per_request`) run on every request, cached
document or not: a query once sent with `first: 10` may come back with `first: 1000000`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from functools import partial
from typing import Any

from graphql import validate
from strawberry.extensions import ParserCache, SchemaExtension

MAX_QUERIES = 256
_valid: OrderedDict[tuple[int, str], bool] = OrderedDict()


class ValidQueryCache(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        key = (id(context.schema), context.query or "")
        if key in _valid and context.graphql_document is not None:
            _valid.move_to_end(key)
            per_request = tuple(rule for rule in context.validation_rules if getattr(rule, "per_request", False))
            # Strawberry skips its own validation when errors are already set (an empty list included)
            context.pre_execution_errors = validate(context.schema._schema, context.graphql_document, per_request)
            yield
            return
        yield
        if context.pre_execution_errors == [] and context.query:
            _valid[key] = True
            if len(_valid) > MAX_QUERIES:
                _valid.popitem(last=False)


def query_caches() -> list[Any]:
    return [partial(ParserCache, maxsize=MAX_QUERIES), ValidQueryCache]
