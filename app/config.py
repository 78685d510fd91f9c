"""All settings in one place, read from the environment (prefix ``CONVLENS_``).

Example::

    CONVLENS_DATABASE_URL=postgresql+psycopg://user@db/convlens convlens serve
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings. Every field can be set as ``CONVLENS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CONVLENS_", extra="ignore")

    # -- storage -------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("./convlens-data"),
        description="Where the embedded database, uploaded files and reports live.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty: a SQLite file at <data_dir>/convlens.db.",
    )
    auto_migrate: bool = Field(
        default=True,
        description="Upgrade the database to the newest migration when the service starts.",
    )

    # -- HTTP ----------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = Field(default="", description="Base URL used in Location headers.")

    # -- jobs ----------------------------------------------------------------
    executor: Literal["local", "celery"] = Field(
        default="local",
        description="local: worker subprocesses started by the service; celery: Celery + broker.",
    )
    local_workers: int = Field(default=1, ge=0, le=64)
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = ""
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 30.0
    reconcile_interval_s: float = 5.0
    job_max_attempts: int = Field(default=3, ge=1)
    sync_analysis_timeout_s: float = Field(
        default=5.0, description="Static analyses finishing within this answer 201, else 202."
    )
    analysis_time_limit_s: float = 120.0
    gradient_time_limit_s: float = 600.0
    training_time_limit_s: float = 900.0
    training_max_steps: int = 2000
    training_max_batch_size: int = 256

    # -- limits --------------------------------------------------------------
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_json_bytes: int = 32 * 1024 * 1024
    max_json_depth: int = 128
    max_json_number_digits: int = 64
    max_archive_members: int = 64
    max_archive_config_bytes: int = 32 * 1024 * 1024
    max_archive_uncompressed_bytes: int = 4 * 1024 * 1024 * 1024
    max_compression_ratio: float = 200.0
    max_npz_bytes: int = 256 * 1024 * 1024
    max_layers: int = 20_000
    max_nesting_depth: int = 16
    max_params: int = 2_000_000_000
    max_activation_bytes: int = 64 * 1024 * 1024 * 1024
    child_memory_bytes: int = 2 * 1024 * 1024 * 1024
    child_cpu_seconds: int = 60
    child_timeout_s: float = 30.0

    # -- tenants -------------------------------------------------------------
    auth_mode: Literal["none", "api_key"] = Field(
        default="none",
        description="none: everything belongs to the 'default' tenant (loopback only).",
    )
    allow_insecure_bind: bool = Field(
        default=False, description="Allow auth_mode=none on a non-loopback address."
    )
    rate_limit_per_minute: int = 600
    max_concurrent_training_per_tenant: int = 2

    # -- observability -------------------------------------------------------
    log_json: bool = True
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'convlens.db').as_posix()}"
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings``)."""
    return Settings()
