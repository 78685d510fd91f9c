"""ORM tables, one per file. Import from here so every table is registered."""

from app.models.architecture import Architecture
from app.models.base import Base
from app.models.idempotency_key import IdempotencyKey
from app.models.job import JOB_STATUSES, TERMINAL_STATUSES, Job, JobEvent
from app.models.tenant import DEFAULT_TENANT, ApiKey, Tenant
from app.models.worker import Worker

__all__ = [
    "DEFAULT_TENANT",
    "JOB_STATUSES",
    "TERMINAL_STATUSES",
    "ApiKey",
    "Architecture",
    "Base",
    "IdempotencyKey",
    "Job",
    "JobEvent",
    "Tenant",
    "Worker",
]
