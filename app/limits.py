"""Query limits that run before any resolver: depth, aliases, tokens, cost, introspection."""

from __future__ import annotations

from functools import partial
from typing import Any

from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from app.settings import Settings


def limit_extensions(settings: Settings) -> list[Any]:
    """Zero-argument factories, as Strawberry wants them (an instance would be shared across requests)."""
    extensions: list[Any] = [
        partial(QueryDepthLimiter, max_depth=settings.max_query_depth),
        partial(MaxAliasesLimiter, max_alias_count=settings.max_aliases),
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
    ]
    if settings.production:
        from graphql.validation import NoSchemaIntrospectionCustomRule

        extensions.append(partial(AddValidationRules, [NoSchemaIntrospectionCustomRule]))
    # issue 8: a query text that passed every rule above is not parsed and validated again
    from app.query_cache import query_caches

    extensions += query_caches()
    return extensions
