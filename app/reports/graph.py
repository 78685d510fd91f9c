"""A drawing of the architecture graph as SVG, showing branches and skip connections.

Pure Python, no Graphviz: a layered (Sugiyama-style) layout.

1. Nodes are the report's top-level layers (a nested model is one node);
   edges come from each layer's ``inbound``. Large graphs (ResNet50 has 177
   layers) are made readable by collapsing chains: a normalization,
   activation, dropout or padding layer that is the only consumer of its
   producer joins the producer's box ("conv1_conv: ZeroPadding2D > Conv2D >
   BatchNormalization > Activation").
2. Layers: longest path from the inputs; an edge spanning several layers gets
   invisible waypoints, one per layer it crosses, so it is routed around boxes.
3. Order within a layer: barycentre sweeps (down and up) to reduce crossings.
4. Horizontal position: weighted isotonic regression towards the mean of the
   neighbours' positions, which keeps the main path straight and pushes
   waypoints of long edges to the side.
5. Edges are drawn as smooth cubic curves; an edge whose target can also be
   reached from its source through other layers is a *skip connection* and is
   drawn in orange, dashed.

Example::

    >>> drawing = draw_graph(report)                       # the seed's Example 3
    >>> [edge.source for edge in drawing.edges if edge.skip]
    ['conv2d_4', 'add']
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from app.analysis.rules import traits_of
from app.analysis.traits import Trait
from app.reports.view import Report, first_output_shape, format_count, format_shape

_ABSORBABLE_TRAITS = frozenset({Trait.NORMALIZATION, Trait.ACTIVATION, Trait.REGULARIZATION})


def is_absorbable(class_name: Any) -> bool:
    """Layers that join their producer's box when a graph is collapsed (normalization,
    activation, dropout; not input augmentation).

    >>> is_absorbable("BatchNormalization"), is_absorbable("RandomFlip"), is_absorbable("Conv2D")
    (True, False, False)
    """
    traits = traits_of(str(class_name))
    return bool(traits & _ABSORBABLE_TRAITS) and Trait.PREPROCESSING not in traits


def is_leading(class_name: Any) -> bool:
    """Layers whose single consumer joins their box (padding before a convolution)."""
    return Trait.PADDING in traits_of(str(class_name))

COLLAPSE_ABOVE = 40
"""``collapse="auto"`` collapses chains when the graph has more nodes than this."""

NODE_WIDTH = 210
NODE_HEIGHT = 50
COLUMN_GAP = 36
ROW_GAP = 34
MARGIN = 24
MAX_LABEL_CHARS = 25
"""Characters of a box's name that fit its width at 12 px bold (the tooltip has the full name)."""

FAMILY_COLOURS: dict[str, tuple[str, str]] = {
    # family: (fill, stroke)
    "input": ("#f1f5f9", "#475569"),
    "conv": ("#dbeafe", "#2563eb"),
    "pool": ("#ccfbf1", "#0d9488"),
    "merge": ("#ede9fe", "#7c3aed"),
    "dense": ("#dcfce7", "#16a34a"),
    "norm": ("#f3f4f6", "#6b7280"),
    "activation": ("#fef3c7", "#d97706"),
    "reshape": ("#f5f5f4", "#78716c"),
    "model": ("#e0e7ff", "#4f46e5"),
    "other": ("#ffffff", "#6b7280"),
    "unsupported": ("#fee2e2", "#dc2626"),
}
EDGE_COLOUR = "#64748b"
SKIP_COLOUR = "#ea580c"


def layer_family(class_name: str) -> str:
    """A colour family for a Keras class name.

    >>> layer_family("DepthwiseConv2D"), layer_family("MaxPooling2D"), layer_family("Add")
    ('conv', 'pool', 'merge')
    """
    traits = traits_of(class_name)
    for family, wanted in _FAMILY_TRAITS:
        if traits & wanted:
            return family
    return "other"


