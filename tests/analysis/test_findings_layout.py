"""The per-layer facts the findings read in one pass (``findings._layout``), and the
residual-branch check's two ways of seeing a shortcut (an input of the branch's end, or found
by a walk up the branch)."""

from __future__ import annotations

from typing import Any

from app.analysis import analyze, analyze_graph, build_graph
from app.analysis import findings as F
from app.analysis.graph import AnalysisResult
from app.analysis.traits import Trait
from tests.analysis.builders import call, functional, input_layer, tensor
from tests.fixtures.load import FIXTURES_DIR, load_config


def _result(config: dict[str, Any]) -> AnalysisResult:
    return analyze_graph(build_graph(config))


def _unet() -> dict[str, Any]:
    """Down, up and across: strides 1, 2 and back (upsampling), a skip concatenation, a
    Flatten head."""
    conv = {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"}
    return functional([
        input_layer("in", (16, 16, 3)),
        call("Conv2D", "c1", conv, "in"),
        call("MaxPooling2D", "p1", {"pool_size": 2}, "c1"),
        call("Conv2D", "c2", conv, "p1"),
        call("UpSampling2D", "u1", {"size": 2}, "c2"),
        call("Concatenate", "cat", {"axis": -1}, "u1", "c1", as_list=True),
        call("Conv2D", "c3", conv, "cat"),
        call("Flatten", "flat", {}, "c3"),
        call("Dense", "out", {"units": 2}, "flat"),
    ], ["in"], ["out"], name="unet")


def test_layout_holds_each_layers_field_extent_position_and_traits() -> None:
    for config in (_unet(), load_config(FIXTURES_DIR / "applications" / "resnet50.json.gz")):
        result = _result(config)
        facts = F._layout(result)
        assert facts.position == {layer.name: i for i, layer in enumerate(result.layers)}
        for index, layer in enumerate(result.layers):
            stride, size = F._field_stride(layer), F._field_size(layer)
            assert (facts.strides[index], facts.sizes[index]) == (stride, size), layer.name
            assert type(facts.strides[index]) is type(stride), layer.name
        assert facts.flat == [i for i, s in enumerate(facts.strides) if s is None]
        assert facts.merges == [layer for layer in result.layers if layer.merge is not None]
        assert facts.traits == frozenset().union(*(layer.traits for layer in result.layers))


def _shared_and_three_way() -> dict[str, Any]:
    """A convolution called twice, the second time on its own output (an input listed after
    the layer that reads it), and an Add of three inputs."""
    conv = call("Conv2D", "shared", {"filters": 4, "kernel_size": 3, "padding": "same"}, "x")
    conv["inbound_nodes"].append({"args": [tensor("shared", 0)], "kwargs": {}})
    twice = call("Conv2D", "c2", {"filters": 4, "kernel_size": 3, "padding": "same"}, "shared")
    twice["inbound_nodes"][0]["args"] = [tensor("shared", 1)]
    return functional([
        input_layer("x", (8, 8, 4)), conv, twice,
        call("Add", "sum3", {}, "x", "c2", "shared", as_list=True),
        call("GlobalAveragePooling2D", "gap", {}, "sum3"),
        call("Dense", "head", {"units": 3}, "gap"),
    ], ["x"], ["head"])


def test_layout_sources_are_the_inputs_looked_up_by_name() -> None:
    """Inputs met before their reader are looked up at once, the others (a shared layer's,
    which may come later) once every position is known: the same indices either way."""
    configs = (_unet(), _shared_and_three_way(),
               load_config(FIXTURES_DIR / "applications" / "resnet50.json.gz"))
    for config in configs:
        result = _result(config)
        facts = F._layout(result)
        expected = [tuple(facts.position[name] for name in layer.inbound
                          if name in facts.position) for layer in result.layers]
        assert facts.sources == expected
    result = _result(_shared_and_three_way())
    facts = F._layout(result)
    sources = {layer.name: facts.sources[i] for i, layer in enumerate(result.layers)}
    assert len(sources["sum3"]) == 3


def test_layout_of_a_unet_names_its_flat_layers_and_merge() -> None:
    facts = F._layout(_result(_unet()))
    assert [facts.strides[facts.position[name]] for name in ("c1", "c2", "u1", "c3")] == [1, 2, 1, 1]
    assert [facts.position[name] for name in ("flat", "out")] == facts.flat
    assert [layer.name for layer in facts.merges] == ["cat"]
    assert Trait.FLATTEN in facts.traits and Trait.NORMALIZATION not in facts.traits


def test_stages_of_a_unet_start_a_phase_at_the_upsampling() -> None:
    stages, head = F.stages_of(_result(_unet()))
    assert [stage["layers"] for stage in stages] == [["in", "c1"], ["p1", "c2"], ["u1", "cat", "c3"]]
    assert [stage["output_layer"] for stage in stages] == ["c1", "c2", "c3"]
    assert stages[1]["downsampling_layers"] == ["p1"] and stages[2]["upsampling_layers"] == ["u1"]
    assert head is not None and head["layers"] == ["flat", "out"]


def _relu_branches(*, direct: bool) -> dict[str, Any]:
    conv = {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"}
    layers = [input_layer("in", (8, 8, 4)), call("Conv2D", "a", conv, "in")]
    if direct:  # x + relu(conv(x)): the shortcut is an input of the branch's end
        end = "a"
    else:  # x + relu(conv(relu(conv(x)))): found by walking up the branch
        layers.append(call("Conv2D", "b", conv, "a"))
        end = "b"
    layers += [call("Add", "add", {}, "in", end, as_list=True),
               call("GlobalAveragePooling2D", "gap", {}, "add"),
               call("Dense", "out", {"units": 2}, "gap")]
    return functional(layers, ["in"], ["out"])


def test_relu_branches_are_found_directly_and_by_a_walk() -> None:
    for direct, end in ((True, "a"), (False, "b")):
        findings = analyze(_relu_branches(direct=direct))["findings"]
        found = [f for f in findings if f["code"] == "residual_branch_nonnegative"]
        assert len(found) == 1, direct
        assert found[0]["details"]["merges"] == [
            {"merge": "add", "branch_end": end, "shortcut": "in", "activation": "relu"}]
        assert found[0]["layers"] == ["add", end]
