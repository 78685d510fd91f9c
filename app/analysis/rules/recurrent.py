"""Recurrent and sequence layers: SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed,
ConvLSTM1D/2D/3D.

Parameters (u units, F input features): SimpleRNN F*u + u*u + u; LSTM
4(F*u + u*u + u); GRU 3(F*u + u*u) + 6u with ``reset_after`` (3u without).
MACs per sample: T x gates x (F*u + u*u). A recurrent unit sees every earlier
step, so its receptive field is global.

>>> from app.analysis.rules.base import Ctx
>>> params_rnn(Ctx("l", "LSTM", {"units": 8}, [(None, 5, 3)]))
(384, 0)
"""

from __future__ import annotations

from typing import Any

from app.analysis.graph import ReceptiveField, Shape
from app.analysis.rules.base import (
    REGISTRY,
    Ctx,
    Params,
    UnsupportedVariant,
    activation_name,
    boolean,
    channels_last,
    choice,
    conv_output_length,
    field_global,
    int_tuple,
    positive_int,
    product,
    register,
    require_rank,
)
from app.analysis.traits import Trait

GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
CONV_LSTM = {"ConvLSTM1D": 1, "ConvLSTM2D": 2, "ConvLSTM3D": 3}


def _states(class_name: str) -> int:
    return 2 if "LSTM" in class_name else 1


def shape_rnn(ctx: Ctx) -> list[Shape | None]:
    units = positive_int(ctx, "units")
    shape = require_rank(ctx, ctx.shape, 3)
    batch = shape[0] if shape is not None else None
    steps = shape[1] if shape is not None else None
    if boolean(ctx, "return_sequences", False):
        out: Shape | None = (batch, steps, units)
    else:
        out = (batch, units)
    outputs: list[Shape | None] = [out]
    if boolean(ctx, "return_state", False):
        outputs.extend([(batch, units)] * _states(ctx.class_name))
    return outputs


def params_rnn(ctx: Ctx) -> Params:
    units = positive_int(ctx, "units")
    shape = require_rank(ctx, ctx.shape, 3)
    if shape is None or shape[2] is None:
        return None, None
    features = shape[2]
    gates = GATES[ctx.class_name]
    use_bias = boolean(ctx, "use_bias", True)
    weights = gates * (features * units + units * units)
    if use_bias:
        if ctx.class_name == "GRU" and boolean(ctx, "reset_after", True):
            weights += 2 * gates * units
        else:
            weights += gates * units
    return weights, 0


