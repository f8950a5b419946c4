"""The service's configuration: one pydantic-settings object, built once at start-up."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROLES = ("admin", "auditor", "client")
"""``admin``: /admin and /audit; ``auditor``: /audit; ``client``: neither (its
name only identifies the caller on the open endpoints)."""

_KEY_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256 = re.compile(r"sha256:([0-9a-fA-F]{64})")


@dataclass(frozen=True, repr=False)
class ApiKey:
    """One configured API key: its name (the actor), its role, and the SHA-256 of
    the key; the key itself is never kept, and the repr shows no digest."""

    name: str
    role: str
    digest: bytes

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, role={self.role!r})"


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """Parses ``name:role:key`` entries separated by commas (``key`` may be
    ``sha256:<64 hex digits>``, the digest of the key). Errors never quote a key."""
    keys: list[ApiKey] = []
    for n, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        name, _, rest = entry.partition(":")
        role, _, key = rest.partition(":")
        if not _KEY_NAME.fullmatch(name):
            msg = f"API_KEYS entry {n}: the name must be 1-64 of A-Z a-z 0-9 _ . @ -"
            raise ValueError(msg)
        if role not in ROLES:
            msg = f"API_KEYS entry {n} ({name}): the role must be one of {', '.join(ROLES)}"
            raise ValueError(msg)
        hashed = _SHA256.fullmatch(key)
        if hashed:
            digest = bytes.fromhex(hashed.group(1))
        elif len(key) >= 16 and key.isprintable() and " " not in key:
            digest = hashlib.sha256(key.encode()).digest()
        else:
            msg = (
                f"API_KEYS entry {n} ({name}): the key must be 16 or more printable "
                "characters without spaces, or sha256:<64 hex digits>"
            )
            raise ValueError(msg)
        if any(k.name == name for k in keys):
            msg = f"API_KEYS entry {n}: the name {name} is given twice"
            raise ValueError(msg)
        keys.append(ApiKey(name, role, digest))
    return tuple(keys)


DEFAULT_WRITER_LANES = {"sqlite": 1, "dynamodb": 8}
"""Writer lanes when ``WRITER_LANES`` is unset, by store."""


class Settings(BaseSettings):
    """Read from environment variables (names in upper case) and an optional ``.env``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        # A bad setting's error must not quote its value: API_KEYS holds secrets.
        hide_input_in_errors=True,
    )

    store: Literal["sqlite", "dynamodb"] = Field(
        default="sqlite", description="Event store and read tables: embedded SQLite or DynamoDB."
    )
    data_dir: Path = Field(default=Path("data"), description="Where the SQLite files live.")
    environment: Literal["development", "test", "production"] = Field(
        default="development",
        description="In production an invariant violation is logged; elsewhere it raises.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_batch: int = Field(
        default=128, ge=1, le=1024, description="Most commands decided and committed together."
    )
    writer_lanes: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description=(
            "Writer threads that decide and save batches at the same time, each for its own "
            "share of the gatherings (a command goes to the lane its gathering hashes to, so "
            "one gathering's commands keep their order). Unset: 8 on DynamoDB, where a save "
            "mostly waits for the network; 1 on SQLite, whose one write lock lets one save "
            "through at a time. Ignored when commands are decided on the event loop."
        ),
    )
    decide_on_event_loop: bool = Field(
        default=True,
        description=(
            "SQLite with one worker: decide and group-commit commands on the event loop that "
            "serves the requests (one batch per turn of the loop) instead of in a writer "
            "thread. Ignored on DynamoDB, whose network calls must not block the loop, and "
            "with WORKERS>1, where waiting for another process's write lock would."
        ),
    )
    batch_linger_ms: float = Field(
        default=2.0,
        ge=0,
        le=50,
        description=(
            "With commands decided on the event loop, under concurrent load: how long a batch "
            "waits for more commands after its first arrived (0: never). Load: one of the last "
            "8 batches held several commands, so a lone client's commands stop waiting after 8."
        ),
    )
    sqlite_lock_timeout: int = Field(default=30, ge=1, description="Seconds to wait for a lock.")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description=(
            "SQLite's PRAGMA synchronous for the event store (WAL mode). FULL: a 2xx means the "
            "events are on disk. NORMAL is faster but may lose the last commits on power loss."
        ),
    )
    max_body_bytes: int = 64 * 1024
    opentelemetry: bool = Field(
        default=False,
        description=(
            "FastAPI's native OpenTelemetry spans, metrics and logs (to the globally "
            "configured providers). Off: the service logs JSON lines itself, and the checks "
            "FastAPI would make on every request cost about 3% of its CPU (measured)."
        ),
    )
    page_token_secret: SecretStr | None = Field(
        default=None,
        min_length=1,
        description=(
            "Key that signs page tokens (nextToken); every process serving the same clients "
            "must share it. Unset: a fixed built-in key, which lets anyone mint tokens."
        ),
    )
    personal_data_master_key: SecretStr | None = Field(
        default=None,
        min_length=1,
        description=(
            "32 bytes in base64: wraps each user's data key in the key table (AES-GCM), so "
            "a copy of that table alone opens no personal data. Unset: keys are stored "
            "unwrapped. Every process of the service must share it; losing it loses every "
            "name."
        ),
    )
    api_keys: Annotated[tuple[ApiKey, ...], NoDecode] = Field(
        default=(),
        description=(
            "Comma-separated `name:role:key` entries (role admin, auditor or client; key "
            "16+ printable characters or `sha256:<hex>` of it). Clients send "
            "`Authorization: Bearer <key>`. None configured: /audit and /admin answer 401."
        ),
    )
    metrics_access: Literal["loopback", "open", "auditor", "admin"] = Field(
        default="loopback",
        description=(
            "Who may read GET /metrics: `loopback` (clients on 127.0.0.1 or ::1, and admin "
            "keys), `open` (anyone), `auditor` (auditor and admin keys) or `admin` (admin keys)."
        ),
    )
    ready_max_feed_lag_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "DynamoDB: GET /ready answers 503 while the oldest write waiting for its feed "
            "position (the stream indexer's lag) is older than this (seconds)."
        ),
    )
    idempotency_ttl_hours: int = Field(
        default=24,
        ge=24,
        le=24 * 365,
        description="How long an Idempotency-Key's response is kept for replays (hours).",
    )
    rebuild_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "A rebuild whose process wrote nothing for this long (seconds) is taken over by the "
            "next one asked for (a dead process on the same host is noticed at once)."
        ),
    )
    rebuild_switch_grace_seconds: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description=(
            "DynamoDB: how long a rebuild's switch waits, once it fenced appends, for those "
            "already sent to land (writes pause meanwhile). Not needed for correctness: an "
            "append that lands in the replaced tables later is repaired; this only saves repairs."
        ),
    )
    rebuild_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Events a rebuild folds per transaction."
    )
    dynamodb_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "AWS_ENDPOINT_URL_DYNAMODB", "DYNAMODB_ENDPOINT_URL", "dynamodb_endpoint_url"
        ),
    )
    dynamodb_table_prefix: str = Field(
        default="regsvc-", pattern=r"^[A-Za-z0-9_.-]{0,100}$", description="Table name prefix."
    )
    dynamodb_max_attempts: int = Field(
        default=5, ge=1, le=20, description="botocore attempts per DynamoDB call (standard mode)."
    )
    dynamodb_simulated_latency_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description=(
            "Benchmarks only: every DynamoDB and DynamoDB Streams call first waits this many ms, "
            "as a network round trip would (DynamoDB Local has none). 0: no delay."
        ),
    )
    dynamodb_indexer: bool = Field(
        default=True,
        description=(
            "Run the stream indexer (which builds the notification log from the events "
            "table's DynamoDB Stream) in the server process. Turn it off where another "
            "indexer runs (the production Lambda fed by the stream)."
        ),
    )
    aws_access_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID", "aws_access_key_id")
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    )
    aws_session_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_SESSION_TOKEN", "aws_session_token"),
        description="With temporary credentials (AWS Lambda sets all three).",
    )
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "aws_region"),
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return parse_api_keys(value) if isinstance(value, str) else value

    @property
    def lanes(self) -> int:
        """How many writer lanes (``writer_lanes``, or the store's default)."""
        if self.writer_lanes is not None:
            return self.writer_lanes
        return DEFAULT_WRITER_LANES[self.store]

    @property
    def event_store_path(self) -> Path:
        """The SQLite file holding the events and the read tables."""
        return self.data_dir / "events.sqlite3"
