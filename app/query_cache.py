"""Parse and validate a query text once per process, not once per request.

A dashboard sends the same query text again and again; validating it against the schema cost ~5 ms and
parsing it ~1 ms per request (issue 8's D1). Only documents that passed validation are remembered, so every
limit (depth, aliases, tokens, introspection) still rejects a bad query every time it is sent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from functools import partial
from typing import Any

from strawberry.extensions import ParserCache, SchemaExtension

MAX_QUERIES = 256
_valid: OrderedDict[tuple[int, str], bool] = OrderedDict()


class ValidQueryCache(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        key = (id(context.schema), context.query or "")
        if key in _valid:
            _valid.move_to_end(key)
            context.pre_execution_errors = []  # Strawberry skips validation when errors are already set
            yield
            return
        yield
        if context.pre_execution_errors == [] and context.query:
            _valid[key] = True
            if len(_valid) > MAX_QUERIES:
                _valid.popitem(last=False)


def query_caches() -> list[Any]:
    return [partial(ParserCache, maxsize=MAX_QUERIES), ValidQueryCache]
