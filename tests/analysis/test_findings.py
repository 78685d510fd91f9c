"""Findings (app.analysis.findings) on configs built with Keras to show one thing each.

Each fixture in ``tests/fixtures/findings`` was built to trigger one finding; the tests assert
its code, severity and layers, and that a clean model raises no warning. Numbers in the details
are checked against Keras (parameter shares) and the receptive-field oracle (stage fields).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.analysis import analyze
from app.analysis.findings import CODES
from tests.analysis.builders import call, functional, input_layer
from tests.fixtures.load import FIXTURES_DIR, ModelFixture, load_config, small_fixtures

FINDINGS = small_fixtures("findings")
GRADIENT = small_fixtures("gradient")


def _application(stem: str) -> ModelFixture:
    folder = FIXTURES_DIR / "applications"
    return ModelFixture(stem, folder / f"{stem}.json.gz", folder / f"{stem}.expected.json")


def _findings(config: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    return analyze(config, **kwargs)["findings"]


def _by_code(findings: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [finding for finding in findings if finding["code"] == code]


def _one(findings: list[dict[str, Any]], code: str) -> dict[str, Any]:
    matching = _by_code(findings, code)
    assert len(matching) == 1, [f["code"] for f in findings]
    return matching[0]


# (fixture, code, severity, layers exactly)
CASES = [
    ("stride_gt_kernel", "stride_exceeds_kernel", "warning", ["skipping_conv", "skipping_pool"]),
    ("early_downsampling", "aggressive_early_downsampling", "warning", ["stem_pool"]),
    ("deep_plain_stack", "deep_plain_stack", "warning",
     [f"conv{i}" for i in range(1, 13)] + ["classifier"]),
    ("saturating_deep", "saturating_activations_deep", "warning",
     [f"conv{i}" for i in range(1, 9)]),
    ("dense_head", "dense_head_dominates", "warning", ["flatten", "fc1", "classifier"]),
    ("checkerboard", "checkerboard_transposed_conv", "warning", ["upsample_checkerboard"]),
    ("dilation_gridding", "dilation_gridding", "warning", ["dilated1", "dilated2", "dilated3"]),
    ("residual_mismatch", "residual_shape_mismatch", "warning",
     ["broadcast_add", "branch_conv", "shortcut_1ch"]),
    ("small_field", "receptive_field_small", "warning", ["conv3"]),
    ("bias_before_bn", "bias_before_normalization", "info", ["biased_conv1", "biased_conv2"]),
    ("relu_before_add", "residual_branch_nonnegative", "warning", ["add1", "branch1_conv2"]),
]


@pytest.mark.parametrize(("fixture", "code", "severity", "layers"), CASES,
                         ids=[case[0] for case in CASES])
def test_fixture_triggers_its_finding(fixture: str, code: str, severity: str,
                                      layers: list[str]) -> None:
    finding = _one(_findings(FINDINGS[fixture].config()), code)
    assert finding["severity"] == severity
    assert finding["layers"] == layers
    assert finding["message"] and isinstance(finding["details"], dict)
    assert any(name in finding["message"] for name in layers)


def test_misaligned_branches_are_named() -> None:
    finding = _one(_findings(FINDINGS["misaligned"].config()), "misaligned_fields")
    assert finding["severity"] == "warning"
    assert finding["layers"][0] == "misaligned_add"
    assert {"conv1", "pad_bottom_right"} <= set(finding["layers"])


def test_clean_model_raises_no_warning() -> None:
    findings = _findings(FINDINGS["clean_resnet"].config())
    assert [f for f in findings if f["severity"] != "info"] == []
    codes = {f["code"] for f in findings}
    assert {"stages", "receptive_field_coverage", "residual_connections"} <= codes


def test_each_fixture_triggers_only_what_it_was_built_for() -> None:
    """A fixture built for one warning does not also trip unrelated structural warnings."""
    field_codes = {"receptive_field_small", "aggressive_early_downsampling",
                   "full_resolution_compute"}
    for fixture, code, _, _ in CASES:
        findings = _findings(FINDINGS[fixture].config())
        warnings = {f["code"] for f in findings if f["severity"] == "warning"}
        assert code in {f["code"] for f in findings}
        assert warnings - {code} <= field_codes | {"stride_exceeds_kernel"}, (fixture, warnings)


def test_every_code_is_exercised() -> None:
    from tests.fixtures.load import application_fixtures

    # ResNet50 brings the one code no small fixture shows: growth under BatchNormalization.
    resnet50 = [fixture for fixture in application_fixtures() if fixture.id == "resnet50-keras3"]
    seen: set[str] = set()
    assert len(resnet50) == 1
    for fixture in list(FINDINGS.values()) + list(GRADIENT.values()) + resnet50 + [_application("densenet121")]:
        seen |= {f["code"] for f in _findings(fixture.config())}
    assert set(CODES) - seen == set()


@pytest.mark.parametrize(("stem", "residual", "dense"), [
    ("resnet50", 16, 0),            # 4 projection and 12 identity shortcuts
    ("densenet121", 0, 58),         # 6 + 12 + 24 + 16 concatenations in the dense blocks
    ("inceptionv3", 0, 0),          # parallel branches concatenated: no skip connection
    ("inceptionresnetv2", 40, 0),   # x + scale * branch, 10 + 20 + 10 blocks
    ("vgg16", 0, 0),
])
def test_skip_connections_are_residual_or_dense_never_parallel_branches(stem, residual, dense) -> None:
    """Concatenation is not a residual: Inception's branches start at one map and nothing goes
    around anything; DenseNet's concatenations pass earlier maps forward (dense connections)."""
    findings = _findings(_application(stem).config())
    residual_found = _by_code(findings, "residual_connections")
    dense_found = _by_code(findings, "dense_connections")
    assert [f["details"]["merges"] for f in residual_found] == ([residual] if residual else [])
    assert [f["details"]["merges"] for f in dense_found] == ([dense] if dense else [])
    for finding in residual_found + dense_found:
        assert len(finding["layers"]) == finding["details"]["merges"]
        assert finding["message"].startswith(str(finding["details"]["merges"]))
    if dense:
        assert "dense connections" in dense_found[0]["message"]
        assert all(name.endswith("_concat") for name in dense_found[0]["layers"])


