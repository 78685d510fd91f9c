"""Domain errors. Each carries an HTTP status and a stable ``code``.

They are rendered once, by the API, as RFC 9457 problem+json; the engine and the
ingestion code raise them without knowing about HTTP frameworks.

Example::

    raise InvalidArchitecture("Conv2D 'conv1': kernel_size must be positive. Received: kernel_size=0")
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra: dict[str, Any] = dict(extra or {})

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://convlens.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(DomainError):
    pass


class InvalidArchitecture(DomainError):
    status = 422
    code = "invalid_architecture"
    title = "The architecture could not be read"


class InvalidInputShape(DomainError):
    status = 422
    code = "invalid_input_shape"
    title = "The input shape is not acceptable"


class UnsafeArchitecture(DomainError):
    status = 422
    code = "unsafe_architecture"
    title = "The architecture contains objects convlens will not load"

    def __init__(self, detail: str, *, layer: str | None = None, reason: str | None = None) -> None:
        super().__init__(detail, extra={"layer": layer, "reason": reason or detail})


class InvalidJSON(DomainError):
    status = 422
    code = "invalid_json"
    title = "The body is not acceptable JSON"


class ValidationFailed(DomainError):
    status = 422
    code = "validation_error"
    title = "The request does not match the schema"


class UnsupportedFormat(DomainError):
    status = 415
    code = "unsupported_format"
    title = "Unsupported file format"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    title = "The request body is too large"


class ResourceLimitExceeded(DomainError):
    status = 422
    code = "resource_limit_exceeded"
    title = "The architecture exceeds a resource limit"


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class InvalidDataset(DomainError):
    status = 422
    code = "invalid_dataset"
    title = "The training dataset is not acceptable"


class ServiceBusy(DomainError):
    status = 503
    code = "inspection_busy"
    title = "The service is busy"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class TenantLimitReached(DomainError):
    """A per-tenant cap on shared resources (open streams, uploads in flight, queued jobs,
    stored bytes): what one tenant holds never starves the others."""

    status = 429
    code = "tenant_limit"
    title = "A per-tenant limit is reached"

    def __init__(self, detail: str, *, limit: str, maximum: int, retry_after: int = 5) -> None:
        super().__init__(detail, extra={"limit": limit, "maximum": maximum, "retry_after": retry_after})


class StorageQuotaExceeded(DomainError):
    status = 413
    code = "storage_quota_exceeded"
    title = "The tenant's storage quota is used up"


class IdempotencyKeyReused(DomainError):
    status = 422
    code = "idempotency_key_reused"
    title = "The Idempotency-Key was used for another request"


class StorageUnavailable(DomainError):
    """Files could not be written (permissions, a read-only or full disk): nothing was stored."""

    status = 503
    code = "storage_unavailable"
    title = "Storage is not available"
