"""Activation layers: Activation, ReLU, LeakyReLU, PReLU, ELU, Softmax, ThresholdedReLU.

They keep the shape and the receptive field; only PReLU has weights (one
slope per unit, shared along ``shared_axes``).

>>> from app.analysis.rules.base import Ctx
>>> params_prelu(Ctx("p", "PReLU", {"shared_axes": [1, 2]}, [(None, 8, 8, 16)]))
(16, 0)
"""

from __future__ import annotations

from typing import Any

from app.analysis.rules.base import Ctx, Params, activation_name, product, register
from app.analysis.rules.normalization import shape_identity
from app.analysis.traits import Trait


def activation_activation(ctx: Ctx) -> str | None:
    return activation_name(ctx.config.get("activation"))


def activation_relu(ctx: Ctx) -> str | None:
    max_value = ctx.config.get("max_value")
    slope = ctx.config.get("negative_slope") or 0
    if slope:
        return "leaky_relu"
    if max_value is not None:  # a capped ReLU (ReLU6 and its kin)
        return "relu6"
    return "relu"


def _fixed(name: str) -> Any:
    def activation(ctx: Ctx) -> str | None:
        return name

    return activation


def params_prelu(ctx: Ctx) -> Params:
    shape = ctx.shape
    if shape is None:
        return None, None
    dims = list(shape[1:])
    shared = ctx.config.get("shared_axes") or []
    if isinstance(shared, int):
        shared = [shared]
    if not isinstance(shared, list) or not all(isinstance(a, int) for a in shared):
        raise ctx.fail(f"shared_axes must be a list of ints. Received: shared_axes={shared!r}")
    for axis in shared:
        if not 1 <= axis <= len(dims):
            raise ctx.fail(f"shared_axes {shared} out of range for input_shape={list(shape)}")
        dims[axis - 1] = 1
    count = product(dims)
    return count, 0


_ACTIVATION = (Trait.ACTIVATION,)
register("Activation", "activation", shape_identity, traits=_ACTIVATION, activation=activation_activation)
register("ReLU", "activation", shape_identity, traits=_ACTIVATION, activation=activation_relu)
register("LeakyReLU", "activation", shape_identity, traits=_ACTIVATION, activation=_fixed("leaky_relu"))
register("PReLU", "activation", shape_identity, traits=_ACTIVATION, params=params_prelu, activation=_fixed("prelu"),
         initializer_key="alpha_initializer")
register("ELU", "activation", shape_identity, traits=_ACTIVATION, activation=_fixed("elu"))
register("Softmax", "activation", shape_identity, traits=_ACTIVATION, activation=_fixed("softmax"))
register("ThresholdedReLU", "activation", shape_identity, traits=_ACTIVATION, activation=_fixed("relu"))
