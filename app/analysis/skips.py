"""Skip connections, defined once for every section of the report.

A *skip connection* is a merge that lets a feature map (and its gradient) go around layers:

- a **residual** merge adds or averages two or more different tensors (ResNet's ``Add`` of the
  shortcut and the branch; the sum is what shortens the gradient's paths), or scales one and
  adds it to the other (Inception-ResNet's ``x + scale * branch``: a scaling layer called on
  two tensors);
- a **dense** merge concatenates a feature map with maps computed from it (DenseNet's
  ``concatenate([x, conv(x)])``, Huang et al. 2017): earlier features pass forward unchanged.

A concatenation of parallel branches that all start at the same map (an Inception module)
is neither: no input is computed from another, so nothing goes around anything.

The findings (``residual_connections``, ``dense_connections``), the predicted gradient flow's
``skip_connections`` and the graph drawing's caption all count :func:`find_skips`.

Example::

    >>> from app.analysis import analyze
    >>> report = analyze(resnet50_config)                        # doctest: +SKIP
    >>> report["gradient_flow"]["predicted"]["skip_connections"]  # doctest: +SKIP
    16
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.analysis.traits import Merge, Trait

if TYPE_CHECKING:  # pragma: no cover
    from app.analysis.graph import AnalysisResult, LayerResult

RESIDUAL = frozenset({Merge.SUM, Merge.AVERAGE})
"""Merges that add (or average) their inputs: a residual connection."""
ANCESTOR_WALK_LIMIT = 2048
"""Layers looked at when asking whether one input of a concatenation is computed from another
(DenseNet's is a few layers back; a deeper search only makes an Inception model slower)."""


@dataclass(frozen=True)
class Skips:
    """The merges that create skip connections, in graph order."""

    residual: list[str]
    dense: list[str]

    @property
    def count(self) -> int:
        """Skip connections in the network (residual and dense merges)."""
        return len(self.residual) + len(self.dense)

    @property
    def merges(self) -> list[str]:
        return [*self.residual, *self.dense]


def find_skips(result: AnalysisResult) -> Skips:
    """The residual and dense merges of an analysed graph (see the module's definition); found
    once per graph (the gradient flow and the findings both ask)."""
    cached = result._skips
    if cached is not None and cached[0] == len(result.layers) and cached[1] == len(result.edges):
        return cached[2]  # type: ignore[no-any-return]
    skips = _find(result)
    result._skips = (len(result.layers), len(result.edges), skips)
    return skips


def _find(result: AnalysisResult) -> Skips:
    by_name = result.by_name()
    residual: list[str] = []
    dense: list[str] = []
    scale = Trait.SCALE
    order: _Order | None = None  # found at the first concatenation that needs it
    for layer in result.layers:
        inbound = layer.inbound
        if len(inbound) < 2:  # most layers: one input, no list of distinct ones to build
            continue
        if len(inbound) == 2 and inbound[0] != inbound[1]:
            inputs = inbound  # two distinct inputs already (read, never changed)
        else:
            inputs = list(dict.fromkeys(inbound))
            if len(inputs) < 2:
                continue
        if layer.merge in RESIDUAL or scale in layer.traits:
            residual.append(layer.name)
        elif layer.merge == Merge.CONCAT:
            if order is None:
                order = _order(result)
            if _passes_earlier_map(by_name, inputs, order):
                dense.append(layer.name)
    return Skips(residual=residual, dense=dense)


@dataclass(frozen=True)
class _Order:
    """``places``: layer name -> place in ``result.layers``, where every layer's inputs are
    layers placed before it (then all of a layer's ancestors lie before it), else empty (a
    shared layer called again on a later layer's output, an input naming no layer).
    ``unlimited``: the graph has too few layers for a walk to reach
    :data:`ANCESTOR_WALK_LIMIT`."""

    places: dict[str, int]
    unlimited: bool


def _order(result: AnalysisResult) -> _Order:
    places = {layer.name: place for place, layer in enumerate(result.layers)}
    found = places.get
    for place, layer in enumerate(result.layers):
        for name in layer.inbound:
            if found(name, place) >= place:
                return _Order({}, False)
    return _Order(places, len(places) <= ANCESTOR_WALK_LIMIT)


def _passes_earlier_map(by_name: dict[str, LayerResult], inputs: list[str], order: _Order
                        ) -> bool:
    """Whether some input of the concatenation is an ancestor of another of its inputs.

    The answer is that of a depth-first walk back from each input over at most
    :data:`ANCESTOR_WALK_LIMIT` layers. That walk costs the limit for every input that reaches
    no other (each branch of an Inception module), so where ``order`` has places the inputs
    that reach another are found first by a walk that stops below the earliest input (no
    ancestor of an input lies after it): a few layers per input. Only those are walked as
    before, to learn whether the limit cuts the walk off first (it cannot in a graph of fewer
    layers than the limit).
    """
    starts = inputs
    targets = set(inputs)
    if order.places:  # (it holds every input then)
        earliest = min(order.places[name] for name in inputs)
        starts = [start for start in inputs
                  if _reaches_another(by_name, start, targets, earliest, order.places)]
        if order.unlimited:
            return bool(starts)
    for start in starts:
        pending = list(by_name[start].inbound) if start in by_name else []
        seen = set(pending)
        while pending and len(seen) <= ANCESTOR_WALK_LIMIT:
            name = pending.pop()
            if name in targets and name != start:
                return True
            layer = by_name.get(name)
            for parent in layer.inbound if layer is not None else ():
                if parent not in seen:
                    seen.add(parent)
                    pending.append(parent)
    return False


def _reaches_another(by_name: dict[str, LayerResult], start: str, targets: set[str],
                     earliest: int, places: dict[str, int]) -> bool:
    """Whether another of the concatenation's inputs (``targets``) is an ancestor of
    ``start``, with no limit; ``places``: :attr:`_Order.places` (not empty: it holds every
    layer's inputs). Layers placed before the earliest input (``earliest``) are not walked:
    their ancestors lie before them too."""
    pending = [start]
    seen = {start}
    while pending:
        layer = by_name.get(pending.pop())
        for parent in layer.inbound if layer is not None else ():
            if parent not in seen and places[parent] >= earliest:
                if parent in targets:
                    return True
                seen.add(parent)
                pending.append(parent)
    return False
