"""Merging: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

Element-wise merges broadcast like Keras (a ``(None, 1, 1, C)`` gate times a
``(None, H, W, C)`` map gives ``(None, H, W, C)``) and count 0 MACs. The
receptive field is the union of the inputs' fields; a global input (a
squeeze-and-excitation gate) makes the output global.

>>> from app.analysis.rules.base import Ctx
>>> shape_elementwise(Ctx("m", "Multiply", {}, [(None, 7, 7, 32), (None, 1, 1, 32)]))
[(None, 7, 7, 32)]
"""

from __future__ import annotations

from collections.abc import Sequence

from app.analysis.graph import ReceptiveField, Shape
from app.analysis.rules.base import Ctx, product, register, union_fields
from app.analysis.traits import Merge, Trait

ELEMENTWISE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def broadcast(ctx: Ctx, shapes: Sequence[Shape | None]) -> Shape | None:
    """NumPy broadcasting of the non-batch dimensions (None = unknown).

    >>> broadcast(Ctx("a", "Add", {}, []), [(None, 4, 1), (None, 1, 5)])
    (None, 4, 5)
    """
    first = shapes[0] if shapes else None
    if first is not None:
        for shape in shapes:  # a loop, not all(<generator>): every merge asks
            if shape != first:
                break
        else:
            return tuple(first)  # identical shapes (a residual Add): nothing to broadcast
    known = [s for s in shapes if s is not None]
    if len(known) < len(shapes):
        return None
    if not known:
        return None
    rank = max(len(s) for s in known)
    out: list[int | None] = []
    for offset in range(rank, 0, -1):
        dims = [s[len(s) - offset] for s in known if len(s) >= offset]
        values = {d for d in dims if d is not None and d != 1}
        if len(values) > 1:
            raise ctx.fail(
                "inputs with incompatible shapes cannot be merged. Received: input_shapes="
                f"{[list(s) for s in known]}"
            )
        if values:
            out.append(values.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    batch_dims = [s[0] for s in known if len(s) == rank]
    if batch_dims and all(b is None for b in batch_dims):
        out[0] = None
    return tuple(out)


def shape_elementwise(ctx: Ctx) -> list[Shape | None]:
    if len(ctx.input_shapes) < 2 and ctx.class_name != "Add" and ctx.fmt != "op":
        raise ctx.fail(f"needs at least 2 inputs. Received: {len(ctx.input_shapes)} input(s)")
    if ctx.class_name == "Subtract" and len(ctx.input_shapes) != 2:
        raise ctx.fail(f"needs exactly 2 inputs. Received: {len(ctx.input_shapes)} input(s)")
    return [broadcast(ctx, ctx.input_shapes)]


def shape_concatenate(ctx: Ctx) -> list[Shape | None]:
    axis = ctx.config.get("axis", -1)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ctx.fail(f"axis must be an int. Received: axis={axis!r}")
    shapes = ctx.input_shapes
    if len(shapes) < 1 or any(s is None for s in shapes):
        return [None]
    known: list[Shape] = [s for s in shapes if s is not None]
    rank = len(known[0])
    if any(len(s) != rank for s in known):
        raise ctx.fail(f"inputs must have the same rank. Received: input_shapes={[list(s) for s in known]}")
    if not -rank <= axis < rank:
        raise ctx.fail(f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    first = known[0]
    head, tail = first[:axis], first[axis + 1:]
    total = 0
    for shape in known:  # the usual case: the other axes agree, every size on the axis known
        size = shape[axis]
        if size is None or shape[:axis] != head or shape[axis + 1:] != tail:
            break
        total += size
    else:  # what the general loop below returns then (without a list per axis)
        return [(*head, total, *tail)]
    out: list[int | None] = []
    for dim in range(rank):
        values = [s[dim] for s in known]
        if dim == axis:
            out.append(None if any(v is None for v in values) else sum(v for v in values if v is not None))
            continue
        concrete = {v for v in values if v is not None}
        if len(concrete) > 1:
            raise ctx.fail(
                "inputs must match except on the concatenation axis. Received: input_shapes="
                f"{[list(s) for s in known]}, axis={ctx.config.get('axis', -1)}"
            )
        out.append(concrete.pop() if concrete else None)
    return [tuple(out)]


def _dot_axes(ctx: Ctx, rank1: int, rank2: int) -> tuple[int, int]:
    axes = ctx.config.get("axes", -1)
    if isinstance(axes, int) and not isinstance(axes, bool):
        pair = [axes, axes]
    elif isinstance(axes, (list, tuple)) and len(axes) == 2 and all(isinstance(a, int) for a in axes):
        pair = list(axes)
    else:
        raise ctx.fail(f"axes must be an int or a pair of ints. Received: axes={axes!r}")
    return pair[0] % rank1, pair[1] % rank2


def shape_dot(ctx: Ctx) -> list[Shape | None]:
    if len(ctx.input_shapes) != 2:
        raise ctx.fail(f"needs exactly 2 inputs. Received: {len(ctx.input_shapes)} input(s)")
    first, second = ctx.input_shapes
    if first is None or second is None:
        return [None]
    a1, a2 = _dot_axes(ctx, len(first), len(second))
    if first[a1] is not None and second[a2] is not None and first[a1] != second[a2]:
        raise ctx.fail(
            f"dimension incompatibility {first[a1]} != {second[a2]}. Received: input_shapes="
            f"{[list(first), list(second)]}"
        )
    left = list(first)
    right = list(second)
    left.pop(a1)
    right.pop(a2)
    right.pop(0)
    out = left + right
    if len(out) == 1:
        out.append(1)
    return [tuple(out)]


def macs_dot(ctx: Ctx, outputs: list[Shape | None]) -> int | None:
    first, second = ctx.input_shapes
    out = outputs[0]
    if first is None or second is None or out is None:
        return None
    a1, _ = _dot_axes(ctx, len(first), len(second))
    produced = product(out[1:])
    contracted = first[a1]
    return None if produced is None or contracted is None else produced * contracted


def field_merge(ctx: Ctx, fields: list[ReceptiveField | None]) -> ReceptiveField | None:
    return union_fields(fields, ctx.input_names or [f"input {i}" for i in range(len(fields))])


MERGE_MODES: dict[str, Merge] = {
    "Add": Merge.SUM, "Subtract": Merge.SUM, "Average": Merge.AVERAGE, "Multiply": Merge.PRODUCT,
    "Maximum": Merge.SELECT, "Minimum": Merge.SELECT, "Concatenate": Merge.CONCAT, "Dot": Merge.DOT,
}

for _name in ELEMENTWISE:
    register(_name, "merging", shape_elementwise, field=field_merge, traits=(Trait.MERGE,),
             merge=MERGE_MODES[_name])
register("Concatenate", "merging", shape_concatenate, field=field_merge, traits=(Trait.MERGE,),
         merge=Merge.CONCAT)
register("Dot", "merging", shape_dot, macs=macs_dot, field=field_merge, traits=(Trait.MERGE,),
         merge=Merge.DOT)