def test_gradient_findings_refer_to_the_prediction() -> None:
    vanishing = _one(_findings(GRADIENT["plain20_sigmoid"].config()), "gradient_flow_vanishing")
    assert vanishing["layers"] == ["conv1", "classifier"]
    assert vanishing["details"]["ratio"] < 1e-3
    exploding = _one(_findings(GRADIENT["plain20_linear_large_init"].config()),
                     "gradient_flow_exploding")
    assert exploding["details"]["ratio"] > 1e3
    residual = _one(_findings(GRADIENT["residual_bn20_relu"].config()), "residual_connections")
    assert residual["details"]["shortest_path"] == 1 and residual["details"]["longest_path"] == 19
    assert residual["details"]["gradient_verdict"] == "healthy"
    assert _by_code(_findings(GRADIENT["residual_bn20_relu"].config()), "deep_plain_stack") == []


def test_vgg16_dense_head_share_is_keras_share() -> None:
    fixture = _application("vgg16")
    expected = {layer["name"]: layer["params"] for layer in fixture.expected()["layers"]}
    total = fixture.expected()["totals"]["params"]
    finding = _one(_findings(fixture.config()), "dense_head_dominates")
    head = ["fc1", "fc2", "predictions"]
    assert finding["layers"] == ["flatten", *head]
    share = sum(expected[name] for name in head) / total
    assert finding["details"]["share"] == pytest.approx(share, abs=1e-4)
    assert 0.89 < share < 0.90
    assert f"{share:.1%}" in finding["message"]


def test_vgg16_stages_follow_the_pools_and_the_oracle() -> None:
    """VGG16's five convolution blocks are its five stages; block5_pool opens the head."""
    fixture = _application("vgg16")
    fields = fixture.expected()["receptive_fields"]
    config = fixture.config()
    finding = _one(_findings(config, input_shape=[*fields["input_size"], 3]), "stages")
    stages = finding["details"]["stages"]
    assert [s["effective_stride"] for s in stages] == [1, 2, 4, 8, 16]
    assert finding["layers"] == [f"block{i}_pool" for i in range(1, 5)]
    assert [s["channels_out"] for s in stages] == [64, 128, 256, 512, 512]
    for stage in stages:
        oracle = fields["layers"][stage["last_layer"]]["axes"][0]["size"]
        assert stage["field_end"] == oracle
    assert stages[-1]["field_end"] == 196
    head = finding["details"]["head"]
    assert (head["first_layer"], head["last_layer"]) == ("block5_pool", "predictions")
    assert finding["message"].startswith("5 stages between downsamplings")


def _keras_layers(stem: str) -> dict[str, dict[str, Any]]:
    return {layer["name"]: layer for layer in _application(stem).expected()["layers"]}


