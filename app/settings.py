"""Settings read from environment variables prefixed GROUPGRAPH_ (and an optional .env file)."""

from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ACCOUNT_KINDS = ("STAFF", "LEARNER", "EXTERNAL")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GROUPGRAPH_", env_file=".env", extra="ignore")

    env: str = "development"
    database_url: str = "sqlite+aiosqlite:///./groupgraph.db"
    database_pool_size: int = 10
    # PostgreSQL: no liveness ping on every checkout (three round trips each); a pooled connection is replaced
    # after this many seconds, and one found dead (the server restarted) is dropped with the rest of the pool.
    # Turn the ping back on behind something that cuts idle connections without telling (some proxies)
    database_pool_recycle_seconds: int = 1800
    database_pool_pre_ping: bool = False

    token_lifetime_hours: int = 24 * 7
    # API tokens end after this many days unless createApiToken asks for fewer (or up to the maximum)
    api_token_default_days: int = 90
    api_token_max_days: int = 365
    # the kinds of account that may create root groups: none, staff, staff,learner, ... (true: staff,learner)
    self_service_groups: Annotated[frozenset[str], NoDecode] = frozenset({"STAFF", "LEARNER"})
    # whether a MEMBER sees the groups they belong to (overridable per root group: Group.membersSeeGroups)
    members_see_groups: bool = True
    analyst_seats: int = 3
    max_group_depth: int = 10
    graphiql: bool = True
    # exact origins (scheme://host[:port]) allowed to call the API from a browser, comma-separated; empty:
    # no cross-origin access
    cors_origins: str = ""
    # a JSON manifest of id -> document (GraphQL Code Generator, Relay persistConfig, Apollo): when set, the
    # server runs these documents only
    trusted_documents: str | None = None
    # automatic persisted queries kept in the database at most (anyone may register one; past this, documents
    # still run but are not stored)
    max_persisted_queries: int = 10_000

    access_request_days: int = 30
    max_pending_access_requests: int = 50
    # requestAccess invitations: per requester per day (then RATE_LIMITED), per recipient address per day
    # (then the request is recorded but not emailed), the wait before asking one address again after a cancel
    # or a DENY, and the longest message
    access_request_emails_per_requester_per_day: int = 20
    access_request_emails_per_address_per_day: int = 3
    access_request_repeat_seconds: int = 86_400
    access_request_message_max_length: int = 500

    max_body_bytes: int = 2_000_000
    max_upload_bytes: int = 20_000_000
    max_import_rows: int = 100_000
    # a OneRoster run that would end (or deny) more than this share of the synced memberships (accounts) is HELD
    roster_hold_percent: float = 20.0
    # the most a OneRoster bundle may unpack to (its CSV files together)
    roster_max_bundle_bytes: int = 2_000_000_000
    max_progress_batch: int = 10_000
    progress_clock_skew_seconds: int = 300

    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 5_000
    max_query_cost: int = 500_000  # the bench's D2 dashboard (500 members, cards with steps) costs ~362k
    max_page_size: int = 500
    max_batch_size: int = 10
    max_variable_depth: int = 16

    login_failure_window_seconds: int = 900
    login_failures_per_email: int = 5
    login_failures_per_address: int = 30

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_use_tls: bool = False
    smtp_sender: str = "groupgraph@localhost"
    email_max_attempts: int = 5
    email_retry_base_seconds: int = 60
    email_retry_max_seconds: int = 3600
    email_poll_seconds: float = 15.0
    email_batch_size: int = 100
    smtp_timeout_seconds: float = 30.0

    max_statistics_buckets: int = 1000

    # bench instrumentation (x-bench-* response headers with per-request SQL statements and time)
    bench: bool = False

    # rows fetched per keyset query by the streamed exports
    export_chunk_rows: int = 5000
    # the progress CSV on PostgreSQL: written by the server (COPY ... TO STDOUT), streamed as it comes; off:
    # the keyset chunks formatted in Python, as on SQLite (the same bytes)
    export_use_copy: bool = True
    # export jobs (app.services.export_jobs): where finished files are kept, for how long, and the worker
    export_dir: str = "./exports"
    export_retention_hours: int = 72
    export_poll_seconds: float = 2.0
    export_heartbeat_seconds: float = 2.0
    # a RUNNING job whose worker sent no heartbeat for this long is taken over by another worker
    export_lease_seconds: int = 60
    export_max_attempts: int = 3
    # a user's export jobs waiting or running at once (more: RATE_LIMITED)
    export_max_active_jobs: int = 5
    # run the export worker (and the schedules) inside this server process
    export_worker: bool = True
    # signed download links: how long a link given in an API answer works, and the key that signs it (when
    # unset, a random key is made once and kept in the database, so every worker and host shares it)
    export_link_seconds: int = 300
    export_link_key: str | None = None
    # the address users reach the server at: the links in emails start with it
    public_url: str = "http://localhost:8000"
    # sign-in slow-down before RATE_LIMITED (app.services.throttle)
    login_slowdown_after: int = 3
    login_slowdown_seconds: float = 0.5
    login_slowdown_max_seconds: float = 3.0
    # how long a SQLite writer waits for the write lock before "database is locked" (busy_timeout)
    sqlite_busy_timeout_ms: int = 10_000

    # the cyclic garbage collector in each server process: its thresholds (generation 0, 1, 2; Python's are
    # 700,10,10; empty: leave Python's) and whether what start-up made, and later what survives each full
    # collection, is frozen out of its collections; every gc_reclaim_every-th full collection walks everything
    gc_threshold: Annotated[tuple[int, ...], NoDecode] = (700, 10, 10)
    gc_freeze: bool = True
    gc_reclaim_every: int = Field(default=10, ge=1)

    # logs: the level of every logger (DEBUG, INFO, WARNING, ERROR); the access log line per request
    log_level: str = "INFO"
    access_log: bool = True
    # metrics: operation names (comma-separated) that get their own `operation` label value, beside those
    # of trusted documents; every other name is counted as `other`
    metrics_operations: str = ""
    # on SIGTERM: how long a worker lets in-flight requests and streamed exports finish before it cuts them
    shutdown_grace_seconds: float = 30.0
    # live updates (subscriptions over WebSocket and SSE at /graphql)
    live_max_subscriptions_per_connection: int = 20
    live_max_subscriptions_per_user: int = 50
    live_connection_init_seconds: float = 10.0
    live_ping_seconds: float = 30.0  # a graphql-transport-ws ping when the client said nothing for this long
    live_pong_seconds: float = 20.0  # and the connection closes when no pong comes back within this
    live_max_message_bytes: int = 64_000
    live_queue_size: int = 100  # events waiting per subscriber; a subscriber that falls further behind is ended
    live_recheck_seconds: float = 60.0  # an idle subscription re-checks its permission this often
    # batches of events decided at once per process (each holds one pooled connection while it is decided):
    # events arriving meanwhile make the next batch, so a burst costs a few batches and never takes every
    # pooled connection from requests
    live_concurrent_deliveries: int = 2
    live_channel: str = "groupgraph_events"
    # GraphQL operations over HTTP (queries, mutations) running at once per process; more wait, first come
    # first served, before any of their work starts (SSE streams and WebSocket operations are not counted)
    http_concurrent_operations: int = 2
    # while live-update deliveries are on their way, operations that have not started wait for them, each for
    # at most this long in all (then it goes ahead when a place is free); 0: deliveries get no precedence
    live_delivery_precedence_seconds: float = 0.1

    @field_validator("self_service_groups", mode="before")
    @classmethod
    def _self_service_kinds(cls, value: Any) -> frozenset[str]:
        if isinstance(value, bool):
            return frozenset({"STAFF", "LEARNER"}) if value else frozenset()
        if isinstance(value, str):
            words = [w.strip().upper() for w in value.split(",") if w.strip()]
            if words in (["TRUE"], ["YES"], ["1"]):
                return frozenset({"STAFF", "LEARNER"})
            if words in ([], ["NONE"], ["FALSE"], ["NO"], ["0"]):
                return frozenset()
            value = words
        kinds = frozenset(str(k).upper() for k in value)
        unknown = sorted(kinds - set(ACCOUNT_KINDS))
        if unknown:
            raise ValueError(f"self-service groups take none or kinds of account ({', '.join(ACCOUNT_KINDS)}), not {unknown}")
        return kinds

    @field_validator("gc_threshold", mode="before")
    @classmethod
    def _gc_threshold(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        numbers = tuple(int(v) for v in value)
        if len(numbers) not in (0, 3) or any(n < 1 for n in numbers):
            raise ValueError("gc_threshold takes three positive numbers (generation 0, 1, 2), or nothing")
        return numbers

    @field_validator("http_concurrent_operations")
    @classmethod
    def _concurrent_operations(cls, value: int) -> int:
        if value < 1:
            raise ValueError("http_concurrent_operations must be at least 1 (operations running at once per process)")
        return value

    @field_validator("live_delivery_precedence_seconds")
    @classmethod
    def _precedence(cls, value: float) -> float:
        if not 0 <= value <= 60:
            raise ValueError("live_delivery_precedence_seconds must be between 0 (no precedence) and 60")
        return value

    @property
    def production(self) -> bool:
        return self.env.lower() == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
