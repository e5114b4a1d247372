"""graphql-core's field execution, shortened for plain leaf attributes.

Most fields of a large answer (a members page: names, percentages, counts) are Strawberry "basic" fields: an
attribute of the object, no resolver, no extension (so no permission), no argument, a scalar or enum type.
graphql-core still builds a resolve info, calls Strawberry's wrapper, checks for an awaitable and walks
`complete_value` for each. Here such a field reads the attribute and coerces it directly; anything else
(a null for a non-null field, a value that does not coerce, an awaitable, an exception) goes the ordinary way,
which raises and reports exactly as before. Fields carrying an extension (every `@requires` permission) are
never basic, so they always run their checks.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLField, GraphQLObjectType, is_leaf_type, is_non_null_type
from graphql.pyutils import Undefined as _UNDEFINED
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_BACKREF = "strawberry-definition"
# id(GraphQLField) -> (the field, (attribute name, leaf type, non-null) or None)
_PLAIN: dict[int, tuple[GraphQLField, tuple[str, Any, bool] | None]] = {}


def plain_leaf(field_def: GraphQLField) -> tuple[str, Any, bool] | None:
    """(attribute name, leaf type, non-null) when `field_def` is a basic Strawberry leaf field read with
    `getattr`; None otherwise. Decided once per field of the schema."""
    entry = _PLAIN.get(id(field_def))
    if entry is not None and entry[0] is field_def:
        return entry[1]
    found: tuple[str, Any, bool] | None = None
    definition = (field_def.extensions or {}).get(_BACKREF)
    resolve = field_def.resolve
    if (
        definition is not None
        and getattr(definition, "is_basic_field", False)
        and getattr(resolve, "__name__", "") == "_get_basic_result"  # Strawberry's path without exception handlers
        and getattr(definition, "default_resolver", getattr) is getattr
        and not field_def.args
    ):
        kind = field_def.type
        non_null = is_non_null_type(kind)
        inner = kind.of_type if non_null else kind  # type: ignore[union-attr]
        if is_leaf_type(inner):
            found = (definition.python_name, inner, non_null)
    _PLAIN[id(field_def)] = (field_def, found)
    return found


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        # a schema extension wrapping every field (a `resolve` hook) must see every field: no short cut then
        self.plain_fields = manager is None or manager._middleware_resolvers is None

    def execute_field(
        self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any, path: Any, position_context: Any
    ) -> Any:
        if self.plain_fields:
            field_def = self.schema.get_field(parent_type, field_details_list[0].node.name.value)
            leaf = plain_leaf(field_def) if field_def is not None else None
            if leaf is not None:
                name, leaf_type, non_null = leaf
                try:
                    value = getattr(source, name)
                except Exception:  # the ordinary path raises it again, and reports it
                    value = Exception
                if value is None:
                    if not non_null:
                        return None
                elif value is not Exception and not isinstance(value, Exception) and not self.is_awaitable(value):
                    try:
                        coerced = leaf_type.coerce_output_value(value)
                    except Exception:
                        coerced = None
                    if coerced is not None and coerced is not _UNDEFINED:
                        return coerced
        return super().execute_field(parent_type, source, field_details_list, path, position_context)

