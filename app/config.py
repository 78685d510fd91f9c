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
    database_timeout_s: float = Field(
        default=10.0,
        description="Longest a database statement, lock wait or pool wait may take (PostgreSQL "
        "statement_timeout and lock_timeout, SQLite busy timeout): a request answers 503 instead of hanging.",
    )
    database_connect_timeout_s: float = Field(
        default=5.0, description="Timeout of a new database connection."
    )

    # -- HTTP ----------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address the HTTP service binds to.")
    port: int = Field(default=8000, description="Port the HTTP service listens on.")
    public_url: str = Field(default="", description="Base URL used in Location headers.")
    http_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="HTTP processes of convlens serve (0: one per CPU core).",
    )
    http_reuse_port: bool = Field(
        default=True,
        description=(
            "With several HTTP processes on Linux, each listens on a socket of its own (SO_REUSEPORT) "
            "and the kernel spreads new connections over them; otherwise they share one socket and "
            "whichever process wakes first accepts."
        ),
    )
    http_work_threads: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Requests an HTTP process works on at once (the rest wait their turn, off any thread).",
    )
    http_analysis_lanes: int = Field(
        default=0,
        ge=0,
        le=256,
        description=(
            "Analyses an HTTP process prepares, analyses and stores at once; the rest wait their turn "
            "on the event loop (0: one on SQLite, whose writes take turns anyway, else "
            "http_work_threads). An analysis outrunning its sync window gives up its lane."
        ),
    )

    # -- jobs ----------------------------------------------------------------
    executor: Literal["local", "celery"] = Field(
        default="local",
        description="local: worker subprocesses started by the service; celery: Celery + broker.",
    )
    local_workers: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Worker subprocesses the local executor starts beside the API.",
    )
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Celery broker (Redis; RabbitMQ amqp:// URLs work too).",
    )
    result_backend: str = Field(
        default="",
        description="Celery result backend (unused by convlens: results live in the database).",
    )
    broker_timeout_s: float = Field(
        default=2.0,
        description="Connect, read and publish timeout of the broker calls made while serving a request "
        "(a job whose message could not be sent stays queued for the reconciler).",
    )
    heartbeat_interval_s: float = Field(
        default=1.0, description="How often a running job writes its heartbeat."
    )
    heartbeat_timeout_s: float = Field(
        default=3.0,
        description="A running job whose heartbeat is older than this is re-queued (its worker is lost).",
    )
    reconcile_interval_s: float = Field(
        default=1.0, description="How often the reconciler looks for lost, overdue and cancelled jobs."
    )
    redispatch_after_s: float = Field(
        default=60.0,
        description="A queued job whose message was sent this long ago is sent again (doubling each time).",
    )
    job_poll_interval_s: float = Field(
        default=1.0, description="How often an idle local worker looks for queued jobs in the database."
    )
    warm_tf_process: bool = Field(
        default=True,
        description="Keep one TensorFlow process started ahead per worker (each job still gets a fresh one).",
    )
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        description="A job that keeps failing or killing its worker ends failed after this many attempts.",
    )
    sync_analysis_timeout_s: float = Field(
        default=5.0, description="Static analyses finishing within this answer 201, else 202."
    )
    analysis_time_limit_s: float = Field(
        default=120.0, description="Time limit of a queued static analysis."
    )
    gradient_time_limit_s: float = Field(
        default=600.0, description="Time limit of a gradient-measurement job."
    )
    effective_field_time_limit_s: float = Field(
        default=600.0, description="Time limit of an effective-receptive-field measurement job."
    )
    training_time_limit_s: float = Field(default=900.0, description="Time limit of a training run.")
    training_max_steps: int = Field(
        default=2000, description="Upper bound on a training run's steps."
    )
    training_max_batch_size: int = Field(
        default=256, description="Upper bound on a training run's batch size."
    )
    training_checkpoint_every_steps: int = Field(
        default=50,
        ge=0,
        description="A training run saves a checkpoint every this many steps; a retry resumes from "
        "the last one (0: no checkpoints).",
    )
    tf_max_processes: int = Field(
        default=1,
        ge=1,
        description="TensorFlow jobs running at once on one host (per data directory).",
    )
    tf_memory_bytes: int = Field(
        default=0,
        ge=0,
        description="Memory one TensorFlow job may use: its process's RLIMIT_DATA and the budget "
        "gradients and training requests are checked against. 0: 80% of this machine's memory "
        "(or its cgroup limit) divided by tf_max_processes.",
    )
    tf_cpu_seconds: int = Field(
        default=0,
        ge=0,
        description="CPU seconds one TensorFlow job may use (RLIMIT_CPU). 0: its time limit times "
        "this machine's cores.",
    )

    test_hooks_dir: Path | None = Field(
        default=None,
        description="Tests only: a folder where '<job id>.hold' files pause a training run at a "
        "given step until the file is removed. Never set in production.",
    )

    # -- limits --------------------------------------------------------------
    max_upload_bytes: int = Field(
        default=1024 * 1024 * 1024,
        description="Largest uploaded file (counted while it streams in: 413).",
    )
    max_json_bytes: int = Field(default=32 * 1024 * 1024, description="Largest JSON request body.")
    body_read_grace_s: float = Field(
        default=10.0, gt=0,
        description="A request body may take this long plus one second per body_min_bytes_per_s "
        "received; a slower client is answered 408 and disconnected.",
    )
    body_min_bytes_per_s: int = Field(
        default=4096, ge=1,
        description="Slowest average rate at which a request body is received (after body_read_grace_s).",
    )
    body_idle_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest pause between two pieces of a request body."
    )
    max_json_depth: int = Field(default=128, description="Deepest JSON nesting accepted.")
    max_json_number_digits: int = Field(
        default=64, description="Longest number literal accepted in JSON."
    )
    max_json_elements: int = Field(
        default=2_000_000,
        description="Most values (containers and scalars) in one JSON document, counted before parsing.",
    )
    max_archive_members: int = Field(default=64, description="Most members in a .keras archive.")
    max_archive_config_bytes: int = Field(
        default=32 * 1024 * 1024, description="Largest config.json inside a .keras archive."
    )
    max_archive_uncompressed_bytes: int = Field(
        default=4 * 1024 * 1024 * 1024,
        description="Largest total uncompressed size of a .keras archive.",
    )
    max_compression_ratio: float = Field(
        default=200.0, description="Highest compression ratio of an archive member (zip bombs)."
    )
    max_npz_bytes: int = Field(
        default=256 * 1024 * 1024, description="Largest uploaded .npz training dataset."
    )
    render_cache_bytes: int = Field(
        default=128 * 1024 * 1024,
        description="Memory for rendered report pages and plots, per API process (least recently used go first).",
    )
    max_layers: int = Field(
        default=20_000, description="Most layers in an architecture (nested models included)."
    )
    max_nesting_depth: int = Field(
        default=16, description="Deepest nesting of models inside models."
    )
    max_params: int = Field(
        default=2_000_000_000, description="Most parameters in an architecture."
    )
    max_activation_bytes: int = Field(
        default=64 * 1024 * 1024 * 1024,
        description="Most activation memory per sample of the jobs that allocate it (not the static analysis).",
    )
    child_memory_bytes: int = Field(
        default=2 * 1024 * 1024 * 1024,
        description="Address-space limit of the child processes that parse .h5 files.",
    )
    child_cpu_seconds: int = Field(
        default=60, description="CPU-time limit of those child processes."
    )
    child_timeout_s: float = Field(
        default=30.0, description="Wall-clock limit of those child processes."
    )
    max_concurrent_hdf5_inspections: int = Field(
        default=2, ge=1, le=64,
        description="HDF5 inspection children (.h5 uploads, .keras weights) running at once per API process.",
    )
    max_input_dim: int = Field(
        default=1_000_000, description="Largest dimension of an input_shape override."
    )
    max_input_rank: int = Field(
        default=5, description="Most dimensions of an input_shape override (batch excluded)."
    )
    max_input_elements: int = Field(
        default=2**30, description="Most elements of one input sample given by an input_shape override."
    )
    max_npz_members: int = Field(default=16, description="Most arrays in an uploaded .npz dataset.")

    demo_data: bool = Field(
        default=True,
        description="Embedded mode without keys: keep demo analyses of the seed's models so the docs examples work.",
    )

    # -- tenants -------------------------------------------------------------
    auth_mode: Literal["none", "api_key"] = Field(
        default="none",
        description="none: everything belongs to the 'default' tenant (loopback only).",
    )
    allow_insecure_bind: bool = Field(
        default=False, description="Allow auth_mode=none on a non-loopback address."
    )
    rate_limit_per_minute: int = Field(
        default=600,
        description="Requests per minute per tenant when API keys are on (auth_mode=api_key; 0 disables). "
        "Without keys (auth_mode=none: one local user) requests are not rate-limited.",
    )
    max_concurrent_training_per_tenant: int = Field(
        default=2, description="Training runs a tenant may have queued or running at once."
    )
    max_open_streams_per_tenant: int = Field(
        default=20, ge=1,
        description="Event streams (server-sent events) a tenant may hold open at once, per HTTP process.",
    )
    max_uploads_per_tenant: int = Field(
        default=8, ge=1,
        description="Request bodies of uploads (multipart, octet-stream) a tenant may be sending at once, "
        "per HTTP process.",
    )
    max_queued_gradients_per_tenant: int = Field(
        default=4, ge=1,
        description="Measurement jobs (gradients, effective field) a tenant may have queued or running at once.",
    )
    storage_quota_bytes: int = Field(
        default=20 * 1024 * 1024 * 1024, ge=0,
        description="Bytes a tenant may store (architectures, uploaded files, training datasets); "
        "0: no quota.",
    )
    idempotency_key_ttl_s: float = Field(
        default=24 * 3600.0, gt=0,
        description="How long the first answer to a POST with an Idempotency-Key is kept for its retries.",
    )
    metrics_token: str = Field(
        default="",
        description="api_key mode: /metrics answers only 'Authorization: Bearer <metrics_token>' "
        "(unset: /metrics is refused). auth_mode=none: /metrics is open (loopback only).",
    )

    # -- observability -------------------------------------------------------
    log_json: bool = Field(default=True, description="Structured JSON logs (false: plain text).")
    log_level: str = Field(default="INFO", description="Log level.")

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'convlens.db').as_posix()}"
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def analysis_lanes(self) -> int:
        """``http_analysis_lanes``, its 0 resolved: one on SQLite, else ``http_work_threads``."""
        if self.http_analysis_lanes:
            return self.http_analysis_lanes
        return 1 if self.is_sqlite else self.http_work_threads

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings``)."""
    return Settings()
