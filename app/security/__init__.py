"""The safety gate in front of every path into Keras.

Example::

    from app.security import gate_architecture, check_report_limits
    sanitised = gate_architecture(config, settings)   # 422 on code-bearing objects or limits
    check_report_limits(report, settings)             # 422 on the engine's totals
"""

from app.security.gate import gate_architecture
from app.security.limits import check_report_limits

__all__ = ["check_report_limits", "gate_architecture"]
