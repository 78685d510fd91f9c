"""The gradient-flow prediction's shortcuts give, bit for bit, what the general code gives."""

from __future__ import annotations

import random

from app.analysis.gradient_flow import _LOG_FLOOR, _centred_rectified, _log_sum2, _rectified, _Stats


def test_the_relu_of_a_centred_normal_is_the_general_rectification() -> None:
    rng = random.Random(7)
    pairs = [(rng.uniform(-320.0, 320.0), rng.uniform(-320.0, 320.0)) for _ in range(2000)]
    pairs += [(0.0, _LOG_FLOOR), (_LOG_FLOOR, _LOG_FLOOR), (99.99, -5.0), (100.0, _LOG_FLOOR),
              (-299.9, _LOG_FLOOR), (_LOG_FLOOR, -299.99), (float("nan"), 0.0)]
    for fluct, offset in pairs:
        stats = _Stats(fluct, offset, _LOG_FLOOR)
        spread = _log_sum2(stats.fluct, stats.offset)
        fast, general = _centred_rectified(spread), _rectified(stats, spread)
        assert repr(fast) == repr(general), (fluct, offset)
