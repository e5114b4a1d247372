"""Pieces every domain shares: the Node interface, PageInfo, cursors and page sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode
from strawberry.types import Info

from app.context import Context
from app.runtime import cursors
from app.runtime.errors import BadInput
from app.store import keyset
from app.store.keyset import Window

T = TypeVar("T")


@strawberry.interface
class Node:
    id: strawberry.ID = strawberry.field(
        description="Opaque global id (Relay). node(id:) returns null for ids the caller may not see."
    )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def context(info: Info) -> Context:
    return info.context


def page_size(info: Info, first: int | None, field: str = "first") -> int:
    limit = info.context.settings.max_page_size
    if first is None:
        return min(50, limit)
    if first < 0 or first > limit:
        raise BadInput(f"{field} must be between 0 and {limit}", field=field)
    return first


# the paging arguments every connection takes (Relay's forward and backward pagination)
First = Annotated[int | None, strawberry.argument(description="Page forwards: at most this many edges.")]
After = Annotated[str | None, strawberry.argument(description="Page forwards from this cursor (an endCursor).")]
Last = Annotated[
    int | None,
    strawberry.argument(description="Page backwards: at most this many edges, ending at `before` (or at the end of "
                        "the list). Takes precedence over `first`."),
]
Before = Annotated[str | None, strawberry.argument(description="Page backwards from this cursor (a startCursor).")]


@dataclass(frozen=True)
class Paging:
    """One page request of one connection: its cursor binding (name and kinds of keyset values) and the
    window in keyset terms. `last` pages backwards and takes precedence over `first` (whose default is 50)."""

    connection: str
    kinds: tuple[str, ...]
    window: Window

    def cursor(self, *values: Any) -> str:
        return cursors.encode(self.connection, self.kinds, values)

    def page(
        self, fetched: Sequence[T], key: Callable[[T], Sequence[Any]], every: bool = True
    ) -> tuple[list[T], list[str], PageInfo]:
        """The page in the list's order, its cursors and PageInfo, from the rows fetched (fetch order).
        `every=False` when the query does not ask the edges' cursors: only the first and the last are made
        (PageInfo's), the others are empty strings that nothing reads."""
        rows, has_next, has_previous = keyset.trim(self.window, fetched)
        if every or len(rows) <= 2:
            made = [self.cursor(*key(r)) for r in rows]
        else:
            made = [self.cursor(*key(rows[0])), *([""] * (len(rows) - 2)), self.cursor(*key(rows[-1]))]
        return rows, made, PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=made[0] if made else None,
            end_cursor=made[-1] if made else None,
        )


def paging(
    info: Info, connection: str, kinds: Sequence[str], first: int | None, after: str | None,
    last: int | None = None, before: str | None = None,
) -> Paging:
    """Validate a connection's paging arguments: sizes within the page limit, cursors from this connection."""
    kinds = tuple(kinds)
    backward = last is not None
    size = page_size(info, last, "last") if backward else page_size(info, first)
    window = Window(
        size=size,
        after=cursors.decode(connection, kinds, after, "after") if after is not None else None,
        before=cursors.decode(connection, kinds, before, "before") if before is not None else None,
        backward=backward,
    )
    return Paging(connection, kinds, window)


# --- the untagged codec, for connections not yet moved to `paging` ---------------------------------------

_KINDS: dict[type, str] = {datetime: cursors.INSTANT + "?", int: cursors.INT + "?", str: cursors.TEXT + "?",
                           float: cursors.NUMBER + "?"}


def encode_cursor(*values: Any) -> str:
    return cursors.encode("", [_KINDS[type(v)] if v is not None else "int?" for v in values], values)


def decode_cursor(cursor: str | None, kinds: Sequence[type], field: str = "after") -> list[Any] | None:
    """The keyset values a cursor holds, checked against their expected types (see app.runtime.cursors)."""
    if cursor is None:
        return None
    return list(cursors.decode("", [_KINDS[k] for k in kinds], cursor, field))


def page_info(has_next: bool, cursors: Sequence[str]) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        has_previous_page=False,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


def clean_text(value: str | None, field: str, *, max_length: int = 200, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise BadInput(f"{field} is required", field=field)
        return None
    value = value.strip()
    if "\x00" in value:  # no text holds NUL, and PostgreSQL refuses it
        raise BadInput(f"{field} must not contain NUL characters", field=field)
    if required and not value:
        raise BadInput(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise BadInput(f"{field} must be at most {max_length} characters", field=field)
    return value


def _sub_fields(info: Info, nodes: Sequence[FieldNode], name: str | None) -> list[FieldNode]:
    """The fields called `name` (any, for None) directly under `nodes` (through fragments and inline
    fragments)."""
    fragments = info._raw_info.fragments
    found: list[FieldNode] = []

    def walk(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> None:
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                if name is None or selection.name.value == name:
                    found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                walk(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    walk(fragment.selection_set, seen | {selection.name.value})

    for node in nodes:
        walk(node.selection_set, frozenset())
    return found


def selected(info: Info, *path: str) -> list[FieldNode]:
    """The field nodes the query selects at `path` below this field, e.g. `selected(info, "edges", "node",
    "user")`: what a list resolver reads to load the whole page's nested data at once (empty when the query
    does not ask). Decided once per field of the query, not once per object."""
    key = ("selected", id(info._raw_info.field_nodes[0]), path)
    cache: dict[Any, list[FieldNode]] = info.context.extra
    if key not in cache:
        nodes: list[FieldNode] = list(info._raw_info.field_nodes)
        for name in path:
            nodes = _sub_fields(info, nodes, name)
            if not nodes:
                break
        cache[key] = nodes
    return cache[key]


def sub_selected(info: Info, nodes: Sequence[FieldNode], name: str) -> list[FieldNode]:
    return _sub_fields(info, nodes, name)


def asked_names(info: Info, nodes: Sequence[FieldNode]) -> frozenset[str]:
    """The names of the fields selected directly under `nodes` (through fragments; whatever @include and @skip
    say: a field maybe asked counts as asked)."""
    return frozenset(field.name.value for field in _sub_fields(info, nodes, None))
