"""The safety gate in front of every path into Keras: an allowlist validator and limits.

Example::

    from app.security import validate_architecture, check_static_limits
    validate_architecture(config, settings)   # UnsafeArchitecture (422) on code-bearing objects
    check_static_limits(config, settings)     # ResourceLimitExceeded (422) on oversized models
"""

from app.security.limits import check_report_limits, check_static_limits
from app.security.validator import validate_architecture

__all__ = ["check_report_limits", "check_static_limits", "validate_architecture"]