def macs_rnn(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    units = positive_int(ctx, "units")
    shape = ctx.shape
    if shape is None or shape[1] is None or shape[2] is None:
        return None
    return shape[1] * GATES[ctx.class_name] * (shape[2] * units + units * units)


def activation_rnn(ctx: Ctx) -> str | None:
    return activation_name(ctx.config.get("activation", "tanh"))


def fans_rnn(ctx: Ctx) -> tuple[int | None, int | None]:
    units = positive_int(ctx, "units")
    shape = ctx.shape
    return (None if shape is None else shape[-1]), GATES[ctx.class_name] * units


# -- wrappers ------------------------------------------------------------------------------------


def _inner(ctx: Ctx, key: str = "layer") -> tuple[Any, Ctx]:
    layer = ctx.config.get(key)
    if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
        raise ctx.fail(f"{key} must be a serialized layer. Received: {key}={layer!r}"[:300])
    rule = REGISTRY.get(layer["class_name"])
    if rule is None:
        raise UnsupportedVariant(f"wrapped layer class '{layer['class_name']}'")
    config = layer.get("config") or {}
    if not isinstance(config, dict):
        raise ctx.fail(f"{key}'s config must be an object")
    inner = Ctx(
        str(config.get("name", ctx.name)),
        layer["class_name"],
        config,
        list(ctx.input_shapes),
        ctx.constants,
        ctx.tensor_kwargs,
        ctx.fmt,
    )
    return rule, inner


def _merge_mode(ctx: Ctx) -> str | None:
    mode = ctx.config.get("merge_mode", "concat")
    if mode is None:
        return None
    return choice(ctx, "merge_mode", ("concat", "sum", "mul", "ave"), "concat")


def shape_bidirectional(ctx: Ctx) -> list[Shape | None]:
    rule, inner = _inner(ctx)
    outputs = rule.shape(inner)
    mode = _merge_mode(ctx)
    main, states = outputs[0], outputs[1:]
    if mode is None:
        return [main, main, *states, *states]
    if mode == "concat" and main is not None:
        last = main[-1]
        main = (*main[:-1], None if last is None else 2 * last)
    return [main, *states, *states]


def params_bidirectional(ctx: Ctx) -> Params:
    rule, inner = _inner(ctx)
    forward = rule.params(inner)
    if isinstance(ctx.config.get("backward_layer"), dict):
        backward_rule, backward = _inner(ctx, "backward_layer")
        other = backward_rule.params(backward)
    else:
        other = forward
    if forward[0] is None or other[0] is None:
        return None, None
    return forward[0] + other[0], (forward[1] or 0) + (other[1] or 0)


def macs_bidirectional(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    rule, inner = _inner(ctx)
    single = rule.macs(inner, rule.shape(inner))
    return None if single is None else 2 * single


def activation_wrapped(ctx: Ctx) -> str | None:
    rule, inner = _inner(ctx)
    return rule.activation(inner)


def _per_step(ctx: Ctx) -> Ctx:
    shape = ctx.shape
    step_shape = None if shape is None else (shape[0], *shape[2:])
    rule, inner = _inner(ctx)
    inner.input_shapes = [step_shape]
    return inner


def shape_time_distributed(ctx: Ctx) -> list[Shape | None]:
    require_rank(ctx, ctx.shape, range(3, 8))
    rule, _ = _inner(ctx)
    inner = _per_step(ctx)
    shape = ctx.shape
    outputs = rule.shape(inner)
    steps = shape[1] if shape is not None else None
    batch = shape[0] if shape is not None else None
    return [None if out is None else (batch, steps, *out[1:]) for out in outputs]


def params_time_distributed(ctx: Ctx) -> Params:
    rule, _ = _inner(ctx)
    return rule.params(_per_step(ctx))


def macs_time_distributed(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    rule, _ = _inner(ctx)
    inner = _per_step(ctx)
    single = rule.macs(inner, rule.shape(inner))
    steps = ctx.shape[1] if ctx.shape is not None else None
    return None if single is None or steps is None else steps * single


def field_time_distributed(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    """The wrapped layer's field per frame; the time axis is untouched (size 1 per step)."""
    rule, _ = _inner(ctx)
    inner = _per_step(ctx)
    field = fields[0] if fields else None
    if field is None or field.axes is None:
        return rule.field(inner, [field])
    time_axis, frame_axes = field.axes[0], field.axes[1:]
    frame = ReceptiveField(frame_axes, is_global=field.is_global, misaligned=field.misaligned) if frame_axes else None
    out = rule.field(inner, [frame])
    if out is None or out.axes is None:
        return out
    return ReceptiveField((time_axis, *out.axes), is_global=out.is_global, misaligned=out.misaligned)


def fans_wrapped(ctx: Ctx) -> tuple[int | None, int | None]:
    rule, _ = _inner(ctx)
    inner = _per_step(ctx) if ctx.class_name == "TimeDistributed" else _inner(ctx)[1]
    return rule.fans(inner) if rule.fans is not None else (None, None)


# -- ConvLSTM ------------------------------------------------------------------------------------


def _conv_lstm_geometry(ctx: Ctx) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...], str, int]:
    rank = CONV_LSTM[ctx.class_name]
    filters = positive_int(ctx, "filters")
    kernel = int_tuple(ctx, "kernel_size", rank)
    strides = int_tuple(ctx, "strides", rank, 1)
    dilation = int_tuple(ctx, "dilation_rate", rank, 1)
    padding = choice(ctx, "padding", ("valid", "same"), "valid")
    return filters, kernel, strides, dilation, padding, rank


def shape_conv_lstm(ctx: Ctx) -> list[Shape | None]:
    filters, kernel, strides, dilation, padding, rank = _conv_lstm_geometry(ctx)
    shape = require_rank(ctx, ctx.shape, rank + 3)
    if shape is None:
        return [None]
    last = channels_last(ctx)
    dims = shape[2:-1] if last else shape[3:]
    out_dims = tuple(
        conv_output_length(n, k, padding, s, d) for n, k, s, d in zip(dims, kernel, strides, dilation, strict=True)
    )
    frame = (*out_dims, filters) if last else (filters, *out_dims)
    if boolean(ctx, "return_sequences", False):
        out: Shape = (shape[0], shape[1], *frame)
    else:
        out = (shape[0], *frame)
    outputs: list[Shape | None] = [out]
    if boolean(ctx, "return_state", False):
        outputs.extend([(shape[0], *frame)] * 2)
    return outputs


def _conv_lstm_channels(ctx: Ctx) -> int | None:
    shape = ctx.shape
    if shape is None:
        return None
    return shape[-1] if channels_last(ctx) else shape[2]


def params_conv_lstm(ctx: Ctx) -> Params:
    filters, kernel, _, _, _, _ = _conv_lstm_geometry(ctx)
    channels = _conv_lstm_channels(ctx)
    if channels is None:
        return None, None
    window = product(kernel) or 0
    bias = 4 * filters if boolean(ctx, "use_bias", True) else 0
    return window * channels * 4 * filters + window * filters * 4 * filters + bias, 0


def macs_conv_lstm(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    filters, kernel, strides, dilation, padding, rank = _conv_lstm_geometry(ctx)
    channels = _conv_lstm_channels(ctx)
    shape = ctx.shape
    if channels is None or shape is None or shape[1] is None:
        return None
    last = channels_last(ctx)
    dims = shape[2:-1] if last else shape[3:]
    out_dims = [
        conv_output_length(n, k, padding, s, d) for n, k, s, d in zip(dims, kernel, strides, dilation, strict=True)
    ]
    positions = product(out_dims)
    if positions is None:
        return None
    return shape[1] * positions * (product(kernel) or 0) * 4 * filters * (channels + filters)


def fans_conv_lstm(ctx: Ctx) -> tuple[int | None, int | None]:
    filters, kernel, _, _, _, _ = _conv_lstm_geometry(ctx)
    channels = _conv_lstm_channels(ctx)
    window = product(kernel) or 0
    return (None if channels is None else window * channels), window * 4 * filters


for _name in GATES:
    register(
        _name,
        "recurrent",
        shape_rnn,
        params=params_rnn,
        macs=macs_rnn,
        field=field_global,
        activation=activation_rnn,
        initializer_key="kernel_initializer",
        fans=fans_rnn,
        traits=(Trait.RECURRENT,),
    )
for _name in CONV_LSTM:
    register(
        _name,
        "recurrent",
        shape_conv_lstm,
        params=params_conv_lstm,
        macs=macs_conv_lstm,
        field=field_global,
        activation=activation_rnn,
        initializer_key="kernel_initializer",
        fans=fans_conv_lstm,
        traits=(Trait.RECURRENT,),
    )
register(
    "Bidirectional",
    "recurrent",
    shape_bidirectional,
    params=params_bidirectional,
    macs=macs_bidirectional,
    field=field_global,
    activation=activation_wrapped,
    fans=fans_wrapped,
    traits=(Trait.RECURRENT, Trait.WRAPPER),
)
register(
    "TimeDistributed",
    "recurrent",
    shape_time_distributed,
    params=params_time_distributed,
    macs=macs_time_distributed,
    field=field_time_distributed,
    activation=activation_wrapped,
    fans=fans_wrapped,
    traits=(Trait.WRAPPER,),
)