_FAMILY_TRAITS: tuple[tuple[str, frozenset[Trait]], ...] = (
    ("input", frozenset({Trait.INPUT})),
    ("conv", frozenset({Trait.SPATIAL_KERNEL})),
    ("pool", frozenset({Trait.POOLING, Trait.GLOBAL_POOLING})),
    ("merge", frozenset({Trait.MERGE})),
    ("dense", frozenset({Trait.DENSE, Trait.EMBEDDING})),
    ("norm", frozenset({Trait.NORMALIZATION})),
    ("reshape", frozenset({Trait.PREPROCESSING, Trait.RESHAPE, Trait.PADDING, Trait.CROPPING,
                           Trait.UPSAMPLING, Trait.RESIZING})),
    ("activation", frozenset({Trait.ACTIVATION, Trait.REGULARIZATION})),
    ("model", frozenset({Trait.MODEL})),
)
"""Colour family of a box: the first row whose traits the class has."""


@dataclass
class DrawnNode:
    """A box in the drawing: one layer, or a chain of layers when collapsed.

    ``layers`` are the layer names in the box, producer first; ``main`` is the
    layer that names the box (the one with the most parameters).
    """

    id: str
    layers: list[str]
    classes: list[str]
    main: str
    main_class: str
    output_shape: Any
    params: int | None
    family: str
    unsupported: bool = False
    rank: int = 0
    x: float = 0.0
    y: float = 0.0


@dataclass
class DrawnEdge:
    """An arrow from the last layer of one box to the first layer of another.

    ``skip`` is True for a skip connection (the target is also reachable from
    the source through other layers); ``points`` are the waypoints, source
    first, in drawing coordinates.
    """

    source: str
    target: str
    source_node: str
    target_node: str
    skip: bool = False
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class GraphDrawing:
    """The laid-out graph and its SVG."""

    nodes: list[DrawnNode]
    edges: list[DrawnEdge]
    width: float
    height: float
    collapsed: bool
    svg: str = ""

    @property
    def layer_names(self) -> list[str]:
        return [name for node in self.nodes for name in node.layers]


def draw_graph(
    report: Report, *, collapse: bool | str = "auto", element_id: str = "graph"
) -> GraphDrawing:
    """Lay out and draw the report's top-level layer graph.

    ``collapse``: True, False or ``"auto"`` (collapse chains above
    :data:`COLLAPSE_ABOVE` layers). ``element_id`` prefixes the ids in the SVG
    so that several drawings can share one HTML page.
    """
    layers = [layer for layer in (report.get("layers") or []) if isinstance(layer, Mapping)]
    names = [str(layer.get("name", f"layer_{i}")) for i, layer in enumerate(layers)]
    by_name = dict(zip(names, layers, strict=True))
    layer_edges = _layer_edges(layers, names)
    should_collapse = len(names) > COLLAPSE_ABOVE if collapse == "auto" else bool(collapse)
    groups = (
        _collapse_chains(names, by_name, layer_edges) if should_collapse else [[n] for n in names]
    )

    nodes: list[DrawnNode] = []
    node_of: dict[str, str] = {}
    unsupported = {
        str(item.get("name"))
        for item in ((report.get("coverage") or {}).get("unsupported_layers") or [])
        if isinstance(item, Mapping)
    }
    for index, group in enumerate(groups):
        members = [by_name[name] for name in group]
        main_layer = max(
            members, key=lambda layer: (layer.get("params") or 0, -members.index(layer))
        )
        if all((layer.get("params") or 0) == 0 for layer in members):
            main_layer = next(
                (layer for layer in members if not is_leading(layer.get("class_name"))),
                members[0],
            )
        node_id = f"{element_id}-n{index}"
        params = [layer.get("params") for layer in members]
        nodes.append(
            DrawnNode(
                id=node_id,
                layers=list(group),
                classes=[str(layer.get("class_name", "")) for layer in members],
                main=str(main_layer.get("name")),
                main_class=str(main_layer.get("class_name", "")),
                output_shape=members[-1].get("output_shape"),
                params=None if any(p is None for p in params) else sum(int(p or 0) for p in params),
                family=layer_family(str(main_layer.get("class_name", ""))),
                unsupported=any(name in unsupported for name in group),
            )
        )
        for name in group:
            node_of[name] = node_id

    edges = [
        DrawnEdge(source, target, node_of[source], node_of[target])
        for source, target in layer_edges
        if node_of[source] != node_of[target]
    ]
    _mark_skips(nodes, edges, skip_merges(report))
    node_index = {node.id: node for node in nodes}
    _assign_ranks(nodes, edges)
    width, height = _place(nodes, edges, node_index)
    drawing = GraphDrawing(nodes, edges, width, height, should_collapse)
    drawing.svg = _svg(drawing, element_id, report.get("model_name"))
    return drawing


