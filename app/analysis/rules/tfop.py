"""tf.keras 2.x ``TFOpLambda`` layers: TensorFlow functions recorded by name.

``function`` (``"math.multiply"``, ``"__operators__.add"``, ``"nn.relu"``, ...)
is mapped to a canonical op of :mod:`app.analysis.rules.ops`; the constant
arguments are in the call's kwargs (``{"y": 3.0}``). An unknown function
makes the layer unsupported (reported, never counted as zero).

>>> canonical_function("__operators__.add")
'add'
"""

from __future__ import annotations

from typing import Any

from app.analysis.graph import ReceptiveField, Shape
from app.analysis.rules.base import Ctx, UnsupportedVariant, register
from app.analysis.rules.ops import BINARY, REDUCTIONS, UNARY, op_activation, op_field, op_macs, op_shape
from app.analysis.traits import Trait

ALIASES = {
    "truediv": "divide", "divide": "divide", "div": "divide", "realdiv": "divide",
    "sub": "subtract", "subtract": "subtract", "mul": "multiply", "multiply": "multiply",
    "add": "add", "add_v2": "add", "pow": "power", "floordiv": "floor_divide",
    "matmul": "matmul", "concat": "concat", "reshape": "reshape", "transpose": "transpose",
    "expand_dims": "expand_dims", "squeeze": "squeeze", "neg": "negative",
}


def canonical_function(function: Any) -> str:
    if not isinstance(function, str) or not function:
        raise UnsupportedVariant(f"function {function!r}")
    leaf = function.split(".")[-1]
    leaf = ALIASES.get(leaf, leaf)
    if leaf in UNARY or leaf in BINARY or leaf in REDUCTIONS or leaf in (
        "reshape", "transpose", "expand_dims", "squeeze", "concat", "matmul"
    ):
        return leaf
    raise UnsupportedVariant(f"TensorFlow function '{function}'")


def _args(ctx: Ctx) -> dict[str, Any]:
    args = dict(ctx.constants)
    if "perm" in args and "axes" not in args:
        args["axes"] = args["perm"]
    return args


def shape_tfop(ctx: Ctx) -> list[Shape | None]:
    return op_shape(canonical_function(ctx.config.get("function")), ctx, _args(ctx))


def macs_tfop(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    return op_macs(canonical_function(ctx.config.get("function")), ctx, outputs)


def field_tfop(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    return op_field(canonical_function(ctx.config.get("function")), ctx, _args(ctx), fields)


def activation_tfop(ctx: Ctx) -> str | None:
    return op_activation(canonical_function(ctx.config.get("function")))


register("TFOpLambda", "tfop", shape_tfop, macs=macs_tfop, field=field_tfop,
         activation=activation_tfop, traits=(Trait.OPERATION,))
