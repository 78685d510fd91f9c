"""Regularization layers: identity at inference (Dropout family, noise, activity regularization).

>>> from app.analysis.rules import lookup
>>> lookup("SpatialDropout2D", None).family
'regularization'
"""

from __future__ import annotations

from app.analysis.rules.base import register
from app.analysis.rules.normalization import shape_identity
from app.analysis.traits import Trait

REGULARIZATION = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
    "GaussianNoise", "GaussianDropout", "ActivityRegularization", "Masking",
    "StochasticDepth",
)

for _name in REGULARIZATION:
    register(_name, "regularization", shape_identity, traits=(Trait.REGULARIZATION, Trait.IDENTITY))