STAGE_BLOCKS_ABOVE = 60
"""Above this many boxes the page draws one expandable block per stage instead of one graph."""


@dataclass
class StageDrawing:
    """One stage's part of the architecture graph, for a block that expands on the page."""

    index: int | None
    title: str
    reads: list[str]
    drawing: GraphDrawing


def draw_stages(report: Report, *, element_id: str = "graph") -> list[StageDrawing]:
    """The graph split by the report's stages (and its head): one drawing per stage, each with
    the layers of that stage only; ``reads`` names the layers of earlier stages it reads from.

    Used for large models, where one drawing of hundreds of boxes is a small window onto a long
    picture: each stage is a block the reader opens (``<details>``, no scripts needed).
    """
    from app.reports.view import format_count as count
    from app.reports.view import stage_of_layers

    layers = [layer for layer in (report.get("layers") or []) if isinstance(layer, Mapping)]
    stage_of = stage_of_layers(report)
    if not stage_of:
        return []
    order: list[int] = []
    members: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for layer in layers:
        stage = stage_of.get(str(layer.get("name")))
        if stage is None:
            continue
        if stage not in members:
            order.append(stage)
        members[stage].append(layer)
    from app.reports.view import derive_stages, stage_head

    described = {int(stage.get("index") or 0): stage for stage in derive_stages(report)}
    head = stage_head(report)
    out: list[StageDrawing] = []
    for stage in sorted(order, key=lambda value: (value == 0, value)):
        group = members[stage]
        names = {str(layer.get("name")) for layer in group}
        reads = list(dict.fromkeys(
            str(source) for layer in group for source in (layer.get("inbound") or [])
            if str(source) not in names))
        sub_report = {"layers": group, "coverage": report.get("coverage"),
                      "model_name": report.get("model_name"), "findings": report.get("findings")}
        drawing = draw_graph(sub_report, element_id=f"{element_id}-s{stage}")
        if stage == 0:
            title = (f"Head: {len(group)} layers, {count((head or {}).get('params'))} params")
        else:
            info = described.get(stage, {})
            resolution = info.get("resolution")
            where = "×".join(str(v) for v in resolution) if resolution else "non-spatial"
            title = (f"Stage {stage}: {where}, {info.get('channels')} channels, stride "
                     f"{info.get('effective_stride')}, {len(group)} layers, "
                     f"{count(info.get('params'))} params, {count(info.get('macs'))} MACs")
        out.append(StageDrawing(stage if stage else None, title, reads, drawing))
    return out


# -- graph building ----------------------------------------------------------------------------