def test_resnet50_has_the_five_stages_of_the_paper() -> None:
    """conv1, conv2_x ... conv5_x (He et al. 2016, table 1): padding layers start no stage; each
    stage's resolution and channels are Keras's output shape of the map it hands on, and its
    parameters add up, with the head's, to Keras's total."""
    fixture = _application("resnet50")
    finding = _one(_findings(fixture.config()), "stages")
    stages, head = finding["details"]["stages"], finding["details"]["head"]
    assert [s["output_layer"] for s in stages] == [
        "conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out",
        "conv5_block3_out"]
    assert [s["effective_stride"] for s in stages] == [2, 4, 8, 16, 32]
    keras = _keras_layers("resnet50")
    for stage in stages:
        shape = keras[stage["output_layer"]]["output_shape"]
        assert stage["resolution"] == shape[1:3] and stage["channels_out"] == shape[3]
    assert [s["downsampling_layers"][0] for s in stages] == [
        "conv1_conv", "pool1_pool", "conv3_block1_1_conv", "conv4_block1_1_conv",
        "conv5_block1_1_conv"]
    assert not any(name.endswith("_pad") for s in stages for name in s["downsampling_layers"])
    assert sum(s["params"] for s in stages) + head["params"] == fixture.expected()["totals"]["params"]
    assert sum(s["layer_count"] for s in stages) + head["layer_count"] == len(keras)
    assert (head["first_layer"], head["last_layer"]) == ("avg_pool", "predictions")


@pytest.mark.parametrize("stem", ["efficientnetb0", "mobilenetv3small", "inceptionv3",
                                  "densenet121", "mobilenetv2", "xception"])
def test_applications_have_five_stages_to_stride_32(stem: str) -> None:
    """Squeeze-and-excitation gates (global fields) do not end a stage: every ImageNet
    Applications model here reaches stride 32 in five stages."""
    stages = _one(_findings(_application(stem).config()), "stages")["details"]["stages"]
    assert [s["effective_stride"] for s in stages] == [2, 4, 8, 16, 32]
    keras = _keras_layers(stem)
    for stage in stages:
        shape = keras[stage["output_layer"]]["output_shape"]
        assert stage["resolution"] == shape[1:3] and stage["channels_out"] == shape[3]


def test_convnext_stem_is_its_first_stage() -> None:
    stages = _one(_findings(_application("convnexttiny").config()), "stages")["details"]["stages"]
    assert [s["effective_stride"] for s in stages] == [4, 8, 16, 32]
    assert [s["channels_out"] for s in stages] == [96, 192, 384, 768]


def _seed_keras(number: int) -> dict[str, Any]:
    return load_config(FIXTURES_DIR / "seed" / f"example{number}.expected.json")


def test_seed_example3_spends_its_compute_at_full_resolution() -> None:
    """Every convolution of Example 3 runs at 128x128: the MACs, recomputed from Keras's own
    output shapes and parameter counts (positions x weights without the bias), are all of them."""
    config = load_config(FIXTURES_DIR / "seed" / "example3.json")
    finding = _one(_findings(config), "full_resolution_compute")
    keras = _seed_keras(3)
    convs = [layer for layer in keras["layers"] if layer["class_name"] == "Conv2D"]
    full = [layer for layer in convs if layer["output_shape"][1:3] == [128, 128]]
    assert len(full) == len(convs) == 6
    macs = sum(128 * 128 * (layer["params"] - layer["output_shape"][3]) for layer in full)
    dense = [layer for layer in keras["layers"] if layer["class_name"] == "Dense"][0]
    total = macs + dense["params"] - dense["output_shape"][-1]
    details = finding["details"]
    assert details["macs"] == macs and details["total_macs"] == total
    assert details["resolution"] == [128, 128] and details["convolutions"] == 6
    assert details["params"] == keras["totals"]["params"]
    assert details["first_downsampling"] is None and details["share"] > 0.99
    assert finding["severity"] == "warning"
    assert finding["layers"] == [layer["name"] for layer in full]
    assert "920M of the 920M MACs (100%)" in finding["message"]
    assert f"{round(total / keras['totals']['params']):,} MACs per parameter" in finding["message"]
    assert "nothing downsamples" in finding["message"]


def test_seed_example1_downsamples_late() -> None:
    finding = _one(_findings(load_config(FIXTURES_DIR / "seed" / "example1.json")),
                   "full_resolution_compute")
    assert finding["details"]["first_downsampling"] == "max_pooling2d"
    assert finding["details"]["convolutions_before_downsampling"] == 2


@pytest.mark.parametrize("stem", sorted({"resnet50", "vgg16", "mobilenetv2", "inceptionv3",
                                         "efficientnetb0", "densenet121", "convnexttiny",
                                         "xception", "nasnetmobile"}))
def test_applications_do_not_compute_at_full_resolution(stem: str) -> None:
    codes = {f["code"] for f in _findings(_application(stem).config())}
    assert "full_resolution_compute" not in codes
    assert "residual_branch_nonnegative" not in codes


