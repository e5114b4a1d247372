"""Persisted operations: Apollo's automatic persisted queries (APQ), stored in the database so every worker
and host shares them, and trusted documents (a manifest of id -> document) that, when configured, are the
only documents the server runs.

A document is found by its SHA-256 (hex): APQ's `extensions.persistedQuery.sha256Hash`, or a `documentId`
("sha256:<hex>" or a manifest's own id). Documents are content-addressed and never change, so each worker
keeps the ones it has seen in memory; the database answers the first time only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from graphql import DocumentNode, GraphQLError, ValidationRule
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from app.store.db import Database
from app.store.models import PersistedQuery, utcnow

SHA256 = re.compile(r"[0-9a-f]{64}")
CACHE_SIZE = 2000
MAX_DOCUMENT_CHARS = 100_000  # longer documents run, but are not stored

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"  # the code Apollo's persisted-queries link retries on
NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"  # trusted documents only: not one of them


class PersistedQueryError(Exception):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def _bare(document_id: str) -> str:
    return document_id[len("sha256:"):] if document_id.startswith("sha256:") else document_id


@dataclass(frozen=True)
class TrustedDocuments:
    """A manifest: GraphQL Code Generator's persisted-documents.json and Relay's persistConfig file (a JSON
    object of id -> document), or Apollo's persisted query manifest ({"operations": [{"id", "body"}]})."""

    by_id: dict[str, str]
    by_hash: dict[str, str]

    @classmethod
    def load(cls, path: str | Path) -> TrustedDocuments:
        data = json.loads(Path(path).read_text())
        if isinstance(data, dict) and isinstance(data.get("operations"), list):
            data = {op["id"]: op["body"] for op in data["operations"]}
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ValueError(f"{path}: a trusted documents manifest is a JSON object of id -> document")
        by_id = {_bare(k): v for k, v in data.items()}
        return cls(by_id=by_id, by_hash={sha256(v): v for v in by_id.values()})

    def find(self, document_id: str) -> str | None:
        key = _bare(document_id)
        return self.by_id.get(key) or self.by_hash.get(key)


@lru_cache(maxsize=8)
def trusted_documents(path: str) -> TrustedDocuments:
    return TrustedDocuments.load(path)


def trusted_documents_rule(trusted: TrustedDocuments) -> type[ValidationRule]:
    """Validation that refuses any document not in the manifest, whatever the transport (HTTP or WebSocket):
    the HTTP view has already swapped ids for their documents; this holds for every other way in."""

    class TrustedDocumentsOnly(ValidationRule):
        per_request = True  # runs on documents the query cache remembers too

        def enter_document(self, node: DocumentNode, *_: Any) -> Any:
            body = node.loc.source.body if node.loc is not None else None
            if body is None or sha256(body) not in trusted.by_hash:
                self.report_error(
                    GraphQLError(
                        "This server runs trusted documents only, and this is not one of them.",
                        extensions={"code": NOT_IN_LIST},
                    )
                )
            return self.BREAK

    return TrustedDocumentsOnly


class PersistedQueries:
    def __init__(
        self, database: Database, trusted: TrustedDocuments | None, valid: Callable[[str], bool], max_rows: int
    ) -> None:
        self.database = database
        self.trusted = trusted
        self.max_rows = max_rows  # the table stops growing there (anyone may register a document)
        self.valid = valid  # only documents that parse and validate against the schema are stored
        self._cache: OrderedDict[str, str] = OrderedDict()

    async def document(self, query: Any, extensions: Any, document_id: Any) -> Any:
        """The document to run for one GraphQL request; PersistedQueryError when there is none."""
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        digest: str | None = None
        if persisted is not None:
            if not isinstance(persisted, dict) or persisted.get("version") != 1 or not isinstance(
                persisted.get("sha256Hash"), str
            ):
                raise PersistedQueryError(
                    "BAD_USER_INPUT", "extensions.persistedQuery needs version 1 and a sha256Hash.", 400
                )
            digest = persisted["sha256Hash"]
            if not SHA256.fullmatch(digest):
                raise PersistedQueryError("BAD_USER_INPUT", "sha256Hash must be 64 lower-case hex digits.", 400)
        if document_id is not None and not isinstance(document_id, str):
            raise PersistedQueryError("BAD_USER_INPUT", "documentId must be a string.", 400)
        if query is not None and not isinstance(query, str):
            return query  # the view refuses it with its own message
        if query is not None and digest is not None and sha256(query) != digest:
            raise PersistedQueryError("BAD_USER_INPUT", "provided sha does not match query", 400)
        if self.trusted is not None:
            return self._trusted(query, digest or document_id)
        if query is not None:
            if digest is not None:
                await self._store(digest, query)
            return query
        key = digest or (_bare(document_id) if document_id is not None else None)
        if key is None:
            return None
        found = await self._find(key)
        if found is None:
            raise PersistedQueryError(NOT_FOUND, "PersistedQueryNotFound", 200)
        return found

    def _trusted(self, query: str | None, key: str | None) -> str | None:
        assert self.trusted is not None
        refused = PersistedQueryError(
            NOT_IN_LIST, "This server runs trusted documents only, and this is not one of them.", 400
        )
        if key is not None:
            found = self.trusted.find(key)
            if found is None or (query is not None and query != found):
                raise refused
            return found
        if query is None:
            return None
        if self.trusted.by_hash.get(sha256(query)) is None:
            raise refused
        return query

    async def _find(self, digest: str) -> str | None:
        if not SHA256.fullmatch(digest):
            return None
        cached = self._cache.get(digest)
        if cached is not None:
            self._cache.move_to_end(digest)
            return cached
        async with self.database.session() as session:
            document = await session.scalar(select(PersistedQuery.document).where(PersistedQuery.sha256 == digest))
        if document is not None:
            self._remember(digest, document)
        return document

    async def _store(self, digest: str, document: str) -> None:
        if digest in self._cache or len(document) > MAX_DOCUMENT_CHARS or not self.valid(document):
            return
        async with self.database.session() as session:
            stored = int(await session.scalar(select(func.count()).select_from(PersistedQuery)))
        if stored >= self.max_rows:
            return
        dialect = postgresql if not self.database.is_sqlite else sqlite
        statement = (
            dialect.insert(PersistedQuery)
            .values(sha256=digest, document=document, created_at=utcnow())
            .on_conflict_do_nothing()
        )
        async with self.database.transaction() as session:
            await session.execute(statement)
        self._remember(digest, document)

    def _remember(self, digest: str, document: str) -> None:
        self._cache[digest] = document
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