def _layer_edges(
    layers: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> list[tuple[str, str]]:
    """(producer, consumer) pairs from ``inbound``; a chain when no layer lists any."""
    known = set(names)
    if not any(layer.get("inbound") for layer in layers):
        return list(zip(names, names[1:], strict=False))
    edges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for name, layer in zip(names, layers, strict=True):
        for source in layer.get("inbound") or []:
            edge = (str(source), name)
            if edge[0] in known and edge[0] != name and edge not in seen:
                seen.add(edge)
                edges.append(edge)
    return _drop_back_edges(names, edges)


def _drop_back_edges(names: Sequence[str], edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Remove edges that close a cycle (a malformed config), keeping the drawing a DAG."""
    successors: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        successors[source].append(target)
    state: dict[str, int] = {}
    back: set[tuple[str, str]] = set()
    for root in names:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, index = stack.pop()
            if index < len(successors[node]):
                stack.append((node, index + 1))
                child = successors[node][index]
                if state.get(child) == 1:
                    back.add((node, child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, 0))
            else:
                state[node] = 2
    return [edge for edge in edges if edge not in back]


def _collapse_chains(
    names: Sequence[str], by_name: Mapping[str, Mapping[str, Any]], edges: Sequence[tuple[str, str]]
) -> list[list[str]]:
    """Group each absorbable layer with its sole producer when it is that producer's only consumer.

    ``conv -> BatchNormalization -> Activation`` becomes one box; a branch point never merges.
    """
    predecessors: dict[str, list[str]] = defaultdict(list)
    successors: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        predecessors[target].append(source)
        successors[source].append(target)
    head: dict[str, str] = {}
    for name in names:
        preds = predecessors[name]
        if len(preds) == 1 and len(successors[preds[0]]) == 1:
            producer = preds[0]
            if is_absorbable(by_name[name].get("class_name")) or is_leading(
                by_name[producer].get("class_name")
            ):
                head[name] = head.get(producer, producer)
                continue
        head[name] = name
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(head[name], []).append(name)
    return list(groups.values())


def skip_merges(report: Report) -> set[str]:
    """The merges the report calls skip connections (its ``residual_connections`` and
    ``dense_connections`` findings, from :mod:`app.analysis.skips`).

    >>> sorted(skip_merges({"findings": [{"code": "residual_connections", "layers": ["add"]},
    ...                                  {"code": "stages", "layers": ["conv"]}]}))
    ['add']
    """
    return {str(name) for finding in report.get("findings") or [] if isinstance(finding, Mapping)
            and finding.get("code") in ("residual_connections", "dense_connections")
            for name in finding.get("layers") or []}


def _mark_skips(nodes: Sequence[DrawnNode], edges: Sequence[DrawnEdge], merges: set[str]) -> None:
    """Flag edges into a skip connection's merge (``merges``) whose target is also reachable
    from their source by a longer path: the straight shortcuts. (A squeeze-and-excitation
    gate's edge into its Multiply is such a path too, but no skip connection.)"""
    successors: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        successors[edge.source_node].append(edge.target_node)
    merge_nodes = {edge.target_node for edge in edges if edge.target in merges}
    for edge in edges:
        if len(successors[edge.source_node]) < 2 or edge.target_node not in merge_nodes:
            continue
        seen = {edge.source_node}
        queue = deque(child for child in successors[edge.source_node] if child != edge.target_node)
        while queue:
            node = queue.popleft()
            if node == edge.target_node:
                edge.skip = True
                break
            if node in seen:
                continue
            seen.add(node)
            queue.extend(successors[node])


# -- layout ------------------------------------------------------------------------------------


def _assign_ranks(nodes: Sequence[DrawnNode], edges: Sequence[DrawnEdge]) -> None:
    """Longest path from the sources (Kahn's order), so every edge points down."""
    predecessors: dict[str, list[str]] = defaultdict(list)
    successors: dict[str, list[str]] = defaultdict(list)
    indegree = {node.id: 0 for node in nodes}
    for edge in edges:
        predecessors[edge.target_node].append(edge.source_node)
        successors[edge.source_node].append(edge.target_node)
        indegree[edge.target_node] += 1
    rank = {node.id: 0 for node in nodes}
    queue = deque(node.id for node in nodes if indegree[node.id] == 0)
    while queue:
        current = queue.popleft()
        for child in successors[current]:
            rank[child] = max(rank[child], rank[current] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    for node in nodes:
        node.rank = rank[node.id]


@dataclass
class _Slot:
    """A box or an edge waypoint in one rank."""

    key: str
    weight: float
    up: list[int] = field(default_factory=list)  # indices into the previous rank's slots keys
    order: float = 0.0
    x: float = 0.0


def _place(
    nodes: Sequence[DrawnNode], edges: Sequence[DrawnEdge], node_index: Mapping[str, DrawnNode]
) -> tuple[float, float]:
    rank_count = max((node.rank for node in nodes), default=0) + 1
    ranks: list[list[str]] = [[] for _ in range(rank_count)]
    weight: dict[str, float] = {}
    for node in nodes:
        ranks[node.rank].append(node.id)
        weight[node.id] = 1.0
    neighbours_up: dict[str, list[str]] = defaultdict(list)
    neighbours_down: dict[str, list[str]] = defaultdict(list)
    chains: list[list[str]] = []
    for edge_number, edge in enumerate(edges):
        start, end = node_index[edge.source_node].rank, node_index[edge.target_node].rank
        chain = [edge.source_node]
        for rank in range(start + 1, end):
            key = f"~{edge_number}~{rank}"
            ranks[rank].append(key)
            weight[key] = 0.02
            chain.append(key)
        chain.append(edge.target_node)
        chains.append(chain)
        for upper, lower in zip(chain, chain[1:], strict=False):
            neighbours_up[lower].append(upper)
            neighbours_down[upper].append(lower)

    position: dict[str, float] = {}
    for row_keys in ranks:
        for index, key in enumerate(row_keys):
            position[key] = float(index)
    for sweep in range(8):
        order = range(1, rank_count) if sweep % 2 == 0 else range(rank_count - 2, -1, -1)
        neighbours = neighbours_up if sweep % 2 == 0 else neighbours_down
        for rank_number in order:
            row_keys = ranks[rank_number]
            bary = {
                key: (
                    sum(position[n] for n in neighbours[key]) / len(neighbours[key])
                    if neighbours[key]
                    else position[key]
                )
                for key in row_keys
            }
            row_keys.sort(key=lambda key: (bary[key], position[key]))
            for index, key in enumerate(row_keys):
                position[key] = float(index)

    spacing = NODE_WIDTH + COLUMN_GAP
    x = {key: position[key] * spacing for row_keys in ranks for key in row_keys}
    neighbour_sets: tuple[dict[str, list[str]], ...]
    for sweep in range(12):
        if sweep % 3 == 0:
            order, neighbour_sets = range(1, rank_count), (neighbours_up,)
        elif sweep % 3 == 1:
            order, neighbour_sets = range(rank_count - 2, -1, -1), (neighbours_down,)
        else:
            order, neighbour_sets = range(rank_count), (neighbours_up, neighbours_down)
        for rank_number in order:
            row_keys = ranks[rank_number]
            desired = []
            for key in row_keys:
                linked = [n for group in neighbour_sets for n in group[key]]
                if linked:
                    total = sum(weight[n] for n in linked)
                    desired.append(sum(x[n] * weight[n] for n in linked) / total)
                else:
                    desired.append(x[key])
            placed = _isotonic_place(desired, [weight[key] for key in row_keys], spacing)
            for key, value in zip(row_keys, placed, strict=True):
                x[key] = value

    left = min(x.values(), default=0.0)
    width = max(x.values(), default=0.0) - left + NODE_WIDTH + 2 * MARGIN
    row = NODE_HEIGHT + ROW_GAP
    for node in nodes:
        node.x = x[node.id] - left + MARGIN
        node.y = node.rank * row + MARGIN
    for edge, chain in zip(edges, chains, strict=True):
        source, target = node_index[edge.source_node], node_index[edge.target_node]
        points = [(source.x + NODE_WIDTH / 2, source.y + NODE_HEIGHT)]
        for key in chain[1:-1]:
            rank = int(key.rsplit("~", 1)[1])
            centre_x = x[key] - left + MARGIN + NODE_WIDTH / 2
            points.append((centre_x, rank * row + MARGIN))
            points.append((centre_x, rank * row + MARGIN + NODE_HEIGHT))
        points.append((target.x + NODE_WIDTH / 2, target.y))
        edge.points = points
    height = rank_count * row - ROW_GAP + 2 * MARGIN
    return width, height


def _isotonic_place(desired: Sequence[float], weights: Sequence[float], gap: float) -> list[float]:
    """Positions closest to ``desired`` (weighted least squares) keeping order and ``gap``.

    Substituting ``y_i = x_i - i * gap`` turns the spacing constraint into
    ``y`` non-decreasing: pool-adjacent-violators solves it exactly.

    >>> _isotonic_place([0.0, 0.0], [1.0, 1.0], 10.0)
    [-5.0, 5.0]
    """
    blocks: list[list[float]] = []  # [weighted mean, total weight, count]
    for index, (value, weight) in enumerate(zip(desired, weights, strict=True)):
        blocks.append([value - index * gap, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean_b, weight_b, count_b = blocks.pop()
            mean_a, weight_a, count_a = blocks.pop()
            total = weight_a + weight_b
            blocks.append(
                [(mean_a * weight_a + mean_b * weight_b) / total, total, count_a + count_b]
            )
    placed: list[float] = []
    for mean, _, count in blocks:
        for _ in range(int(count)):
            placed.append(mean + len(placed) * gap)
    return placed


# -- SVG ---------------------------------------------------------------------------------------


def _truncate(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _curve(points: Sequence[tuple[float, float]]) -> str:
    """A smooth path through the waypoints with vertical tangents at each one."""
    (x0, y0), rest = points[0], points[1:]
    parts = [f"M{x0:.1f},{y0:.1f}"]
    previous = (x0, y0)
    for x1, y1 in rest:
        px, py = previous
        if abs(x1 - px) < 0.5:
            parts.append(f"L{x1:.1f},{y1:.1f}")
        else:
            middle = (py + y1) / 2
            parts.append(f"C{px:.1f},{middle:.1f} {x1:.1f},{middle:.1f} {x1:.1f},{y1:.1f}")
        previous = (x1, y1)
    return " ".join(parts)


def _class_line(node: DrawnNode) -> str:
    if len(node.classes) == 1:
        return node.classes[0]
    short = {
        "BatchNormalization": "BN",
        "Activation": "act",
        "ZeroPadding2D": "pad",
        "ZeroPadding1D": "pad",
        "ZeroPadding3D": "pad",
        "LayerNormalization": "LN",
        "Dropout": "dropout",
    }
    return " \u203a ".join(
        short.get(cls, cls) if cls != node.main_class else cls for cls in node.classes
    )


def _svg(drawing: GraphDrawing, element_id: str, model_name: Any) -> str:
    ident = escape(element_id, quote=True)
    title = escape(f"Architecture graph of {model_name or 'the model'}")
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="convlens-graph" id="{ident}" '
        f'width="{drawing.width:.0f}" height="{drawing.height:.0f}" '
        f'viewBox="0 0 {drawing.width:.0f} {drawing.height:.0f}" role="img" '
        f'font-family="Inter, Segoe UI, Helvetica, Arial, sans-serif">',
        f"<title>{title}</title>",
        "<defs>",
        f'<marker id="{ident}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{EDGE_COLOUR}"/></marker>',
        f'<marker id="{ident}-arrow-skip" viewBox="0 0 10 10" refX="9" refY="5" '
        f'markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path '
        f'd="M0,0 L10,5 L0,10 z" fill="{SKIP_COLOUR}"/></marker>',
        "</defs>",
        '<g class="edges">',
    ]
    for edge in sorted(drawing.edges, key=lambda e: e.skip):
        colour, marker = (SKIP_COLOUR, "arrow-skip") if edge.skip else (EDGE_COLOUR, "arrow")
        dash = ' stroke-dasharray="6 3"' if edge.skip else ""
        kind = "skip" if edge.skip else "flow"
        out.append(
            f'<g class="edge {kind}" data-source="{escape(edge.source, quote=True)}" '
            f'data-target="{escape(edge.target, quote=True)}" data-kind="{kind}">'
            f"<title>{escape(edge.source)} \u2192 {escape(edge.target)}"
            f"{' (skip connection)' if edge.skip else ''}</title>"
            f'<path d="{_curve(edge.points)}" fill="none" stroke="{colour}" '
            f'stroke-width="{1.8 if edge.skip else 1.3}"{dash} '
            f'marker-end="url(#{ident}-{marker})"/></g>'
        )
    out.append("</g>")
    out.append('<g class="nodes">')
    for node in drawing.nodes:
        family = "unsupported" if node.unsupported else node.family
        fill, stroke = FAMILY_COLOURS[family]
        layer_list = ", ".join(node.layers)
        shape = format_shape(
            first_output_shape({"output_shape": node.output_shape})
            if node.output_shape is not None
            else None
        )
        params = format_count(node.params)
        detail_line = shape + (f"  \u00b7  {params} params" if node.params else "")
        tooltip = f"{layer_list}\n{' > '.join(node.classes)}\noutput {shape}\nparams {params}"
        out.append(
            f'<g class="node {family}" id="{escape(node.id, quote=True)}" '
            f'data-layer="{escape(node.main, quote=True)}" '
            f'data-layers="{escape(" ".join(node.layers), quote=True)}" '
            f'transform="translate({node.x:.1f},{node.y:.1f})">'
            f"<title>{escape(tooltip)}</title>"
            f'<rect width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="7" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.4"/>'
            f'<rect width="5" height="{NODE_HEIGHT}" rx="2" fill="{stroke}"/>'
            f'<text x="13" y="17" font-size="12" font-weight="600" fill="#111827">'
            f"{escape(_truncate(node.main))}</text>"
            f'<text x="13" y="31" font-size="10.5" fill="#374151">'
            f"{escape(_truncate(_class_line(node), 29))}</text>"
            f'<text x="13" y="44" font-size="10" fill="#6b7280">'
            f"{escape(_truncate(detail_line, 31))}"
            f"</text></g>"
        )
    out.append("</g></svg>")
    return "".join(out)
