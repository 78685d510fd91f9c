"""The effective receptive field, measured (Luo et al., "Understanding the Effective Receptive
Field in Deep Convolutional Neural Networks", NeurIPS 2016).

The theoretical field of a unit (``report.layers[].receptive_field``) is every input pixel
that *can* change it. How much each pixel *does* is the gradient of the unit with respect to
the input: here the centre unit of each chosen layer (its output summed over channels), the
absolute input gradient summed over input channels and averaged over seeded standard-normal
inputs, with the model's weights (uploaded ones when the file had them, else Keras's
initialisation). Most of that influence sits in a small, roughly Gaussian core of the
theoretical field; :func:`summarise_influence` says how small.

The theoretical box of the unit comes with the job (the API computes it from the stored
report, the one place fields are computed); this module only measures.

Example::

    >>> import numpy as np
    >>> influence = np.zeros((9, 9)); influence[4, 4] = 1.0
    >>> row = summarise_influence(influence, box=[[2, 6], [2, 6]])
    >>> row["centre"], row["size95"], row["fraction"], row["mass_inside_field"]
    ([4.0, 4.0], [1, 1], [0.2, 0.2], 1.0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from app.errors import InvalidArchitecture

if TYPE_CHECKING:  # pragma: no cover
    import keras

#: Share of the influence the reported sizes hold (Luo et al. read the field at ~95%).
MASS = 0.95
#: The stored heat map has at most this many cells per axis (block means of input pixels).
HEATMAP_CELLS = 64
METHOD = (
    "mean over seeded standard-normal inputs of |d(centre unit, summed over channels) / d(input)|, "
    "summed over input channels (Luo et al., NeurIPS 2016), inference mode"
)


# -- the numbers -------------------------------------------------------------------------


def _central_interval(marginal: np.ndarray, mass: float) -> tuple[int, int]:
    """First and last index of the central interval holding ``mass`` of a 1-D distribution
    (an equal share left out on each side)."""
    cdf = np.cumsum(marginal)
    total = float(cdf[-1])
    tail = (1.0 - mass) / 2.0 * total
    lower = int(np.searchsorted(cdf, tail, side="right"))
    upper = int(np.searchsorted(cdf, total - tail, side="left"))
    return min(lower, upper), max(lower, upper)


def _heatmap(influence: np.ndarray, cells: int) -> dict[str, Any]:
    """Block means of the influence, scaled to a maximum of 1, at most ``cells`` per axis."""
    cell = [max(1, math.ceil(size / cells)) for size in influence.shape]
    padded_shape = [math.ceil(size / c) * c for size, c in zip(influence.shape, cell, strict=True)]
    padded = np.zeros(padded_shape, dtype=np.float64)
    padded[tuple(slice(0, size) for size in influence.shape)] = influence
    blocks = padded.reshape(padded_shape[0] // cell[0], cell[0], padded_shape[1] // cell[1], cell[1])
    means = blocks.mean(axis=(1, 3))
    peak = float(means.max())
    scaled = means / peak if peak > 0 else means
    return {"cell": cell, "values": [[round(float(v), 4) for v in row] for row in scaled]}


def summarise_influence(
    influence: np.ndarray, *, box: Sequence[Sequence[float]], mass: float = MASS,
    heatmap_cells: int = HEATMAP_CELLS,
) -> dict[str, Any]:
    """What an influence map (input pixels, 2-D, non-negative) says about one unit.

    ``box`` is the unit's theoretical field per axis as ``[first, last]`` input pixel (it may
    reach past the input; the part inside is what the fractions compare with). Returns the
    centre of mass, the central size holding ``mass`` of the influence per axis and its
    fraction of the theoretical field, the Euclidean radius around the centre holding ``mass``,
    the share of the field's pixels that hold ``mass`` (largest first), the share of the
    influence inside the box (1.0: a gradient outside the theoretical field is impossible) and
    a coarse heat map.
    """
    grid = np.asarray(influence, dtype=np.float64)
    if grid.ndim != 2:
        raise ValueError(f"Expected a 2-D influence map. Received: shape {grid.shape}")
    visible = [
        (max(0, math.ceil(first)), min(size - 1, math.floor(last)))
        for (first, last), size in zip(box, grid.shape, strict=True)
    ]
    visible_size = [max(0, last - first + 1) for first, last in visible]
    field_centre = [round((float(first) + float(last)) / 2.0, 3) for first, last in box]
    total = float(grid.sum())
    base: dict[str, Any] = {
        "field_box": [[_number(first), _number(last)] for first, last in box],
        "field_centre": field_centre,
        "visible_field_size": visible_size,
        "field_clipped": any(
            float(first) < 0 or float(last) > size - 1
            for (first, last), size in zip(box, grid.shape, strict=True)
        ),
        "total_influence": total,
        "heatmap": _heatmap(grid, heatmap_cells),
    }
    if not total > 0 or not math.isfinite(total):
        return {**base, "centre": None, "centre_offset": None, "size95": None, "fraction": None,
                "radius95": None, "area95": None, "area_fraction": None, "mass_inside_field": None}
    share = grid / total
    coords = np.indices(grid.shape, dtype=np.float64)
    centre = [float((share * coords[axis]).sum()) for axis in range(2)]
    sizes = []
    for axis in range(2):
        marginal = share.sum(axis=1 - axis)
        first, last = _central_interval(marginal, mass)
        sizes.append(last - first + 1)
    distance = np.sqrt(sum((coords[axis] - centre[axis]) ** 2 for axis in range(2)))
    order = np.argsort(distance, axis=None, kind="stable")
    by_distance = np.cumsum(share.ravel()[order])
    radius = float(distance.ravel()[order][min(int(np.searchsorted(by_distance, mass)), order.size - 1)])
    by_weight = np.cumsum(np.sort(share, axis=None)[::-1])
    area = int(np.searchsorted(by_weight, mass)) + 1
    inside = share[visible[0][0]:visible[0][1] + 1, visible[1][0]:visible[1][1] + 1].sum()
    field_area = visible_size[0] * visible_size[1]
    return {
        **base,
        "centre": [round(value, 3) for value in centre],
        "centre_offset": [round(value - middle, 3) for value, middle in zip(centre, field_centre, strict=True)],
        "size95": sizes,
        "fraction": [round(size / whole, 4) if whole else None for size, whole in zip(sizes, visible_size,
                                                                                      strict=True)],
        "radius95": round(radius, 3),
        "area95": area,
        "area_fraction": round(area / field_area, 4) if field_area else None,
        "mass_inside_field": round(float(inside), 6),
    }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


# -- the measurement ---------------------------------------------------------------------


def _spatial_layer(model: keras.Model, name: str) -> Any:
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise InvalidArchitecture(f"The model has no layer {name!r}.") from None
    try:
        output = layer.output
    except (AttributeError, ValueError, RuntimeError):
        raise InvalidArchitecture(
            f"Layer {name!r} has no single output (it is called more than once), so it has no one "
            "centre unit to measure."
        ) from None
    if isinstance(output, list | tuple) or len(output.shape) != 4:
        raise InvalidArchitecture(
            f"The effective field is measured on 2-D feature maps. Received: layer {name!r} with output "
            f"shape {getattr(output, 'shape', None)}"
        )
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        raise InvalidArchitecture(f"Layer {name!r} is channels_first; the measurement reads channels_last maps.")
    return output


def measure(
    model: keras.Model,
    layers: Sequence[Mapping[str, Any]],
    *,
    samples: int = 16,
    batch_size: int = 8,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Measure the effective field of the centre unit of each of ``layers``.

    Each entry of ``layers`` is ``{"name", "unit": [row, col], "box": [[first, last], ...]}``
    (the unit's theoretical field from the report). One forward pass per batch, one backward
    pass per layer.
    """
    import keras
    import tensorflow as tf

    from app.worker.runtime import init_tensorflow

    device = init_tensorflow(seed=seed)
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise InvalidArchitecture(
            "The effective field is measured on models with one image input (batch, height, width, "
            f"channels). Received: inputs {[tuple(t.shape) for t in model.inputs]}"
        )
    declared = list(model.inputs[0].shape[1:])
    if any(d is None for d in declared):
        raise InvalidArchitecture(
            f"The input size must be known to measure the effective field. Received: {declared}"
        )
    input_shape = [int(d) for d in declared]
    outputs = [_spatial_layer(model, str(entry["name"])) for entry in layers]
    units = [tuple(int(i) for i in entry["unit"]) for entry in layers]
    for entry, output, unit in zip(layers, outputs, units, strict=True):
        spatial = tuple(int(d) for d in output.shape[1:3])
        if not all(0 <= index < size for index, size in zip(unit, spatial, strict=True)):
            raise InvalidArchitecture(
                f"Unit {list(unit)} is outside layer {entry['name']!r}'s output of {list(spatial)} units."
            )
    probe = keras.Model(model.inputs, outputs)
    count = len(outputs)

    @tf.function(reduce_retracing=True)
    def step(x: Any) -> list[Any]:
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            produced = probe(x, training=False)
            produced = list(produced) if isinstance(produced, list | tuple) else [produced]
            targets = [
                tf.reduce_sum(tf.cast(out[:, row, col, :], tf.float32))
                for out, (row, col) in zip(produced, units, strict=True)
            ]
        maps = []
        for target in targets:
            grad = tape.gradient(target, x)
            maps.append(tf.reduce_sum(tf.abs(grad), axis=[0, 3]))
        del tape
        return maps

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    totals = [np.zeros(input_shape[:2], dtype=np.float64) for _ in range(count)]
    done = 0
    while done < samples:
        size = min(batch_size, samples - done)
        batch = tf.constant(rng.standard_normal((size, *input_shape)).astype("float32"))
        for index, grad_map in enumerate(step(batch)):
            totals[index] += np.asarray(grad_map.numpy(), dtype=np.float64)
        done += size
        if progress is not None:
            progress(done / samples)
    rows = []
    for entry, output, unit, total in zip(layers, outputs, units, totals, strict=True):
        influence = total / samples
        finite = bool(np.all(np.isfinite(influence)))
        row = {
            "layer": str(entry["name"]),
            "output_size": [int(d) for d in output.shape[1:3]],
            "unit": list(unit),
            **summarise_influence(np.where(np.isfinite(influence), influence, 0.0), box=entry["box"]),
        }
        if not finite:
            row["note"] = "some input gradients were not finite (overflow); they count as zero here"
        rows.append(row)
    return {
        "status": "measured",
        "method": METHOD,
        "mass": MASS,
        "samples": int(samples),
        "seed": int(seed),
        "input_size": input_shape[:2],
        "layers": rows,
        "device": device["device"],
        "elapsed_s": round(time.perf_counter() - started, 3),
    }