def test_seed_example3_adds_relu_branches() -> None:
    finding = _one(_findings(load_config(FIXTURES_DIR / "seed" / "example3.json")),
                   "residual_branch_nonnegative")
    assert [m["merge"] for m in finding["details"]["merges"]] == ["add", "add_1"]
    assert {m["branch_end"] for m in finding["details"]["merges"]} == {"conv2d_2", "conv2d_4"}


def test_resnet50_biases_before_batch_normalization_are_counted_from_keras() -> None:
    """Keras's ResNet50 keeps a bias on every convolution that feeds BatchNormalization: the
    redundant parameters are those convolutions' output channels, read from Keras's shapes."""
    finding = _one(_findings(_application("resnet50").config()), "bias_before_normalization")
    keras = _keras_layers("resnet50")
    convs = [name for name, layer in keras.items() if layer["class_name"] == "Conv2D"]
    assert sorted(finding["layers"]) == sorted(convs)
    assert finding["details"]["redundant_params"] == sum(
        keras[name]["output_shape"][3] for name in convs)
    assert finding["severity"] == "info"


def test_keras_resnet50_strided_1x1_convolutions_skip_pixels() -> None:
    """Keras ResNet50 (v1) puts the stride-2 in a 1x1 convolution: 3 of 4 positions unseen."""
    finding = _one(_findings(_application("resnet50").config()), "stride_exceeds_kernel")
    assert "conv3_block1_1_conv" in finding["layers"]
    assert "conv3_block1_0_conv" in finding["layers"]
    assert all("block1" in name for name in finding["layers"])


def test_findings_are_json() -> None:
    for fixture in FINDINGS.values():
        json.dumps(_findings(fixture.config()), allow_nan=False)


@pytest.mark.parametrize("stem", ["efficientnetb0", "mobilenetv3small"])
def test_squeeze_and_excitation_gating_is_not_a_shape_mismatch(stem: str) -> None:
    codes = {f["code"] for f in _findings(_application(stem).config())}
    assert "residual_shape_mismatch" not in codes
    assert "saturating_activations_deep" not in codes  # the sigmoid gates are off the path


def _windowed(kernel: Any, stride: Any, padding: Any) -> dict[str, Any]:
    """A stride-2 1x1 stem, a 'same' pooling, two dilated convolutions and a transposed
    convolution: every reader of a window (findings, gradient flow) has something to say."""
    return functional([
        input_layer("x", (32, 32, 4)),
        call("Conv2D", "stem", {"filters": 8, "kernel_size": kernel(1), "strides": stride(2),
                                "padding": padding("valid"), "activation": "relu"}, "x"),
        call("MaxPooling2D", "pool", {"pool_size": kernel(3), "strides": stride(2),
                                      "padding": padding("same")}, "stem"),
        call("Conv2D", "d1", {"filters": 8, "kernel_size": kernel(3), "dilation_rate": stride(2),
                              "padding": padding("same")}, "pool"),
        call("Conv2D", "d2", {"filters": 8, "kernel_size": kernel(3), "dilation_rate": stride(2),
                              "padding": padding("same")}, "d1"),
        call("Conv2DTranspose", "up", {"filters": 8, "kernel_size": kernel(3), "strides": stride(2),
                                       "padding": padding("same")}, "d2"),
    ], ["x"], ["up"])


@pytest.mark.parametrize("spelling", ["lists", "integral floats", "upper-case padding"])
def test_every_spelling_the_rules_accept_gives_the_same_report(spelling: str) -> None:
    """The rules read ``3``, ``[3, 3]`` and ``[3.0, 3.0]`` alike and ``"SAME"`` as ``"same"``;
    the findings and the gradient flow read the window the rule read (``LayerResult.window``),
    so no spelling changes a finding or a predicted number. (Before, an integral float read as
    1 in the findings, which then warned of a stride larger than a 3x3 kernel, and an upper-case
    padding read as 'valid' in the prediction.)"""
    same: Any = lambda value: value  # noqa: E731
    kernel, stride, padding = {
        "lists": (lambda v: [v, v], lambda v: [v, v], same),
        "integral floats": (lambda v: [float(v)] * 2, lambda v: float(v), same),
        "upper-case padding": (same, same, lambda v: v.upper()),
    }[spelling]
    reference = analyze(_windowed(same, same, same))
    assert [f["code"] for f in reference["findings"]][:3] == [
        "stride_exceeds_kernel", "checkerboard_transposed_conv", "dilation_gridding"]
    assert analyze(_windowed(kernel, stride, padding)) == reference
