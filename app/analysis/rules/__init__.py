"""The per-layer rule table, keyed by Keras ``class_name``, one module per family.

>>> from app.analysis.rules import lookup
>>> lookup("MaxPooling2D", "keras.layers").family
'pooling'
>>> lookup("NoSuchLayer", None) is None
True
"""

from __future__ import annotations

from app.analysis.rules import (  # noqa: F401  (importing registers the rules)
    activation,
    attention,
    convolution,
    core,
    merging,
    normalization,
    ops,
    pooling,
    preprocessing,
    recurrent,
    regularization,
    reshaping,
    tfop,
)
from app.analysis.rules.base import REGISTRY, Ctx, Rule, UnsupportedVariant
from app.analysis.traits import Trait

OPS_PREFIX = "ops."


def is_operation(module: str | None) -> bool:
    """Keras 3 functional ops (``x + y``, ``x * 0.5``) are recorded with an ops module;
    they are not layers and Keras leaves them out of ``model.layers``."""
    if type(module) is str and "ops" not in module:  # every layer's "keras.layers": no string
        return False                                   # built to find out
    return bool(module) and ".ops." in f".{module}."  # type: ignore[operator]


def lookup(class_name: str, module: str | None) -> Rule | None:
    """The rule for a layer class (an op's rule for Keras 3 ops), or None if unknown."""
    return lookup_rule(class_name, is_operation(module))


def lookup_rule(class_name: str, operation: bool) -> Rule | None:
    """The rule for a layer class, or for a Keras 3 op when ``operation`` is True.

    >>> lookup_rule("Add", True).class_name
    'ops.Add'
    """
    return REGISTRY.get(OPS_PREFIX + class_name if operation else class_name)


MODEL_CLASS_NAMES = frozenset({"Functional", "Sequential", "Model"})
_MODEL_TRAITS = frozenset({Trait.MODEL})


def traits_of(class_name: str, module: str | None = None) -> frozenset[Trait]:
    """What a class is, for code that only has a class name (a stored report, a Keras layer
    object's type): the rule's traits, ``{MODEL}`` for nested models, empty when unknown.

    >>> sorted(str(trait) for trait in traits_of("Conv2DTranspose"))
    ['kernel', 'spatial_kernel', 'transposed', 'upsampling']
    >>> traits_of("Functional") == {Trait.MODEL}, traits_of("NoSuchLayer")
    (True, frozenset())
    """
    if class_name in MODEL_CLASS_NAMES:
        return _MODEL_TRAITS
    rule = lookup(class_name, module)
    return rule.traits if rule is not None else frozenset()


def registered_class_names() -> list[str]:
    """Every class name with a rule (ops prefixed with ``ops.``)."""
    return sorted(REGISTRY)


__all__ = [
    "REGISTRY",
    "Ctx",
    "Rule",
    "UnsupportedVariant",
    "is_operation",
    "lookup",
    "lookup_rule",
    "registered_class_names",
    "traits_of",
]
