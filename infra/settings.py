"""The service's configuration: one pydantic-settings object, built once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Read from environment variables (names in upper case) and an optional ``.env``."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, populate_by_name=True
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
    read_your_writes_timeout: float = Field(
        default=5.0, gt=0, description="Longest a write waits for the read tables to catch up."
    )
    projection_poll_interval: float = Field(
        default=0.2, gt=0, description="How often the projector looks for new events."
    )
    sqlite_lock_timeout: int = Field(default=30, ge=1, description="Seconds to wait for a lock.")
    max_body_bytes: int = 64 * 1024
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
    aws_access_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID", "aws_access_key_id")
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    )
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "aws_region"),
    )

    @property
    def event_store_path(self) -> Path:
        return self.data_dir / "events.sqlite3"

    @property
    def read_tables_path(self) -> Path:
        return self.data_dir / "read-tables.sqlite3"
