"""Functional ops: Keras 3 ops recorded in a model (``x + 3.0``, ``x * gate``,
``ops.mean``) and the tf.keras 2.x ``TFOpLambda`` functions share one table of
canonical operations (see :mod:`app.analysis.rules.tfop` for the latter).

Element-wise ops broadcast their tensor arguments (constants are scalars) and
keep the receptive field (union over tensor inputs); reductions over spatial
axes make it global. An op the table does not know is reported unsupported.

>>> from app.analysis.rules.base import Ctx
>>> op_shape("add", Ctx("a", "Add", {}, [(None, 7, 7, 16)], fmt="op"), {})
[(None, 7, 7, 16)]
"""

from __future__ import annotations

from typing import Any

from app.analysis.graph import ReceptiveField, Shape
from app.analysis.rules.base import (
    GLOBAL,
    Ctx,
    UnsupportedVariant,
    product,
    register,
    union_fields,
)
from app.analysis.rules.merging import broadcast
from app.analysis.traits import Merge, Trait

UNARY = {
    "relu": "relu", "relu6": "relu6", "silu": "silu", "swish": "silu", "gelu": "gelu",
    "sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid", "hard_silu": "hard_silu",
    "hard_swish": "hard_silu", "tanh": "tanh", "elu": "elu", "selu": "selu",
    "softplus": "softplus", "softsign": "softsign", "leaky_relu": "leaky_relu",
    "exp": "exponential", "log": "linear", "sqrt": "linear", "square": "linear", "abs": "linear",
    "negative": "linear", "identity": "linear", "cast": "linear", "stop_gradient": "linear",
    "rsqrt": "linear", "reciprocal": "linear", "round": "linear", "floor": "linear",
    "ceil": "linear", "sign": "linear", "erf": "linear", "log_softmax": "softmax",
    "softmax": "softmax", "clip": "linear", "clip_by_value": "linear",
}
BINARY = ("add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power",
          "maximum", "minimum", "mod", "squared_difference", "bias_add")
REDUCTIONS = ("mean", "sum", "max", "min", "prod", "reduce_mean", "reduce_sum", "reduce_max",
              "reduce_min", "reduce_prod")

# Keras 3 op class name -> canonical op
KERAS3_OPS: dict[str, str] = {
    "Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "divide",
    "TrueDivide": "divide", "FloorDivide": "floor_divide", "Power": "power",
    "Maximum": "maximum", "Minimum": "minimum", "Mod": "mod",
    "Relu": "relu", "Relu6": "relu6", "Silu": "silu", "Swish": "silu", "Gelu": "gelu",
    "Sigmoid": "sigmoid", "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu",
    "HardSwish": "hard_silu", "Tanh": "tanh", "Elu": "elu", "Selu": "selu",
    "Softplus": "softplus", "Softsign": "softsign", "LeakyRelu": "leaky_relu",
    "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Square": "square", "Absolute": "abs",
    "Abs": "abs", "Negative": "negative", "Cast": "cast", "Rsqrt": "rsqrt",
    "Reciprocal": "reciprocal", "Clip": "clip", "Erf": "erf", "Sign": "sign",
    "Softmax": "softmax", "LogSoftmax": "log_softmax", "StopGradient": "stop_gradient",
    "Mean": "mean", "Sum": "sum", "Max": "max", "Min": "min", "Prod": "prod",
    "Reshape": "reshape", "Transpose": "transpose", "ExpandDims": "expand_dims",
    "Squeeze": "squeeze", "Concatenate": "concat", "Matmul": "matmul",
}


def _axis_list(value: Any, rank: int, ctx: Ctx) -> list[int] | None:
    if value is None:
        return None
    axes = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(axes, (list, tuple)) or not all(isinstance(a, int) for a in axes):
        raise UnsupportedVariant(f"axis {value!r}")
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ctx.fail(f"axis {a} is out of range for input_shape of rank {rank}")
        out.append(a % rank)
    return out


def _argument(ctx: Ctx, args: dict[str, Any], names: tuple[str, ...], position: int) -> Any:
    for name in names:
        if name in args:
            return args[name]
    return args.get(f"args[{position}]")


