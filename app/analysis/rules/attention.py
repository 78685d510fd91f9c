"""Attention: MultiHeadAttention, Attention, AdditiveAttention.

MultiHeadAttention (H heads, key_dim d_k, value_dim d_v) projects query,
key and value, scores every query position against every key position and
projects back. Every output position sees every input position: the
receptive field is global.

>>> from app.analysis.rules.base import Ctx
>>> ctx = Ctx("mha", "MultiHeadAttention", {"num_heads": 2, "key_dim": 4}, [(None, 10, 8), (None, 10, 8)])
>>> shape_mha(ctx), params_mha(ctx)
([(None, 10, 8)], (288, 0))
"""

from __future__ import annotations

from app.analysis.graph import Shape
from app.analysis.rules.base import (
    Ctx,
    Params,
    boolean,
    field_global,
    positive_int,
    product,
    register,
)
from app.analysis.traits import Trait


def _qkv(ctx: Ctx) -> tuple[Shape | None, Shape | None, Shape | None]:
    shapes = ctx.input_shapes
    if not shapes:
        raise ctx.fail("needs a query and a value. Received: no inputs")
    query = shapes[0]
    value_index = ctx.tensor_kwargs.get("value", 1)
    key_index = ctx.tensor_kwargs.get("key", value_index)
    if value_index >= len(shapes):
        raise ctx.fail(f"needs a query and a value. Received: {len(shapes)} input(s)")
    value = shapes[value_index]
    key = shapes[key_index] if key_index < len(shapes) else value
    return query, key, value


def _dims(ctx: Ctx) -> tuple[int, int, int, int | None]:
    heads = positive_int(ctx, "num_heads")
    key_dim = positive_int(ctx, "key_dim")
    value_dim = positive_int(ctx, "value_dim", key_dim)
    raw = ctx.config.get("output_shape")
    if raw is None:
        out_dim = None
    elif isinstance(raw, int):
        out_dim = raw
    elif isinstance(raw, (list, tuple)) and len(raw) == 1 and isinstance(raw[0], int):
        out_dim = raw[0]
    else:
        raise ctx.fail(f"output_shape must be an int. Received: output_shape={raw!r}")
    return heads, key_dim, value_dim, out_dim


def shape_mha(ctx: Ctx) -> list[Shape | None]:
    heads, _, _, out_dim = _dims(ctx)
    query, key, value = _qkv(ctx)
    if query is None:
        return [None]
    out = (*query[:-1], out_dim if out_dim is not None else query[-1])
    outputs: list[Shape | None] = [out]
    if ctx.constants.get("return_attention_scores"):
        steps_q = product(query[1:-1])
        steps_k = None if key is None else product(key[1:-1])
        outputs.append((query[0], heads, steps_q, steps_k))
    return outputs


def params_mha(ctx: Ctx) -> Params:
    heads, key_dim, value_dim, out_dim = _dims(ctx)
    query, key, value = _qkv(ctx)
    if query is None or key is None or value is None or None in (query[-1], key[-1], value[-1]):
        return None, None
    q_dim, k_dim, v_dim = query[-1], key[-1], value[-1]
    out = out_dim if out_dim is not None else q_dim
    bias = boolean(ctx, "use_bias", True)
    total = q_dim * heads * key_dim + k_dim * heads * key_dim + v_dim * heads * value_dim  # type: ignore[operator]
    total += heads * value_dim * out  # type: ignore[operator]
    if bias:
        total += 2 * heads * key_dim + heads * value_dim + out  # type: ignore[operator]
    return total, 0


def macs_mha(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    heads, key_dim, value_dim, out_dim = _dims(ctx)
    query, key, value = _qkv(ctx)
    if query is None or key is None or value is None:
        return None
    steps_q, steps_k = product(query[1:-1]), product(key[1:-1])
    if steps_q is None or steps_k is None or None in (query[-1], key[-1], value[-1]):
        return None
    q_dim, k_dim, v_dim = query[-1], key[-1], value[-1]
    out = out_dim if out_dim is not None else q_dim
    projections = steps_q * q_dim * heads * key_dim + steps_k * (k_dim * heads * key_dim + v_dim * heads * value_dim)  # type: ignore[operator]
    attention = heads * steps_q * steps_k * (key_dim + value_dim)
    return projections + attention + steps_q * heads * value_dim * out  # type: ignore[operator]


def shape_attention(ctx: Ctx) -> list[Shape | None]:
    shapes = ctx.input_shapes
    if len(shapes) < 2:
        raise ctx.fail(f"needs [query, value] (and optionally key). Received: {len(shapes)} input(s)")
    query, value = shapes[0], shapes[1]
    if query is None or value is None:
        return [None]
    return [(*query[:-1], value[-1])]


def params_attention(ctx: Ctx) -> Params:
    count = 0
    if ctx.class_name == "AdditiveAttention":
        if boolean(ctx, "use_scale", True):
            query = ctx.shape
            if query is None or query[-1] is None:
                return None, None
            count += query[-1]
        return count, 0
    if boolean(ctx, "use_scale", False):
        count += 1
    if ctx.config.get("score_mode") == "concat":
        count += 1
    return count, 0


def macs_attention(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    query, value = ctx.input_shapes[0], ctx.input_shapes[1]
    if query is None or value is None:
        return None
    steps_q, steps_v = product(query[1:-1]), product(value[1:-1])
    if steps_q is None or steps_v is None or query[-1] is None or value[-1] is None:
        return None
    return steps_q * steps_v * (query[-1] + value[-1])


register("MultiHeadAttention", "attention", shape_mha, traits=(Trait.ATTENTION,), params=params_mha,
         macs=macs_mha,
         field=field_global, initializer_key="kernel_initializer")
register(["Attention", "AdditiveAttention"], "attention", shape_attention, traits=(Trait.ATTENTION,),
         params=params_attention,
         macs=macs_attention, field=field_global)
