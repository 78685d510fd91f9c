"""Per-tenant request rate limit (moving window, in process memory).

Only with API keys (``auth_mode=api_key``): each tenant has its quota. Without keys the
service has one local user, who is not rate-limited (``app.main.create_app``).

With several API processes each keeps its own window; the ``limits`` storage can be pointed
at Redis for a shared one (``storage_uri``).

Example::

    limiter = TenantRateLimiter(per_minute=600)
    limiter.check("acme")     # raises RateLimited once acme exceeds 600 requests a minute
"""

from __future__ import annotations

from limits import RateLimitItemPerMinute, storage, strategies

from app.errors import RateLimited


class TenantRateLimiter:
    def __init__(self, per_minute: int, storage_uri: str = "memory://") -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))

    def check(self, tenant_id: str) -> None:
        if not self.limiter.hit(self.item, "tenant", tenant_id):
            reset_at, _remaining = self.limiter.get_window_stats(self.item, "tenant", tenant_id)
            import time

            retry_after = max(1, int(reset_at - time.time()) + 1)
            raise RateLimited(
                f"Tenant request rate above {self.item.amount} per minute; retry in {retry_after} s.",
                extra={"retry_after": retry_after},
            )
