"""Core layers: InputLayer, Dense, EinsumDense, Embedding, Identity, and the custom
layers the Keras Applications define (CustomScaleLayer, LayerScale).

Dense on a rank-N input applies the kernel to the last axis at every position:
MACs = positions x C_in x units. After Flatten it mixes every unit, so its
receptive field is global.

>>> from app.analysis.rules.base import Ctx
>>> ctx = Ctx("d", "Dense", {"units": 10}, [(None, 64)])
>>> shape_dense(ctx), params_dense(ctx), macs_dense(ctx, shape_dense(ctx))
([(None, 10)], (650, 0), 640)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from app.analysis.graph import Shape
from app.analysis.rules.base import (
    Ctx,
    Params,
    activation_name,
    boolean,
    field_mixing,
    positive_int,
    product,
    register,
)
from app.analysis.rules.normalization import shape_identity
from app.analysis.traits import Trait


def shape_input(ctx: Ctx) -> list[Shape | None]:
    return [ctx.shape]


def _units_in(ctx: Ctx) -> int | None:
    shape = ctx.shape
    if shape is None:
        return None
    if len(shape) < 2:
        raise ctx.fail(f"expects an input of rank 2 or more. Received: input_shape={list(shape)}")
    return shape[-1]


def shape_dense(ctx: Ctx) -> list[Shape | None]:
    units = positive_int(ctx, "units")
    _units_in(ctx)
    shape = ctx.shape
    return [None if shape is None else (*shape[:-1], units)]


def params_dense(ctx: Ctx) -> Params:
    units = positive_int(ctx, "units")
    units_in = _units_in(ctx)
    if units_in is None:
        return None, None
    lora = ctx.config.get("lora_rank")
    extra = 0
    if isinstance(lora, int) and lora > 0:
        extra = lora * (units_in + units)
    return units_in * units + (units if boolean(ctx, "use_bias", True) else 0) + extra, 0


def macs_dense(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    units = positive_int(ctx, "units")
    shape = ctx.shape
    if shape is None:
        return None
    positions = product(shape[1:-1])
    units_in = shape[-1]
    return None if positions is None or units_in is None else positions * units_in * units


def fans_dense(ctx: Ctx) -> tuple[int | None, int | None]:
    return _units_in(ctx), positive_int(ctx, "units")


def activation_dense(ctx: Ctx) -> str | None:
    return activation_name(ctx.config.get("activation"))


# -- EinsumDense -----------------------------------------------------------------------------

_PLAIN = re.compile(r"^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$")
_LEFT = re.compile(r"^\.\.\.([a-zA-Z]+),([a-zA-Z]+)->\.\.\.([a-zA-Z]+)$")
_RIGHT = re.compile(r"^([a-zA-Z]{2,})\.\.\.,([a-zA-Z]+)->([a-zA-Z]{2,})\.\.\.$")


def _einsum(ctx: Ctx) -> tuple[list[int | None], list[int] | None, list[int | None], str, str, str] | None:
    """(kernel shape, bias shape, output shape, input spec, weight spec, output spec), as Keras."""
    equation = ctx.config.get("equation")
    if not isinstance(equation, str):
        raise ctx.fail(f"equation must be a string. Received: equation={equation!r}")
    equation = equation.replace(" ", "")
    left_elided = False
    match = _PLAIN.match(equation)
    if match is None:
        match = _LEFT.match(equation)
        left_elided = match is not None
    if match is None:
        match = _RIGHT.match(equation)
    if match is None:
        raise ctx.fail(f"equation must be like 'ab,bc->ac' (optionally with '...'). Received: equation={equation!r}")
    shape = ctx.shape
    if shape is None:
        return None
    input_spec, weight_spec, output_spec = match.groups()
    raw = ctx.config.get("output_shape")
    target = [raw] if isinstance(raw, int) or raw is None else list(raw)
    output_shape: list[int | None] = [shape[0], *target]
    elided = len(shape) - len(input_spec)
    if elided > 0 and left_elided:
        for i in range(1, elided):
            output_shape.insert(1, shape[i])
    elif elided > 0:
        for i in range(len(shape) - elided, len(shape)):
            output_shape.append(shape[i])
    if left_elided:
        input_map = {d: i + elided for i, d in enumerate(input_spec)}
        output_map = {d: i + elided for i, d in enumerate(output_spec)}
    else:
        input_map = {d: i for i, d in enumerate(input_spec)}
        output_map = {d: i for i, d in enumerate(output_spec)}
    if len(output_shape) != len(output_spec) + (elided if elided > 0 else 0):
        raise ctx.fail(
            f"output_shape {raw!r} does not fit equation {equation!r} for input_shape={list(shape)}"
        )
    for d in input_spec:
        if d in output_map and input_map[d] < len(shape):
            output_shape[output_map[d]] = shape[input_map[d]]
    kernel: list[int | None] = []
    for d in weight_spec:
        if d in input_map:
            kernel.append(shape[input_map[d]])
        elif d in output_map:
            kernel.append(output_shape[output_map[d]])
        else:
            raise ctx.fail(f"weight dimension '{d}' of equation {equation!r} appears in no input or output")
    bias_axes = ctx.config.get("bias_axes")
    bias: list[int] | None = None
    if bias_axes:
        first = min(output_spec.find(c) for c in bias_axes)
        bias = [
            output_shape[output_map[c]] if c in bias_axes else 1  # type: ignore[misc]
            for c in output_spec[first:]
        ]
    return kernel, bias, output_shape, input_spec, weight_spec, output_spec


def shape_einsum_dense(ctx: Ctx) -> list[Shape | None]:
    spec = _einsum(ctx)
    return [None if spec is None else tuple(spec[2])]


def params_einsum_dense(ctx: Ctx) -> Params:
    spec = _einsum(ctx)
    if spec is None:
        return None, None
    kernel = product(spec[0])
    bias = product(spec[1]) if spec[1] is not None else 0
    if kernel is None or bias is None:
        return None, None
    return kernel + bias, 0


def macs_einsum_dense(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    spec = _einsum(ctx)
    if spec is None:
        return None
    kernel, _, output_shape, input_spec, weight_spec, output_spec = spec
    contracted = [kernel[i] for i, d in enumerate(weight_spec) if d in input_spec and d not in output_spec]
    produced = product(output_shape[1:])
    factor = product(contracted)
    return None if produced is None or factor is None else produced * factor


# -- Embedding -------------------------------------------------------------------------------


def shape_embedding(ctx: Ctx) -> list[Shape | None]:
    positive_int(ctx, "input_dim")
    output_dim = positive_int(ctx, "output_dim")
    shape = ctx.shape
    if shape is None:
        return [None]
    return [(*shape, output_dim)]


def params_embedding(ctx: Ctx) -> Params:
    return positive_int(ctx, "input_dim") * positive_int(ctx, "output_dim"), 0


# -- custom layers of the Keras Applications ---------------------------------------------------


def params_layer_scale(ctx: Ctx) -> Params:
    return positive_int(ctx, "projection_dim"), 0


register("InputLayer", "core", shape_input, traits=(Trait.INPUT,))
register("Identity", "core", shape_identity, traits=(Trait.IDENTITY,))
register("Dense", "core", shape_dense, traits=(Trait.KERNEL, Trait.DENSE),
         params=params_dense, macs=macs_dense, field=field_mixing,
         activation=activation_dense, initializer_key="kernel_initializer", fans=fans_dense)
register("EinsumDense", "core", shape_einsum_dense, traits=(Trait.KERNEL, Trait.DENSE),
         params=params_einsum_dense, macs=macs_einsum_dense,
         field=field_mixing, activation=activation_dense, initializer_key="kernel_initializer")
register("Embedding", "core", shape_embedding, traits=(Trait.EMBEDDING,), params=params_embedding,
         initializer_key="embeddings_initializer")
def _config_number(key: str) -> Callable[[dict[str, Any]], float | None]:
    def read(config: dict[str, Any]) -> float | None:
        value = config.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return read


register("LayerScale", "core", shape_identity, traits=(Trait.SCALE,), params=params_layer_scale,
         scale_of=_config_number("init_values"))
register("CustomScaleLayer", "core", shape_identity, traits=(Trait.SCALE,), scale_of=_config_number("scale"))
