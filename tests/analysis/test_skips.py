"""Dense connections (app.analysis.skips): a concatenation passes an earlier map forward when one
of its inputs is an ancestor of another, as a walk of at most ANCESTOR_WALK_LIMIT layers back
finds it; the walk's answer is the same whether or not the graph is large enough to reach the
limit."""

from __future__ import annotations

from typing import Any

import pytest

from app.analysis import analyze_graph, build_graph
from app.analysis.skips import ANCESTOR_WALK_LIMIT, find_skips
from tests.analysis.builders import call, functional, input_layer


def _chain_then_concat(chain: int, joined: tuple[str, str], padding: int = 0) -> dict[str, Any]:
    """input -> ``chain`` ReLUs (r1..rN) -> a concatenation of the two named layers, then
    ``padding`` more ReLUs after it (layers no walk reads)."""
    layers = [input_layer("x", (4, 4, 1))]
    previous = "x"
    for index in range(1, chain + 1):
        layers.append(call("ReLU", f"r{index}", {}, previous))
        previous = f"r{index}"
    layers.append(call("Concatenate", "joined", {"axis": -1}, *joined, as_list=True))
    previous = "joined"
    for index in range(padding):
        layers.append(call("ReLU", f"after{index}", {}, previous))
        previous = f"after{index}"
    return functional(layers, ["x"], [previous])


def _dense(config: dict[str, Any]) -> list[str]:
    return find_skips(analyze_graph(build_graph(config))).dense


@pytest.mark.parametrize("padding", [0, ANCESTOR_WALK_LIMIT])  # a small and a large graph
def test_a_map_concatenated_with_one_computed_from_it_is_a_dense_merge(padding: int) -> None:
    assert _dense(_chain_then_concat(3, ("x", "r3"), padding)) == ["joined"]
    assert _dense(_chain_then_concat(3, ("r3", "r1"), padding)) == ["joined"]


def test_parallel_branches_of_one_map_are_not_a_dense_merge() -> None:
    layers = [input_layer("x", (4, 4, 1)), call("ReLU", "a", {}, "x"), call("ReLU", "b", {}, "x"),
              call("ReLU", "b2", {}, "b"), call("Concatenate", "joined", {"axis": -1}, "a", "b2",
                                                as_list=True)]
    assert _dense(functional(layers, ["x"], ["joined"])) == []


def test_an_ancestor_beyond_the_walk_limit_is_not_found() -> None:
    assert _dense(_chain_then_concat(ANCESTOR_WALK_LIMIT // 2, ("x", f"r{ANCESTOR_WALK_LIMIT // 2}"))) \
        == ["joined"]
    far = ANCESTOR_WALK_LIMIT + 10
    assert _dense(_chain_then_concat(far, ("x", f"r{far}"))) == []