def op_shape(op: str, ctx: Ctx, args: dict[str, Any]) -> list[Shape | None]:
    """Output shape of a canonical op; ``args`` are its non-tensor arguments."""
    shapes = ctx.input_shapes
    first = ctx.shape
    if op in UNARY:
        return [first]
    if op in BINARY:
        return [broadcast(ctx, shapes) if len(shapes) > 1 else first]
    if op in REDUCTIONS:
        if first is None:
            return [None]
        axes = _axis_list(_argument(ctx, args, ("axis",), 1), len(first), ctx)
        keepdims = bool(_argument(ctx, args, ("keepdims",), 2))
        if axes is None:
            return [tuple(1 for _ in first) if keepdims else ()]
        if keepdims:
            return [tuple(1 if i in axes else d for i, d in enumerate(first))]
        return [tuple(d for i, d in enumerate(first) if i not in axes)]
    if op == "reshape":
        target = _argument(ctx, args, ("shape", "newshape"), 1)
        if not isinstance(target, (list, tuple)):
            raise UnsupportedVariant(f"reshape to {target!r}")
        dims = [None if d is None else int(d) for d in target]
        total = product(first[1:]) if first is not None else None
        if dims and dims[0] in (None, -1) and len(dims) >= 1:
            rest = dims[1:]
            if -1 in rest and total is not None:
                known = product([d for d in rest if d != -1]) or 1
                rest = [total // known if d == -1 else d for d in rest]
            return [(None, *[None if d == -1 else d for d in rest])]
        return [tuple(None if d == -1 else d for d in dims)]
    if op == "transpose":
        perm = _argument(ctx, args, ("axes", "perm"), 1)
        if first is None:
            return [None]
        if perm is None:
            return [tuple(reversed(first))]
        if not isinstance(perm, (list, tuple)) or sorted(perm) != list(range(len(first))):
            raise UnsupportedVariant(f"transpose with perm {perm!r}")
        return [tuple(first[p] for p in perm)]
    if op == "expand_dims":
        axis = _argument(ctx, args, ("axis",), 1)
        if first is None:
            return [None]
        if not isinstance(axis, int):
            raise UnsupportedVariant(f"expand_dims axis {axis!r}")
        position = axis % (len(first) + 1)
        return [(*first[:position], 1, *first[position:])]
    if op == "squeeze":
        if first is None:
            return [None]
        axes = _axis_list(_argument(ctx, args, ("axis",), 1), len(first), ctx)
        if axes is None:
            return [tuple(d for i, d in enumerate(first) if d != 1 or i == 0)]
        return [tuple(d for i, d in enumerate(first) if i not in axes)]
    if op == "concat":
        from app.analysis.rules.merging import shape_concatenate

        axis = _argument(ctx, args, ("axis",), 1)
        sub = Ctx(ctx.name, ctx.class_name, {"axis": -1 if axis is None else axis}, shapes)
        return shape_concatenate(sub)
    if op == "matmul":
        if len(shapes) != 2 or shapes[0] is None or shapes[1] is None:
            return [None]
        a, b = shapes[0], shapes[1]
        return [(*a[:-1], b[-1])]
    raise UnsupportedVariant(f"op '{op}'")


def op_macs(op: str, ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    if op == "matmul":
        out = outputs[0]
        first = ctx.shape
        produced = product(out[1:]) if out is not None else None
        if produced is None or first is None or first[-1] is None:
            return None
        return produced * first[-1]
    return 0


def op_field(op: str, ctx: Ctx, args: dict[str, Any], fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    merged = union_fields(fields, ctx.input_names or [f"input {i}" for i in range(len(fields))])
    if merged is None or merged.unknown or merged.axes is None:
        return merged
    first = ctx.shape
    if op in REDUCTIONS and first is not None:
        axes = _axis_list(_argument(ctx, args, ("axis",), 1), len(first), ctx)
        spatial = set(range(1, len(first) - 1))
        if axes is None or spatial & set(axes):
            return GLOBAL
        return merged
    if op in ("reshape", "transpose", "expand_dims", "squeeze", "matmul"):
        outputs = op_shape(op, ctx, args)
        out = outputs[0]
        if op == "matmul":
            return GLOBAL
        if out is not None and first is not None and len(out) == len(first) and out[1:-1] == first[1:-1]:
            return merged
        from app.analysis.rules.base import FLAT

        return GLOBAL if merged.is_global else FLAT
    return merged


def op_activation(op: str) -> str | None:
    return UNARY.get(op)


def _keras3_args(ctx: Ctx) -> dict[str, Any]:
    args = {k: v for k, v in ctx.config.items() if k not in ("name", "trainable", "dtype")}
    args.update(ctx.constants)
    return args


def _keras3_rule(op: str) -> dict[str, Any]:
    return {
        "shape": lambda ctx: op_shape(op, ctx, _keras3_args(ctx)),
        "macs": lambda ctx, outputs: op_macs(op, ctx, outputs),
        "field": lambda ctx, fields: op_field(op, ctx, _keras3_args(ctx), fields),
        "activation": lambda ctx: op_activation(op),
    }


#: Keras 3 op classes that combine tensors, and how (the same modes as the merging layers).
KERAS3_MERGES: dict[str, Merge] = {
    "Add": Merge.SUM, "Subtract": Merge.SUM, "Multiply": Merge.PRODUCT, "Maximum": Merge.SELECT,
    "Minimum": Merge.SELECT, "Concatenate": Merge.CONCAT,
}

for _class_name, _op in KERAS3_OPS.items():
    _rule = _keras3_rule(_op)
    _merge = KERAS3_MERGES.get(_class_name)
    if _merge is None:
        register("ops." + _class_name, "ops", _rule.pop("shape"), traits=(Trait.OPERATION,), **_rule)
    else:
        register("ops." + _class_name, "ops", _rule.pop("shape"), traits=(Trait.OPERATION, Trait.MERGE),
                 merge=_merge, **_rule)
