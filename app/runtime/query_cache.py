"""Parse and validate a query text once per process, not once per request.

A dashboard sends the same query text again and again; validating it against the schema cost ~5 ms and
parsing it ~1 ms per request (the group dashboard). Only documents that passed validation are remembered, so every
limit (depth, aliases, tokens, introspection) still rejects a bad query every time it is sent. Rules that
depend on the request's variables (cost, page size, NUL; marked `per_request`) run on every request, cached
document or not: a query once sent with `first: 10` may come back with `first: 1000000`. For a cached document
they skip graphql-core's walk of the whole document (about 1.5 ms on the dashboard's) unless one of them says,
through its `visits_cached_document(schema, document)`, that its visit can still find something new (without
that attribute a rule is always walked).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from functools import partial
from typing import Any

from graphql import GraphQLError, TypeInfo, ValidationContext, validate
from strawberry.extensions import ParserCache, SchemaExtension

MAX_QUERIES = 256
# query text -> whether its per-request rules must still visit the document (decided when it was first valid)
_valid: OrderedDict[tuple[int, str], bool] = OrderedDict()


def _must_visit(rules: tuple[Any, ...], schema: Any, document: Any) -> bool:
    return any(getattr(rule, "visits_cached_document", None) is None or rule.visits_cached_document(schema, document)
               for rule in rules)


def run_without_visit(schema: Any, document: Any, rules: tuple[Any, ...]) -> list[GraphQLError]:
    """What `validate(schema, document, rules)` reports, for rules that do all their work when built."""
    errors: list[GraphQLError] = []
    context = ValidationContext(schema, document, TypeInfo(schema), errors.append)
    for rule in rules:
        rule(context)
    return errors


class ValidQueryCache(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        key = (id(context.schema), context.query or "")
        if key in _valid and context.graphql_document is not None:
            _valid.move_to_end(key)
            per_request = tuple(rule for rule in context.validation_rules if getattr(rule, "per_request", False))
            schema, document = context.schema._schema, context.graphql_document
            # Strawberry skips its own validation when errors are already set (an empty list included)
            if _valid[key]:  # the same schema's rules, so the same answer as when it was first valid
                context.pre_execution_errors = validate(schema, document, per_request)
            else:
                context.pre_execution_errors = run_without_visit(schema, document, per_request)
            yield
            return
        yield
        if context.pre_execution_errors == [] and context.query and context.graphql_document is not None:
            per_request = tuple(rule for rule in context.validation_rules if getattr(rule, "per_request", False))
            _valid[key] = _must_visit(per_request, context.schema._schema, context.graphql_document)
            if len(_valid) > MAX_QUERIES:
                _valid.popitem(last=False)


def query_caches() -> list[Any]:
    return [partial(ParserCache, maxsize=MAX_QUERIES), ValidQueryCache]
